"""A lean pipelined Redis connection for the request hot path.

Why not redis-py here: its asyncio pipeline costs a few hundred microseconds of Python per round
trip (pool checkout, retries, observability hooks, a pure-Python reply parser), more than the rest
of a cached answer costs. This connection is one socket driven by an ``asyncio.Protocol``: a
command is written at once (no wait for a batch: grpc.aio hands each call its own event-loop turn,
so a deferred flush costs a turn per request and batches nothing; under load the transport's
buffer coalesces writes by itself), and replies are parsed by hiredis's C parser in the data
callback and handed to their callers in order, with no reader task in between. Cache fills are
the exception: they are buffered and flushed once per event-loop turn, because the answers of one
model batch all resume in the same turn, so their fills leave in one ``send`` instead of one
system call each (a quarter of the event loop's time on cache misses). Everything else (writes,
transactions, health probes, bulk loads) uses redis-py.

``hold`` makes commands wait in the buffer (until ``release`` or a time limit), for the server to
hold reads while the model runs a batch: a request that arrives during a forward cannot run
before the next one, so its read only has to be back by then, and the reads of every request that
arrived meanwhile leave in one write and come back in one reply read, instead of a system call
(and one on Redis's side) each. On a 2-core host at 64 requests in flight that turned 1.7
commands per write into 14 and cut the CPU a cache miss costs (client, server and Redis) by a
quarter (``bench/serve_load.py``, paired runs with ``--read-hold-ms 0``).

With ``on_invalidate`` the connection speaks RESP3 with ``CLIENT TRACKING ON``: Redis pushes an
``invalidate`` message whenever a key this connection read changes, and the callback gets the
keys (None: forget everything, also sent when the connection is lost). A caller's ``on_reply``
runs inside the parser, in wire order with those pushes (see ``serving.store.near_cache``).

Supports ``redis://``, ``rediss://`` (TLS; ``ssl_cert_reqs=none``/``ssl_ca_certs=`` honoured) and
``unix://`` URLs with a username/password and a database number, as redis-py parses them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url

from recsys.errors import ConfigError
from serving.errors import FeatureStoreUnavailable, FeatureStoreUnreachable, describe_error

log = logging.getLogger(__name__)

OnReply = Callable[[Any], None]
"""Called with a command's reply inside the parser, before its caller resumes."""
OnInvalidate = Callable[[list[bytes] | None], None]
"""Called with the keys of an ``invalidate`` push; None: everything (or the connection is gone)."""


class _RespProtocol(asyncio.Protocol):
    """One open socket and the callers waiting for its replies, oldest first."""

    def __init__(self, on_invalidate: OnInvalidate | None, counts: dict[str, int]) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = hiredis.Reader()
        self.waiting: deque[tuple[float, asyncio.Future[Any], OnReply | None]] = deque()
        self.closed = False
        self.on_invalidate = on_invalidate
        self.tracking = False
        """Whether Redis tracks this connection's reads (set once the handshake enabled it)."""
        self.unsent: list[bytes] = []
        """Packed commands not yet written, in the order of ``waiting``'s tail."""
        self.held: asyncio.TimerHandle | None = None
        """While commands are held (``hold``): the timer that releases them at the latest."""
        self.counts = counts
        """The connection's counters of commands sent and socket writes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        waiting = self.waiting
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.PushNotification):
                    self._pushed(reply)
                    continue
                _, future, on_reply = waiting.popleft()
                if isinstance(reply, hiredis.ReplyError):
                    if not future.done():
                        future.set_exception(
                            FeatureStoreUnavailable(f"feature store error: {reply}")
                        )
                    continue
                if on_reply is not None:
                    try:
                        on_reply(reply)
                    except Exception as err:  # noqa: BLE001 - a bad reply fails its caller only
                        if not future.done():
                            future.set_exception(err)
                        continue
                if not future.done():
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as err:
            self.fail(err)

    def _pushed(self, message: list[Any]) -> None:
        if self.on_invalidate is None or not message or message[0] != b"invalidate":
            return
        keys = message[1] if len(message) > 1 else None
        self.on_invalidate(list(keys) if keys is not None else None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc or ConnectionResetError("Redis closed the connection"))

    def write(
        self, args: tuple[Any, ...], defer: bool = False, on_reply: OnReply | None = None
    ) -> asyncio.Future[Any]:
        """Send one command; the future gets its reply (after ``on_reply`` saw it).

        ``defer``: write it at the end of this event-loop turn, with the other deferred commands
        of the turn. A command sent at once first flushes the deferred ones, so the wire order is
        always the order of ``waiting``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.closed or self.transport is None:
            future.set_exception(FeatureStoreUnreachable("feature store connection closed"))
            return future
        self.waiting.append((loop.time(), future, on_reply))
        if not self.unsent and defer:
            loop.call_soon(self.flush)
        self.unsent.append(hiredis.pack_command(args))
        self.counts["commands"] += 1
        if not defer:
            self.flush()
        return future

    def flush(self) -> None:
        """Write every buffered command in one call (unless they are held)."""
        if not self.unsent or self.closed or self.transport is None or self.held is not None:
            return
        unsent, self.unsent = self.unsent, []
        self.counts["writes"] += 1
        self.transport.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))

    def hold(self, limit_s: float) -> None:
        """Buffer commands instead of writing them, until ``release`` or ``limit_s`` from now."""
        if self.held is None and not self.closed:
            self.held = asyncio.get_running_loop().call_later(limit_s, self.release)

    def release(self) -> None:
        """End a hold: write what it buffered."""
        if self.held is not None:
            self.held.cancel()
            self.held = None
            self.flush()

    def fail(self, err: BaseException) -> None:
        """Close the socket; every waiting caller gets ``FeatureStoreUnreachable``."""
        if self.closed:
            return
        self.closed = True
        self.unsent.clear()
        self.release()  # stops the hold's timer; nothing is left to write
        failure = FeatureStoreUnreachable(f"feature store unreachable: {describe_error(err)}")
        while self.waiting:
            _, future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(failure)
        if self.transport is not None:
            self.transport.close()
        if self.on_invalidate is not None:
            self.on_invalidate(None)  # tracking ends with the connection


