"""TLS channel bindings for SCRAM-SHA-256-PLUS: the bytes both ends compute from the TLS session.

Two types are supported; the shell computes whichever it can and passes them to
:class:`~mailstead.sasl.SaslServer` as ``{type: bytes}``:

- ``tls-exporter`` (RFC 9266): 32 bytes of TLS keying material exported with the label
  ``EXPORTER-Channel-Binding`` and an empty context (RFC 5705 / RFC 8446 §7.5). It is the type
  RFC 9266 makes the default for TLS 1.3, but Python's :mod:`ssl` module has no exporter API
  (no ``SSLObject.export_keying_material``: CPython issue gh-82133 is still open), so an
  asyncio/ssl shell cannot offer it today. The mechanism accepts it for shells that can.
- ``tls-server-end-point`` (RFC 5929 §4.1): a hash of the server's certificate, computable from
  the certificate alone (:func:`tls_server_end_point`), on any TLS version. It binds the
  exchange to the server's certificate rather than to the session, which still defeats a
  man-in-the-middle who does not hold the server's private key. This is the practical choice
  for Mailstead's own shells. A server that serves several certificates (SNI) must give the one
  this connection presented.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

TLS_EXPORTER = "tls-exporter"
TLS_SERVER_END_POINT = "tls-server-end-point"
CHANNEL_BINDING_TYPES = (TLS_EXPORTER, TLS_SERVER_END_POINT)

# RFC 9266 §2: the exporter label and length for tls-exporter (context: empty).
TLS_EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
TLS_EXPORTER_LENGTH = 32


def tls_server_end_point(certificate: bytes) -> bytes:
    """RFC 5929 §4.1 ``tls-server-end-point`` data of a certificate (DER, or PEM: the first
    certificate of the file, i.e. the leaf of a chain).

    The hash is the one of the certificate's signature algorithm, SHA-256 when that is MD5 or
    SHA-1; for algorithms without a separate hash (Ed25519, Ed448), which RFC 5929 predates,
    SHA-256 too, as most implementations do.
    """
    if certificate.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(certificate)
    else:
        cert = x509.load_der_x509_certificate(certificate)
    der = cert.public_bytes(Encoding.DER)
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return digest.finalize()
