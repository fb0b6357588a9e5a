"""TLS and bearer tokens on a real server over loopback: who gets in, who does not, and files
that cannot be used are refused before the server starts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2

from pipelines.service.health import check_health
from recsys.errors import ArtifactError, ConfigError
from recsys.export.signing import sign_manifest
from serving.client import RemoteError, recommend
from serving.config import ServeConfig
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.security import Security
from tests.servers import health_stub

if TYPE_CHECKING:
    from tests.servers import Artifacts, StartServer

TOKEN = "a-long-enough-secret-token-1234"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 signed by its own key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


READER = "a-token-that-may-only-read-42"


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"{TOKEN}\nwrite:another-accepted-token-5678\nread:{READER}\n")
    return path


def _recommend(channel: grpc.Channel, token: str | None) -> pb.RecommendResponse:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    stub = pb_grpc.RecommenderStub(channel)
    request = pb.RecommendRequest(history=["sku-1"], k=3)
    return stub.Recommend(request, timeout=5, metadata=metadata)


def test_only_calls_with_an_accepted_token_get_in(start_server: StartServer, tokens: Path) -> None:
    server = start_server(auth_token_file=str(tokens))
    with grpc.insecure_channel(server.target) as channel:
        for token in (None, "wrong-token-but-long-enough", TOKEN[:-1]):
            with pytest.raises(grpc.RpcError) as refused:
                _recommend(channel, token)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "Bearer <token>" in (refused.value.details() or "")
        assert len(_recommend(channel, TOKEN).items) == 3
        assert len(_recommend(channel, "another-accepted-token-5678").items) == 3  # rotation
        health = health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes need no token
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.RecommenderStub(channel).RecordInteractions(
                pb.RecordInteractionsRequest(user_id="mallory", item_ids=["sku-1"]), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_read_token_reads_and_may_not_write(start_server: StartServer, tokens: Path) -> None:
    server = start_server(auth_token_file=str(tokens))
    reader = (("authorization", f"Bearer {READER}"),)
    stub = pb_grpc.RecommenderStub(server.channel)
    assert len(_recommend(server.channel, READER).items) == 3
    stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="u"), timeout=5, metadata=reader)
    stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5, metadata=reader)
    for call, request in (
        (stub.RecordInteractions, pb.RecordInteractionsRequest(user_id="u", item_ids=["sku-1"])),
        (stub.DeleteUserData, pb.DeleteUserDataRequest(user_id="u")),
    ):
        with pytest.raises(grpc.RpcError) as denied:
            call(request, timeout=5, metadata=reader)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "needs a write token" in (denied.value.details() or "")
    writer = (("authorization", f"Bearer {TOKEN}"),)
    stub.RecordInteractions(
        pb.RecordInteractionsRequest(user_id="u", item_ids=["sku-1"]), timeout=5, metadata=writer
    )


def test_tokens_never_reach_the_log(
    start_server: StartServer, tokens: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_server(auth_token_file=str(tokens))
    with pytest.raises(grpc.RpcError):
        _recommend(server.channel, "wrong-token-but-long-enough")
    _recommend(server.channel, TOKEN)
    assert TOKEN not in caplog.text and READER not in caplog.text
    assert "3 accepted" in caplog.text


def test_mutual_tls_refuses_a_client_without_a_certificate(
    start_server: StartServer, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    server = start_server(tls_cert=str(cert), tls_key=str(key), tls_client_ca=str(cert))
    target = f"localhost:{server.port}"
    request = pb.RecommendRequest(history=["sku-1"], k=2)
    with pytest.raises(RemoteError, match="UNAVAILABLE"):
        recommend(target, request, 5, cert)  # no client certificate: the handshake fails
    answer = recommend(target, request, 5, cert, None, cert, key)  # the same CA signed it
    assert len(answer.items) == 2


def test_a_tls_port_speaks_only_tls(
    start_server: StartServer, tmp_path: Path, tokens: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    server = start_server(tls_cert=str(cert), tls_key=str(key), auth_token_file=str(tokens))
    target = f"localhost:{server.port}"
    with grpc.insecure_channel(target) as plaintext, pytest.raises(grpc.RpcError) as refused:
        _recommend(plaintext, TOKEN)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    answer = recommend(target, pb.RecommendRequest(history=["sku-1"], k=2), 5, cert, tokens)
    assert len(answer.items) == 2
    assert check_health(target, tls_ca=cert) == "SERVING"
    with pytest.raises(RemoteError, match="UNAUTHENTICATED"):
        recommend(target, pb.RecommendRequest(history=["sku-1"], k=2), 5, cert, None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls_cert": "cert.pem"}, "--tls-cert and --tls-key go together"),
        ({"tls_cert": "missing.pem", "tls_key": "missing.key"}, "--tls-cert missing.pem: cannot"),
        ({"tls_cert": "{tokens}", "tls_key": "{tokens}"}, "holds no PEM certificate"),
        ({"auth_token_file": "missing"}, "--auth-token-file missing: cannot read it"),
        ({"auth_token_file": "{empty}"}, "holds no token"),
        ({"auth_token_file": "{short}"}, "token on line 1 is shorter than 16 characters"),
        ({"tls_client_ca": "ca.pem"}, "--tls-client-ca needs TLS"),
    ],
)
def test_unusable_credentials_are_refused_naming_the_flag(
    tmp_path: Path, tokens: Path, values: dict[str, str], message: str
) -> None:
    (tmp_path / "empty").write_text("\n\n")
    (tmp_path / "short").write_text("secret\n")
    paths = {"tokens": str(tokens), "empty": str(tmp_path / "empty")}
    paths["short"] = str(tmp_path / "short")
    with pytest.raises(ConfigError, match=message):
        Security.of(ServeConfig(**{k: v.format(**paths) for k, v in values.items()}))


def _signed_copy(source: Path, target: Path, key: Ed25519PrivateKey) -> Path:
    shutil.copytree(source, target)
    sign_manifest(target, key, "manifest.json")
    return target


def test_a_server_with_a_verify_key_serves_only_what_that_key_signed(
    start_server: StartServer, artifacts: Artifacts, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    public = tmp_path / "pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(ArtifactError, match="is not signed"):
        start_server(verify_key=str(public))  # the first artifact, unsigned
    first = _signed_copy(artifacts.first, tmp_path / "first", key)
    server = start_server(first, verify_key=str(public))
    assert server.stub.Recommend(pb.RecommendRequest(history=["sku-1"], k=2), timeout=5).items
    assert server.call(server.app.reload(artifacts.second)) is False  # unsigned: refused
    forged = _signed_copy(artifacts.second, tmp_path / "forged", Ed25519PrivateKey.generate())
    assert server.call(server.app.reload(forged)) is False  # another key: refused
    second = _signed_copy(artifacts.second, tmp_path / "second", key)
    assert server.call(server.app.reload(second)) is True
