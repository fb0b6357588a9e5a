"""Who may talk to the server: TLS on the port, and bearer tokens on every call.

Without either, anyone who reaches the port reads or rewrites any user's history. With
``--tls-cert``/``--tls-key`` the port speaks only TLS (grpc's own ``ssl_server_credentials``);
with ``--auth-token-file`` every call must carry ``authorization: Bearer <token>`` metadata
matching a line of that file (several lines: rotate a token without a restart of the clients
first), compared in constant time. The health service stays open to probes (an orchestrator
asks it without credentials; it reveals nothing but serving / not serving). With ``--verify-key``
only artifacts signed with its private key are served (``recsys.export.signing``).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import grpc

from recsys.errors import ConfigError
from serving.config import ServeConfig

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from serving.interceptors import Continuation, Handler

OPEN_METHODS: Final = ("/grpc.health.v1.Health/",)
"""Method prefixes answered without a token."""
MIN_TOKEN_LENGTH: Final = 16
AUTH_HEADER: Final = "authorization"


def _read(path: Path, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{flag} {path}: cannot read it ({err.strerror})") from err


def server_credentials(cert: Path, key: Path) -> grpc.ServerCredentials:
    """TLS credentials from PEM files; errors name the flag."""
    chain, private_key = _read(cert, "--tls-cert"), _read(key, "--tls-key")
    if b"-----BEGIN CERTIFICATE-----" not in chain:
        raise ConfigError(f"--tls-cert {cert} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in private_key:
        raise ConfigError(f"--tls-key {key} holds no PEM private key")
    return grpc.ssl_server_credentials([(private_key, chain)])


def read_tokens(path: Path) -> list[bytes]:
    """The accepted tokens: the file's non-empty lines, each at least ``MIN_TOKEN_LENGTH``."""
    lines = [line.strip() for line in _read(path, "--auth-token-file").splitlines()]
    tokens = [line for line in lines if line]
    if not tokens:
        raise ConfigError(f"--auth-token-file {path} holds no token (one per line)")
    short = [n for n, token in enumerate(tokens, 1) if len(token) < MIN_TOKEN_LENGTH]
    if short:
        raise ConfigError(
            f"--auth-token-file {path}: token {short[0]} is shorter than {MIN_TOKEN_LENGTH} "
            "characters (guessable)"
        )
    return tokens


@dataclass(frozen=True)
class Security:
    """What a server's configuration asks for: accepted tokens (none: no authentication) and
    TLS credentials (None: plaintext), read from their files once."""

    tokens: list[bytes]
    credentials: grpc.ServerCredentials | None
    verify_key: Ed25519PublicKey | None = None
    """Serve only artifacts signed with its private key."""

    @classmethod
    def of(cls, config: ServeConfig) -> Security:
        tokens = read_tokens(Path(config.auth_token_file)) if config.auth_token_file else []
        credentials = None
        if config.tls_cert is not None and config.tls_key is not None:
            credentials = server_credentials(Path(config.tls_cert), Path(config.tls_key))
        key = None
        if config.verify_key:
            # Imported here: the clients of this module (recsys health) must not load torch.
            from recsys.export.signing import load_public_key

            key = load_public_key(Path(config.verify_key))
        return cls(tokens, credentials, key)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses, UNAUTHENTICATED, every call without one of ``tokens`` (``OPEN_METHODS`` pass)."""

    def __init__(self, tokens: Sequence[bytes]) -> None:
        self._expected = [b"Bearer " + token for token in tokens]

    def _allowed(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(OPEN_METHODS):
            return True
        given = b""
        for key, value in details.invocation_metadata or ():
            if key == AUTH_HEADER:
                given = value.encode() if isinstance(value, str) else bytes(value)
        # Every token compared, in constant time: no early exit tells which one nearly matched.
        matches = [hmac.compare_digest(given, expected) for expected in self._expected]
        return any(matches)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or self._allowed(handler_call_details):
            return handler
        return _refusal(handler)


_REFUSED = "missing or wrong credentials: send metadata 'authorization: Bearer <token>'"


def _refusal(handler: Handler) -> Handler:
    """A handler of the same kind as ``handler`` that answers UNAUTHENTICATED."""

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSED)

    async def streaming(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSED)
        yield None  # pragma: no cover - abort raises

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary)
    return grpc.stream_stream_rpc_method_handler(streaming)


def client_channel(target: str, tls_ca: Path | None = None) -> grpc.Channel:
    """A channel to ``target``: TLS checked against the CA bundle ``tls_ca``, else plaintext."""
    if tls_ca is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(_read(tls_ca, "--tls-ca")))


def call_metadata(token_file: Path | None) -> tuple[tuple[str, str], ...]:
    """The metadata a call carries: the first token of ``token_file`` as a bearer token."""
    if token_file is None:
        return ()
    return ((AUTH_HEADER, "Bearer " + read_tokens(token_file)[0].decode()),)