class PipelinedConnection:
    """``await execute("GET", key)`` -> the reply; pipelined across concurrent callers.

    A reply that is an error raises ``FeatureStoreUnavailable``; a connection that fails, or a
    reply slower than ``timeout_s``, raises ``FeatureStoreUnreachable`` for every waiting caller
    and the next command reconnects.
    """

    def __init__(
        self, url: str, timeout_s: float, on_invalidate: OnInvalidate | None = None
    ) -> None:
        try:
            options: dict[str, Any] = dict(parse_url(url))
        except ValueError as err:
            raise ConfigError(f"--redis-url is not a usable Redis URL: {err}") from err
        self._options = options
        self._timeout_s = timeout_s
        self._on_invalidate = on_invalidate
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.counts = {"commands": 0, "writes": 0}
        """Commands sent and the socket writes that carried them, over every connection."""

    @property
    def tracking(self) -> bool:
        """Whether Redis is tracking this connection's reads right now (see ``on_invalidate``)."""
        protocol = self._protocol
        return protocol is not None and not protocol.closed and protocol.tracking

    def hold(self, limit_s: float) -> None:
        """Hold the commands sent from now on in the buffer, until ``release`` or at most
        ``limit_s`` (so a slow caller can never starve them; the reply timeout still counts from
        when a command was issued, so keep ``limit_s`` well below it). No effect while
        disconnected."""
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            protocol.hold(limit_s)

    def release(self) -> None:
        """Send whatever a ``hold`` buffered, in one write."""
        protocol = self._protocol
        if protocol is not None:
            protocol.release()

    async def execute(self, *args: Any, on_reply: OnReply | None = None) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        return await protocol.write(args, on_reply=on_reply)

    def send(self, *args: Any) -> None:
        """Issue a command without waiting for its reply (a cache fill), written with the other
        fills of this event-loop turn.

        Later commands on this connection see its effect (Redis runs one connection's commands in
        order); its reply, or failure, is read and dropped.
        """
        protocol = self._protocol
        if protocol is None or protocol.closed:
            pending: asyncio.Future[Any] = asyncio.ensure_future(self.execute(*args))
        else:
            pending = protocol.write(args, defer=True)
        pending.add_done_callback(_drop_outcome)

    async def _connect(self) -> _RespProtocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            try:
                async with asyncio.timeout(self._timeout_s):
                    protocol = await self._open()
            except (OSError, TimeoutError, FeatureStoreUnavailable) as err:
                raise FeatureStoreUnreachable(
                    f"feature store unreachable: {describe_error(err)}"
                ) from err
            self._protocol = protocol
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.get_running_loop().create_task(self._watch())
            return protocol

    async def _open(self) -> _RespProtocol:
        options = self._options
        loop = asyncio.get_running_loop()

        def factory() -> _RespProtocol:
            return _RespProtocol(self._on_invalidate, self.counts)

        if "path" in options:
            _, protocol = await loop.create_unix_connection(factory, options["path"])
        else:
            context = _tls_context(options) if _is_tls(options) else None
            _, protocol = await loop.create_connection(
                factory,
                options.get("host", "localhost"),
                int(options.get("port", 6379)),
                ssl=context,
            )
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
                await protocol.write(command)
            if self._on_invalidate is not None:
                await self._track(protocol)
        except BaseException as err:
            protocol.fail(err)
            raise
        return protocol

    async def _track(self, protocol: _RespProtocol) -> None:
        """Switch to RESP3 and turn tracking on; a Redis that cannot (older than 6) is used
        without it, with a warning (the near cache stays empty)."""
        try:
            await protocol.write(("HELLO", "3"))
            await protocol.write(("CLIENT", "TRACKING", "ON"))
        except FeatureStoreUnreachable:
            raise
        except FeatureStoreUnavailable as err:
            log.warning("Redis cannot track reads (%s): the near cache stays off", err)
            return
        protocol.tracking = True

    async def _watch(self) -> None:
        """Fail the connection when its oldest caller has waited longer than the timeout."""
        loop = asyncio.get_running_loop()
        interval = max(self._timeout_s / 4, 0.005)
        while True:
            await asyncio.sleep(interval)
            protocol = self._protocol
            if protocol is None or protocol.closed or not protocol.waiting:
                continue
            started, _, _ = protocol.waiting[0]
            if loop.time() - started > self._timeout_s:
                protocol.fail(TimeoutError(f"no reply within {self._timeout_s} s"))

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.fail(ConnectionAbortedError("closed by the server"))


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
