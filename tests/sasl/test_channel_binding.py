"""tls-server-end-point (RFC 5929 §4.1): the certificate's hash, by its signature algorithm."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mailstead.sasl import tls_server_end_point

_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC = ec.generate_private_key(ec.SECP256R1())


def certificate(key, algorithm):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.test")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    return builder.sign(key, algorithm).public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("key", "algorithm", "digest"),
    [
        (_EC, hashes.SHA256(), hashlib.sha256),
        (_EC, hashes.SHA384(), hashlib.sha384),
        (_RSA, hashes.SHA512(), hashlib.sha512),
        (ed25519.Ed25519PrivateKey.generate(), None, hashlib.sha256),  # no separate hash
    ],
)
def test_hash_follows_the_signature_algorithm(key, algorithm, digest):
    der = certificate(key, algorithm)
    assert tls_server_end_point(der) == digest(der).digest()


# An ECDSA-with-SHA1 self-signed certificate (`openssl req -x509 -sha1`; the cryptography
# package no longer signs with SHA-1).
SHA1_CERT = base64.b64decode(
    "MIIBbDCCARKgAwIBAgIUBv2Cc2V9qK0P/Yxc5Ohe4m/DgxUwCQYHKoZIzj0EATAMMQowCAYDVQQD"
    "DAF4MB4XDTI2MTEyMzE2NDgyN1oXDTI2MTEyNDE2NDgyN1owDDEKMAgGA1UEAwwBeDBZMBMGByqG"
    "SM49AgEGCCqGSM49AwEHA0IABGgGCPYBvVEDDm+eiI3E+sETCVJpwrAHOBxfJGOYlTD6jr6P+yzH"
    "Wp9gcqdmAZedT4xf85xklfcjEsBD3xZxXKqjUzBRMB0GA1UdDgQWBBSJ4h0/zjgX5DJc/CFR6/FC"
    "XUM7/DAfBgNVHSMEGDAWgBSJ4h0/zjgX5DJc/CFR6/FCXUM7/DAPBgNVHRMBAf8EBTADAQH/MAkG"
    "ByqGSM49BAEDSQAwRgIhAK2npM0cDAHdyj852vBwQBA8atQ0/oGxc+LUKSmMJODbAiEA/8vq6tGB"
    "1FZq1+2r/Iu7AvK/iMNZH4ihj+izeU0QQmM="
)


def test_sha1_signed_certificates_hash_with_sha256():
    """RFC 5929 §4.1: MD5 and SHA-1 are replaced by SHA-256."""
    assert x509.load_der_x509_certificate(SHA1_CERT).signature_hash_algorithm.name == "sha1"
    assert tls_server_end_point(SHA1_CERT) == hashlib.sha256(SHA1_CERT).digest()


def test_pem_gives_the_first_certificate_of_a_chain():
    leaf, issuer = certificate(_EC, hashes.SHA256()), certificate(_RSA, hashes.SHA256())
    pem = (ssl.DER_cert_to_PEM_cert(leaf) + ssl.DER_cert_to_PEM_cert(issuer)).encode()
    assert tls_server_end_point(pem) == hashlib.sha256(leaf).digest()
