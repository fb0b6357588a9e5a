"""Who may talk to the server: TLS on the port, and bearer tokens with scopes on every call.

Without either, anyone who reaches the port reads or rewrites any user's history. With
``--tls-cert``/``--tls-key`` the port speaks only TLS (grpc's own ``ssl_server_credentials``;
with ``--tls-client-ca`` a client must also present a certificate that CA signed). With
``--auth-token-file`` every call must carry ``authorization: Bearer <token>`` metadata matching a
line of that file, compared in constant time: ``read:<token>`` may call the read methods
(``READ_METHODS``), ``write:<token>`` (or a bare ``<token>``) everything. A call without an
accepted token is UNAUTHENTICATED, one whose token lacks the scope PERMISSION_DENIED; tokens are
never logged. Several lines let tokens rotate. The health service stays open to probes (an
orchestrator asks it without credentials; it reveals nothing but serving / not serving). With
``--verify-key`` only artifacts signed with its private key are served
(``recsys.export.signing``).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import grpc

from recsys.errors import ConfigError
from recsys.io import read_flag_file
from serving.config import ServeConfig

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from serving.interceptors import Continuation, Handler

OPEN_METHODS: Final = ("/grpc.health.v1.Health/",)
"""Method prefixes answered without a token."""
READ_METHODS: Final = frozenset(
    {
        "/recsys.v1.Recommender/Recommend",
        "/recsys.v1.Recommender/RecommendBatch",
        "/recsys.v1.Recommender/GetUserHistory",
        "/recsys.v1.Recommender/GetModelInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
"""What a ``read:`` token may call; anything else (writes, deletions) needs ``write:``."""
SCOPES: Final = ("read", "write")
MIN_TOKEN_LENGTH: Final = 16
AUTH_HEADER: Final = "authorization"


def server_credentials(
    cert: Path, key: Path, client_ca: Path | None = None
) -> grpc.ServerCredentials:
    """TLS credentials from PEM files (with ``client_ca``: clients must present a certificate
    it signed); errors name the flag."""
    chain, private_key = read_flag_file(cert, "--tls-cert"), read_flag_file(key, "--tls-key")
    if b"-----BEGIN CERTIFICATE-----" not in chain:
        raise ConfigError(f"--tls-cert {cert} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in private_key:
        raise ConfigError(f"--tls-key {key} holds no PEM private key")
    if client_ca is None:
        return grpc.ssl_server_credentials([(private_key, chain)])
    roots = read_flag_file(client_ca, "--tls-client-ca")
    if b"-----BEGIN CERTIFICATE-----" not in roots:
        raise ConfigError(f"--tls-client-ca {client_ca} holds no PEM certificate")
    return grpc.ssl_server_credentials(
        [(private_key, chain)], root_certificates=roots, require_client_auth=True
    )


def read_tokens(path: Path) -> list[tuple[str, bytes]]:
    """The accepted (scope, token) pairs: the file's non-empty lines, ``read:<token>``,
    ``write:<token>`` or a bare ``<token>`` (write), each token at least ``MIN_TOKEN_LENGTH``."""
    lines = [line.strip() for line in read_flag_file(path, "--auth-token-file").splitlines()]
    entries: list[tuple[str, bytes]] = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        scope, separator, token = line.partition(b":")
        if not separator or scope.decode(errors="replace") not in SCOPES:
            scope, token = b"write", line
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"--auth-token-file {path}: the token on line {number} is shorter than "
                f"{MIN_TOKEN_LENGTH} characters (guessable)"
            )
        entries.append((scope.decode(), token))
    if not entries:
        raise ConfigError(f"--auth-token-file {path} holds no token (one per line)")
    return entries


@dataclass(frozen=True)
class Security:
    """What a server's configuration asks for: accepted tokens (none: no authentication) and
    TLS credentials (None: plaintext), read from their files once."""

    tokens: list[tuple[str, bytes]]
    """(scope, token) pairs."""
    credentials: grpc.ServerCredentials | None
    verify_key: Ed25519PublicKey | None = None
    """Serve only artifacts signed with its private key."""

    @classmethod
    def of(cls, config: ServeConfig) -> Security:
        tokens = read_tokens(Path(config.auth_token_file)) if config.auth_token_file else []
        credentials = None
        if config.tls_cert is not None and config.tls_key is not None:
            client_ca = Path(config.tls_client_ca) if config.tls_client_ca else None
            credentials = server_credentials(Path(config.tls_cert), Path(config.tls_key), client_ca)
        key = None
        if config.verify_key:
            # Imported here: the clients of this module (recsys health) must not load torch.
            from recsys.export.signing import load_public_key

            key = load_public_key(Path(config.verify_key))
        return cls(tokens, credentials, key)


_REFUSED = "missing or wrong credentials: send metadata 'authorization: Bearer <token>'"


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for a call without an accepted token, PERMISSION_DENIED for a token
    without the method's scope (``OPEN_METHODS`` pass)."""

    def __init__(self, tokens: Sequence[tuple[str, bytes]]) -> None:
        self._expected = [(scope, b"Bearer " + token) for scope, token in tokens]

    def _scope(self, details: grpc.HandlerCallDetails) -> str | None:
        """The scope of the call's token, None when it carries no accepted one."""
        given = b""
        for key, value in details.invocation_metadata or ():
            if key == AUTH_HEADER:
                given = value.encode() if isinstance(value, str) else bytes(value)
        # Every token compared, in constant time: no early exit tells which one nearly matched.
        found = None
        for scope, expected in self._expected:
            if hmac.compare_digest(given, expected) and found != "write":
                found = scope
        return found

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHODS):
            return handler
        scope = self._scope(handler_call_details)
        if scope is None:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, _REFUSED)
        if scope != "write" and method not in READ_METHODS:
            return _refusal(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method.rsplit('/', 1)[-1]} needs a write token; this one may only read",
            )
        return handler


def _refusal(handler: Handler, code: grpc.StatusCode, message: str) -> Handler:
    """A handler of the same kind as ``handler`` that answers ``code``."""

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def streaming(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        await context.abort(code, message)
        yield None  # pragma: no cover - abort raises

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary)
    return grpc.stream_stream_rpc_method_handler(streaming)


def client_channel(
    target: str,
    tls_ca: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> grpc.Channel:
    """A channel to ``target``: TLS checked against the CA bundle ``tls_ca`` (presenting
    ``client_cert``/``client_key`` where the server asks for one), else plaintext."""
    if tls_ca is None:
        return grpc.insecure_channel(target)
    chain = read_flag_file(client_cert, "--tls-client-cert") if client_cert else None
    key = read_flag_file(client_key, "--tls-client-key") if client_key else None
    credentials = grpc.ssl_channel_credentials(
        read_flag_file(tls_ca, "--tls-ca"), private_key=key, certificate_chain=chain
    )
    return grpc.secure_channel(target, credentials)


def call_metadata(token_file: Path | None) -> tuple[tuple[str, str], ...]:
    """The metadata a call carries: the first token of ``token_file`` as a bearer token."""
    if token_file is None:
        return ()
    return ((AUTH_HEADER, "Bearer " + read_tokens(token_file)[0][1].decode()),)
