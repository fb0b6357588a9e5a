"""Domain errors of the service, each carrying the gRPC status it becomes.

Handlers raise these; one interceptor (``serving.interceptors``) turns them into
``context.abort(code, message)``, so no handler sets codes itself.
"""

from __future__ import annotations

import grpc

from recsys.errors import RecsysError


class ServiceError(RecsysError):
    """A request that cannot be answered; ``code`` is the status the caller receives."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    """Bad input; the message starts with the offending field (``k: must be ...``)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class Unavailable(ServiceError):
    """No safe answer right now (dependency down, overloaded, shutting down): retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(ServiceError):
    """The server's queue is full: retry after ``retry_after_ms`` (sent as trailing metadata)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(f"{message}; retry in {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms


class FeatureStoreUnavailable(Unavailable):
    """Redis could not be reached or answered with an error."""


class FeatureStoreUnreachable(FeatureStoreUnavailable):
    """The connection failed or timed out (as opposed to one command's error reply)."""


class DeadlineExceeded(ServiceError):
    """The caller's deadline passed before the work could be done."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


def describe_error(err: BaseException) -> str:
    """``Type: message`` (the type alone when the message is empty), for logs and statuses."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
