"""A lean pipelined Redis connection for the request hot path.

Why not redis-py here: its asyncio pipeline costs a few hundred microseconds of Python per round
trip (pool checkout, retries, observability hooks, a pure-Python reply parser), more than the rest
of a cached answer costs. This connection keeps one socket, writes each command at once (no wait
for a batch: grpc.aio hands each call its own event-loop turn, so a deferred flush costs a turn
per request and batches nothing; under load the transport's buffer coalesces writes by itself),
and matches replies to callers in order with hiredis's C parser. Everything else (writes,
transactions, health probes, bulk loads) uses redis-py.

Supports ``redis://``, ``rediss://`` (TLS; ``ssl_cert_reqs=none``/``ssl_ca_certs=`` honoured) and
``unix://`` URLs with a username/password and a database number, as redis-py parses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url

from recsys.errors import ConfigError
from serving.errors import FeatureStoreUnavailable


class FeatureStoreUnreachable(FeatureStoreUnavailable):
    """The connection failed or timed out (as opposed to one command's error reply)."""


class _Connection:
    """One open socket and the callers waiting for its replies, oldest first."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader()
        self.waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self.closed = False
        self.reading: asyncio.Task[None] | None = None


class RespConnection:
    """``await execute("GET", key)`` -> the reply; pipelined across concurrent callers.

    A reply that is an error raises ``FeatureStoreUnavailable``; a connection that fails, or a
    reply slower than ``timeout_s``, raises ``FeatureStoreUnreachable`` for every waiting caller
    and the next command reconnects.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        try:
            options: dict[str, Any] = dict(parse_url(url))
        except ValueError as err:
            raise ConfigError(f"--redis-url is not a usable Redis URL: {err}") from err
        self._options = options
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def execute(self, *args: Any) -> Any:
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        return await self._write(connection, args)

    def send(self, *args: Any) -> None:
        """Issue a command without waiting for its reply (a cache fill).

        Later commands on this connection see its effect (Redis runs one connection's commands in
        order); its reply, or failure, is read and dropped.
        """
        connection = self._connection
        if connection is None or connection.closed:
            pending: asyncio.Future[Any] = asyncio.ensure_future(self.execute(*args))
        else:
            pending = self._write(connection, args)
        pending.add_done_callback(_drop_outcome)

    def _write(self, connection: _Connection, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        connection.waiting.append((loop.time(), future))
        try:
            connection.writer.write(hiredis.pack_command(args))
        except (OSError, RuntimeError) as err:
            self._fail(connection, err)
        return future

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is not None and not self._connection.closed:
                return self._connection
            try:
                async with asyncio.timeout(self._timeout_s):
                    connection = await self._open()
            except (OSError, TimeoutError, FeatureStoreUnavailable) as err:
                raise FeatureStoreUnreachable(
                    f"feature store unreachable: {_describe(err)}"
                ) from err
            self._connection = connection
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.get_running_loop().create_task(self._watch())
            return connection

    async def _open(self) -> _Connection:
        options = self._options
        if "path" in options:
            reader, writer = await asyncio.open_unix_connection(options["path"])
        else:
            context = _tls_context(options) if _is_tls(options) else None
            reader, writer = await asyncio.open_connection(
                options.get("host", "localhost"), int(options.get("port", 6379)), ssl=context
            )
        connection = _Connection(reader, writer)
        connection.reading = asyncio.get_running_loop().create_task(self._read(connection))
        handshake: list[tuple[Any, ...]] = []
        if options.get("password"):
            user = options.get("username")
            handshake.append(
                ("AUTH", user, options["password"]) if user else ("AUTH", options["password"])
            )
        if int(options.get("db", 0) or 0):
            handshake.append(("SELECT", int(options["db"])))
        try:
            for command in handshake:
                loop = asyncio.get_running_loop()
                future: asyncio.Future[Any] = loop.create_future()
                connection.waiting.append((loop.time(), future))
                writer.write(hiredis.pack_command(command))
                await future
        except BaseException as err:
            self._fail(connection, err)
            raise
        return connection

    async def _read(self, connection: _Connection) -> None:
        parser = connection.parser
        waiting = connection.waiting
        try:
            while True:
                data = await connection.reader.read(1 << 16)
                if not data:
                    raise ConnectionResetError("Redis closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    _, future = waiting.popleft()
                    if future.done():
                        continue
                    if isinstance(reply, hiredis.ReplyError):
                        future.set_exception(
                            FeatureStoreUnavailable(f"feature store error: {reply}")
                        )
                    else:
                        future.set_result(reply)
        except asyncio.CancelledError:
            self._fail(connection, ConnectionAbortedError("connection closed"))
            raise
        except (OSError, hiredis.ProtocolError, IndexError) as err:
            self._fail(connection, err)

    async def _watch(self) -> None:
        """Fail the connection when its oldest caller has waited longer than the timeout."""
        loop = asyncio.get_running_loop()
        interval = max(self._timeout_s / 4, 0.005)
        while True:
            await asyncio.sleep(interval)
            connection = self._connection
            if connection is None or connection.closed or not connection.waiting:
                continue
            started, _ = connection.waiting[0]
            if loop.time() - started > self._timeout_s:
                self._fail(connection, TimeoutError(f"no reply within {self._timeout_s} s"))

    def _fail(self, connection: _Connection, err: BaseException) -> None:
        if connection.closed:
            return
        connection.closed = True
        failure = FeatureStoreUnreachable(f"feature store unreachable: {_describe(err)}")
        while connection.waiting:
            _, future = connection.waiting.popleft()
            if not future.done():
                future.set_exception(failure)
        with contextlib.suppress(Exception):
            connection.writer.close()
        if connection.reading is not None and connection.reading is not asyncio.current_task():
            connection.reading.cancel()

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            self._fail(connection, ConnectionAbortedError("closed by the server"))
            with contextlib.suppress(Exception):
                await connection.writer.wait_closed()


def _drop_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not warn about it


def _is_tls(options: dict[str, Any]) -> bool:
    connection_class = options.get("connection_class")
    return connection_class is not None and connection_class.__name__ == "SSLConnection"


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if str(options.get("ssl_cert_reqs", "required")).lower() in ("none", "cert_none"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
