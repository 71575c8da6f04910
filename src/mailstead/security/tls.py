"""TLS: server contexts with secure defaults, and self-signed certificates for first start and
tests.

Every TLS listener and STARTTLS use one ``server_context``; reloading the certificate means building
a new context and using it for new connections.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

import idna
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailstead.security.files import write_atomically

TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are all fine and set separately by
# OpenSSL). Broad enough for the MTAs and clients in the field.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"

# The longest validity clients accept for a server certificate (CA/Browser Forum baseline
# requirements since 2020-09; Apple's clients refuse longer ones), backdating included.
MAX_VALIDITY_DAYS = 397
_BACKDATE = datetime.timedelta(minutes=5)  # tolerates a client clock a little behind


class TLSError(Exception):
    """A certificate or key could not be loaded; the message names the files."""


def server_context(cert_path: Path, key_path: Path, min_version: str = "TLSv1.2") -> ssl.SSLContext:
    """A server-side context for ``cert_path`` (PEM chain, leaf first) and ``key_path``."""
    if min_version not in TLS_VERSIONS:
        raise ValueError(f"min_version must be one of {', '.join(TLS_VERSIONS)}: {min_version!r}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[min_version]
    ctx.options |= (
        ssl.OP_NO_COMPRESSION  # CRIME
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
        | ssl.OP_NO_RENEGOTIATION  # client-initiated renegotiation is a DoS lever
    )
    ctx.set_ciphers(_TLS12_CIPHERS)
    try:
        ctx.load_cert_chain(certfile=cert_path, keyfile=key_path)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load certificate {cert_path} with key {key_path}: {exc}") from exc
    return ctx


def _san_entry(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        # Certificates carry A-labels (RFC 5280 §7.2).
        ascii_name = name if name.isascii() else idna.encode(name, uts46=True).decode("ascii")
        return x509.DNSName(ascii_name.lower().rstrip("."))


def generate_self_signed(
    hostname: str,
    cert_path: Path,
    key_path: Path,
    *,
    days: int = MAX_VALIDITY_DAYS,
    extra_names: Sequence[str] = (),
) -> None:
    """Write a new EC P-256 key (mode 0600) and a self-signed certificate (mode 0644) for
    ``hostname`` and ``extra_names`` (host names or IP addresses, e.g. "localhost", "127.0.0.1",
    "::1"), valid for ``days`` (at most MAX_VALIDITY_DAYS) counted from five minutes ago. Each
    file is replaced atomically; the key is written first so the certificate never names a
    missing key."""
    if not 0 < days <= MAX_VALIDITY_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_VALIDITY_DAYS}: {days}")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for name in (hostname, *extra_names):
        entry = _san_entry(name)
        if entry not in names:
            names.append(entry)
    # The CN is limited to 64 characters (RFC 5280 ub-common-name); clients check the SAN anyway.
    common_name = hostname if len(hostname) <= 64 else "mailstead"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before = datetime.datetime.now(datetime.UTC) - _BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(key_path, key_pem, mode=0o600)
    write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
