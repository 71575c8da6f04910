"""TLS certificates and contexts: a generated certificate serves a real handshake."""

import datetime
import ipaddress
import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mailstead.security.tls import TLSError, generate_self_signed, server_context


@pytest.fixture
def cert(tmp_path):
    cert_path, key_path = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    generate_self_signed(
        "mail.example.test", cert_path, key_path, extra_names=["localhost", "127.0.0.1", "::1"]
    )
    return cert_path, key_path


def handshake(server_ctx, client_ctx, server_hostname="mail.example.test"):
    """Run a TLS handshake over a socketpair; returns (server version, client version, cipher)."""
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    result = {}

    def serve():
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                result["server"] = s.version()
                s.sendall(b"220 ready\r\n")
        except (ssl.SSLError, OSError) as exc:
            result["server_error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=server_hostname) as c:
            assert c.recv(100) == b"220 ready\r\n"
            return result, c.version(), c.cipher()
    finally:
        thread.join(10)


def client_for(cert_path):
    ctx = ssl.create_default_context(cafile=str(cert_path))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def test_generated_certificate(cert):
    cert_path, key_path = cert
    parsed = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.test", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert isinstance(parsed.public_key(), ec.EllipticCurvePublicKey)
    assert parsed.public_key().curve.name == "secp256r1"
    # CA/Browser Forum limit, backdating included: 825 days and 5 minutes was refused by clients
    lifetime = parsed.not_valid_after_utc - parsed.not_valid_before_utc
    assert lifetime == datetime.timedelta(days=397)
    assert parsed.not_valid_before_utc <= datetime.datetime.now(datetime.UTC)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in cert_path.parent.iterdir()) == ["cert.pem", "key.pem"]


def test_regenerating_replaces_both_files(cert):
    cert_path, key_path = cert
    old_cert, old_key = cert_path.read_bytes(), key_path.read_bytes()
    generate_self_signed("mail.example.test", cert_path, key_path, days=1)
    assert cert_path.read_bytes() != old_cert
    assert key_path.read_bytes() != old_key
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    server_context(cert_path, key_path)  # the new pair matches


@pytest.mark.parametrize("days", [0, 398, 825])
def test_validity_over_397_days_is_refused(tmp_path, days):
    with pytest.raises(ValueError, match="397"):
        generate_self_signed("mail.example.test", tmp_path / "c.pem", tmp_path / "k.pem", days=days)
    assert not (tmp_path / "k.pem").exists()


def test_unicode_hostname_is_written_as_a_label(tmp_path):
    generate_self_signed("mail.bücher.example", tmp_path / "c.pem", tmp_path / "k.pem")
    parsed = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.xn--bcher-kva.example"]


@pytest.mark.parametrize("name", ["mail.example.test", "localhost", "127.0.0.1"])
def test_handshake(cert, name):
    result, version, _cipher = handshake(server_context(*cert), client_for(cert[0]), name)
    assert version in ("TLSv1.2", "TLSv1.3")
    assert result["server"] == version


def test_handshake_rejects_other_names(cert):
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(*cert), client_for(cert[0]), "other.example.test")


def test_tls12_client_gets_a_forward_secret_aead_suite(cert):
    client = client_for(cert[0])
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    _result, version, cipher = handshake(server_context(*cert), client)
    assert version == "TLSv1.2"
    assert cipher[0].startswith("ECDHE-")
    assert "GCM" in cipher[0] or "CHACHA20" in cipher[0]


def test_min_version_tls13_refuses_tls12(cert):
    client = client_for(cert[0])
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        handshake(server_context(*cert, min_version="TLSv1.3"), client)


def test_old_protocols_are_refused(cert):
    ctx = server_context(*cert)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_bad_min_version(cert):
    with pytest.raises(ValueError, match="min_version"):
        server_context(*cert, min_version="TLSv1.1")


def test_missing_or_mismatched_files(cert, tmp_path):
    cert_path, key_path = cert
    with pytest.raises(TLSError, match="cannot load certificate"):
        server_context(tmp_path / "absent.pem", key_path)
    generate_self_signed("other.example", tmp_path / "c2.pem", tmp_path / "k2.pem")
    with pytest.raises(TLSError, match=str(tmp_path / "k2.pem")):
        server_context(cert_path, tmp_path / "k2.pem")
