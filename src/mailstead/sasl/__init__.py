"""SASL (RFC 4422) for SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH: a sans-IO server and client.

Mechanisms: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), SCRAM-SHA-256 (RFC 5802,
RFC 7677) and SCRAM-SHA-256-PLUS with the ``tls-exporter`` (RFC 9266) or
``tls-server-end-point`` (RFC 5929) channel binding. The shells move bytes; nothing here does
I/O or reads a clock.
"""

from mailstead.sasl.channel_binding import (
    CHANNEL_BINDING_TYPES,
    TLS_EXPORTER,
    TLS_SERVER_END_POINT,
    tls_server_end_point,
)
from mailstead.sasl.client import SaslClient, SaslClientError
from mailstead.sasl.scram import ScramCredentials, ScramKey, ScramSecret
from mailstead.sasl.server import (
    LOGIN,
    MAX_RESPONSE,
    MECHANISMS,
    PLAIN,
    SCRAM_SHA_256,
    SCRAM_SHA_256_PLUS,
    SaslServer,
    mechanisms,
)
from mailstead.sasl.steps import (
    Aborted,
    Challenge,
    Failure,
    Malformed,
    NeedPassword,
    NeedScram,
    SaslStateError,
    Step,
    Success,
    UnknownMechanism,
    decode_response,
)

__all__ = [
    "CHANNEL_BINDING_TYPES",
    "LOGIN",
    "MAX_RESPONSE",
    "MECHANISMS",
    "PLAIN",
    "SCRAM_SHA_256",
    "SCRAM_SHA_256_PLUS",
    "TLS_EXPORTER",
    "TLS_SERVER_END_POINT",
    "Aborted",
    "Challenge",
    "Failure",
    "Malformed",
    "NeedPassword",
    "NeedScram",
    "SaslClient",
    "SaslClientError",
    "SaslServer",
    "SaslStateError",
    "ScramCredentials",
    "ScramKey",
    "ScramSecret",
    "Step",
    "Success",
    "UnknownMechanism",
    "decode_response",
    "mechanisms",
    "tls_server_end_point",
]
