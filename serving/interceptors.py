"""The error interceptor: domain exceptions -> gRPC status, anything unexpected -> INTERNAL.

A ``ServiceError`` carries its status code and a message naming the problem; this is the one place
that calls ``context.abort``. An unexpected exception is logged with its traceback and answered
with INTERNAL (never UNKNOWN). Wrapped handlers are built once per method, not per call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc

from serving.errors import ServiceError

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # grpc's classes are generic only in the type stubs
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    Behaviour: TypeAlias = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
    Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps errors of the unary methods whose full name starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
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
            _mapped(cast("Behaviour", handler.unary_unary), method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped


def _mapped(behaviour: Behaviour, method: str) -> Behaviour:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behaviour(request, context)
        except ServiceError as err:
            await context.abort(err.code, str(err))
        except grpc.aio.AbortError:
            raise
        except Exception as err:  # noqa: BLE001 - the last line of defence: INTERNAL, logged
            log.exception("unexpected error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}")

    return handle
