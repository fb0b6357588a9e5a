"""The error interceptor: domain exceptions -> gRPC status, anything unexpected -> INTERNAL.

A ``ServiceError`` carries its status code and a message naming the problem; this is the one place
that calls ``context.abort``. An unexpected exception is logged with its traceback and answered
with INTERNAL (never UNKNOWN). Wrapped handlers are built once per method, not per call.

A request whose bytes do not decode as the method's message (random bytes, invalid UTF-8 in a
string field) would otherwise fail inside grpc's deserializer, which answers UNKNOWN and logs a
traceback per call: any client could flood the log. The deserializer is wrapped so that such a
request reaches the handler as ``Undecodable`` and is answered INVALID_ARGUMENT, with one log
line per method at most every ``UNDECODABLE_LOG_INTERVAL_S`` (saying how many were refused).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import grpc

from serving.errors import ResourceExhausted, ServiceError

log = logging.getLogger(__name__)

UNDECODABLE_LOG_INTERVAL_S: Final = 10.0

if TYPE_CHECKING:  # grpc's classes are generic only in the type stubs
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    Behaviour: TypeAlias = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
    Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]

Observe = Callable[[grpc.StatusCode, float], None]
"""Called with (status code, seconds) as each call of one method ends (the metrics)."""
Observer = Callable[[str], Observe]
"""Gives the ``Observe`` of a method, by its short name (``Recommend``), once per method."""


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps errors of the unary methods whose full name starts with ``prefix``."""

    def __init__(
        self,
        prefix: str,
        observer: Observer | None = None,
        deserializers: dict[str, Callable[[bytes], Any]] | None = None,
    ) -> None:
        self.prefix = prefix
        self.observer = observer
        self.deserializers = deserializers or {}
        """Per full method name, a request decoder used instead of the generated one (the
        batch's piece-by-piece decoding, ``serving.wire.LazyBatch``)."""
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(self.prefix) or handler.unary_unary is None:
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            _mapped(
                cast("Behaviour", handler.unary_unary),
                method,
                UndecodableLog(method),
                self.observer(_short_name(method)) if self.observer is not None else None,
            ),
            request_deserializer=_tolerant(
                self.deserializers.get(method, handler.request_deserializer)
            ),
            response_serializer=_passing_bytes(handler.response_serializer),
        )
        self._wrapped[method] = wrapped
        return wrapped


@dataclass(frozen=True)
class Undecodable:
    """A request whose bytes are not the method's message."""

    reason: str


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserialize``, returning ``Undecodable`` where it raises (for the handler to refuse)."""
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as err:  # noqa: BLE001 - DecodeError and whatever else the codec raises
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            return Undecodable(first_line[:200])

    return decode


def _passing_bytes(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """``serialize``, except that an answer already serialized (``bytes``, see ``serving.wire``)
    goes out as it is."""
    if serialize is None:
        return None

    def encode(response: Any) -> bytes:
        return response if isinstance(response, bytes) else serialize(response)

    return encode


class UndecodableLog:
    """One log line per interval for a method's undecodable requests, with their count: never a
    traceback, and never a line per request."""

    def __init__(self, method: str, interval_s: float = UNDECODABLE_LOG_INTERVAL_S) -> None:
        self.method = method
        self.interval_s = interval_s
        self.refused = 0
        self._last = float("-inf")

    def refuse(self, reason: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            log.warning(
                "refused %d undecodable request(s) to %s (latest: %s)",
                self.refused,
                self.method,
                reason,
            )
            self._last = now
            self.refused = 0


def _mapped(
    behaviour: Behaviour, method: str, undecodable: UndecodableLog, observe: Observe | None
) -> Behaviour:
    message = _short_name(method)

    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if isinstance(request, Undecodable):
                undecodable.refuse(request.reason)
                code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(
                    code,
                    f"request: the bytes are not a valid {message} request ({request.reason})",
                )
            try:
                return await behaviour(request, context)
            except ResourceExhausted as err:
                code = err.code
                # The standard pushback header: gRPC clients with a retry policy wait this long.
                metadata = (("grpc-retry-pushback-ms", str(err.retry_after_ms)),)
                await context.abort(err.code, str(err), trailing_metadata=metadata)
            except ServiceError as err:
                code = err.code
                await context.abort(err.code, str(err))
            except grpc.aio.AbortError:
                raise
            except Exception as err:  # noqa: BLE001 - the last line of defence: INTERNAL, logged
                code = grpc.StatusCode.INTERNAL
                log.exception("unexpected error in %s", method)
                await context.abort(code, f"internal error: {type(err).__name__}")
        finally:
            if observe is not None:
                observe(code, time.perf_counter() - started)

    return handle


def _short_name(method: str) -> str:
    """``/recsys.v1.Recommender/Recommend`` -> ``Recommend``."""
    return method.rsplit("/", 1)[-1]
