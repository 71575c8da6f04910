"""A sans-IO SASL client: PLAIN, LOGIN, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS.

For the outbound SMTP client authenticating to a smarthost, and for tests driving the server.
The shell sends :meth:`SaslClient.initial_response` with the AUTH command (or an empty response
when it is None and the server challenges), then answers each decoded challenge with
:meth:`SaslClient.respond`. A SCRAM server's final message must be checked, whether it comes as
a last challenge (``respond``) or as additional data with the success (``verify_final``); only
then is :attr:`SaslClient.server_verified` true.
"""

from __future__ import annotations

import hmac

from mailstead.sasl import scram
from mailstead.sasl.server import LOGIN, MECHANISMS, PLAIN, SCRAM_SHA_256_PLUS
from mailstead.sasl.steps import UnknownMechanism


class SaslClientError(Exception):
    """The server misbehaved or refused (bad SCRAM message, wrong signature, e=...)."""


class SaslClient:
    """One exchange as the client.

    ``channel_binding`` is ``(type, data)`` for the TLS connection when the client can bind.
    With a -PLUS mechanism it is required and used ("p="); with SCRAM-SHA-256 it makes the
    client say "y" (it could bind but the server did not offer -PLUS, RFC 5802 §6), so a server
    that did offer -PLUS detects the downgrade. ``client_nonce`` is for tests (RFC 7677's
    example); random otherwise. Iteration counts outside ``min_iterations`` ..
    ``scram.MAX_ITERATIONS`` are refused.
    """

    def __init__(
        self,
        mechanism: str,
        *,
        authcid: str,
        password: str,
        authzid: str = "",
        channel_binding: tuple[str, bytes] | None = None,
        client_nonce: str | None = None,
        min_iterations: int = scram.MIN_ITERATIONS,
    ) -> None:
        name = mechanism.upper()
        if name not in MECHANISMS:
            raise UnknownMechanism(f"unsupported mechanism {mechanism!r}")
        if name == SCRAM_SHA_256_PLUS and channel_binding is None:
            raise UnknownMechanism(f"{name} needs a TLS channel binding")
        self.mechanism = name
        self.authcid = authcid
        self.authzid = authzid
        self._password = password
        self._binding = channel_binding
        self._client_nonce = scram.check_nonce(client_nonce or scram.new_nonce())
        self._min_iterations = min_iterations
        self._sent = 0  # client messages sent so far
        self._gs2_header = ""
        self._bare = ""
        self._server_signature = b""
        self.server_verified = False

    @property
    def is_scram(self) -> bool:
        return self.mechanism not in (PLAIN, LOGIN)

    def initial_response(self) -> bytes | None:
        """What to send with the AUTH command (None for LOGIN, which waits for its prompt)."""
        if self._sent:
            raise SaslClientError("initial_response() after the exchange began")
        if self.mechanism == LOGIN:
            return None
        self._sent = 1
        return self._plain() if self.mechanism == PLAIN else self._client_first()

    def respond(self, challenge: bytes) -> bytes:
        """The answer to one decoded server challenge."""
        sent, self._sent = self._sent, self._sent + 1
        if self.mechanism == PLAIN:
            if sent or challenge:
                raise SaslClientError("PLAIN takes no challenge")
            return self._plain()
        if self.mechanism == LOGIN:
            # draft-murchison-sasl-login: "Username:" then "Password:" (servers vary the text)
            if sent > 1:
                raise SaslClientError("LOGIN takes two challenges")
            return (self.authcid if sent == 0 else self._password).encode()
        if sent == 0:
            if challenge:
                raise SaslClientError("SCRAM: the server spoke first")
            return self._client_first()
        if sent == 1:
            return self._client_final(challenge)
        if sent == 2:
            self.verify_final(challenge)
            return b""
        raise SaslClientError("SCRAM exchange already complete")

    def verify_final(self, data: bytes) -> None:
        """Check SCRAM's server-final-message (RFC 5802 §3: the server proves it knows the
        ServerKey); raises :class:`SaslClientError` unless it is right."""
        text = _text(data)
        try:
            attrs = scram.attributes(text)
        except scram.ScramSyntaxError as exc:
            raise SaslClientError(f"bad server-final-message: {exc}") from None
        if attrs[0][0] == "e":
            raise SaslClientError(f"server error: {attrs[0][1]}")
        if attrs[0][0] != "v":
            raise SaslClientError("server-final-message without a verifier")
        try:
            verifier = scram.unb64(attrs[0][1])
        except scram.ScramSyntaxError:
            raise SaslClientError("bad verifier") from None
        if not self._server_signature or not hmac.compare_digest(verifier, self._server_signature):
            raise SaslClientError("the server's signature is wrong")
        self.server_verified = True

    # -- messages ----------------------------------------------------------------------------
    def _plain(self) -> bytes:
        return f"{self.authzid}\0{self.authcid}\0{self._password}".encode()

    def _client_first(self) -> bytes:
        if self.mechanism == SCRAM_SHA_256_PLUS:
            assert self._binding is not None
            flag = f"p={self._binding[0]}"
        else:
            flag = "y" if self._binding is not None else "n"
        authz = f"a={scram.encode_saslname(self.authzid)}" if self.authzid else ""
        self._gs2_header = f"{flag},{authz},"
        self._bare = f"n={scram.encode_saslname(self.authcid)},r={self._client_nonce}"
        return (self._gs2_header + self._bare).encode()

    def _client_final(self, challenge: bytes) -> bytes:
        server_first = _text(challenge)
        try:
            parsed = scram.parse_server_first(server_first)
        except scram.ScramSyntaxError as exc:
            raise SaslClientError(f"bad server-first-message: {exc}") from None
        if not parsed.nonce.startswith(self._client_nonce) or parsed.nonce == self._client_nonce:
            raise SaslClientError("the server's nonce does not extend ours")
        if not self._min_iterations <= parsed.iterations <= scram.MAX_ITERATIONS:
            raise SaslClientError(f"iteration count {parsed.iterations} refused")
        cbind = self._gs2_header.encode()
        if self.mechanism == SCRAM_SHA_256_PLUS:
            assert self._binding is not None
            cbind += self._binding[1]
        without_proof = f"c={scram.b64(cbind)},r={parsed.nonce}"
        auth_message = f"{self._bare},{server_first},{without_proof}".encode()
        salted = scram.salted_password(self._password, parsed.salt, parsed.iterations)
        client_key, key = scram.keys_from_salted(salted)
        proof = scram.xor(client_key, scram.hmac_sha256(key.stored_key, auth_message))
        self._server_signature = scram.hmac_sha256(key.server_key, auth_message)
        return f"{without_proof},p={scram.b64(proof)}".encode()


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslClientError("server message is not UTF-8") from None
