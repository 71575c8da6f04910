"""A sans-IO SASL server (RFC 4422): PLAIN, LOGIN, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS.

The shell (SMTP AUTH, IMAP AUTHENTICATE, POP3 AUTH) decodes each client line with
:func:`~mailstead.sasl.decode_response`, feeds it in, and does what the returned step says:
send a challenge, ask the directory (``NeedPassword`` -> ``password_checked``, ``NeedScram`` ->
``scram_credentials``), or finish. The server keeps no clock and does no I/O; calling a method
out of turn raises :class:`SaslStateError`.

No proxy authentication: an authorization identity other than the authentication identity
(compared case-insensitively, as the directory compares addresses) fails.
"""

from __future__ import annotations

import enum
import hmac
import secrets
from collections.abc import Mapping
from types import MappingProxyType

from mailstead.sasl import scram
from mailstead.sasl.channel_binding import CHANNEL_BINDING_TYPES
from mailstead.sasl.steps import (
    Challenge,
    Failure,
    NeedPassword,
    NeedScram,
    SaslStateError,
    Step,
    Success,
    UnknownMechanism,
)

PLAIN = "PLAIN"
LOGIN = "LOGIN"
SCRAM_SHA_256 = scram.MECHANISM
SCRAM_SHA_256_PLUS = scram.MECHANISM_PLUS
# Strongest first: the order servers advertise and clients prefer.
MECHANISMS = (SCRAM_SHA_256_PLUS, SCRAM_SHA_256, PLAIN, LOGIN)

# One decoded client response at most (PLAIN allows 255-octet fields, RFC 4616 §2; SCRAM
# messages are far shorter): longer ones fail as malformed.
MAX_RESPONSE = 4096
# RFC 4616 §2: authcid, authzid and passwd are each at most 255 octets.
MAX_PLAIN_FIELD = 255
# draft-murchison-sasl-login: the two challenges.
LOGIN_USERNAME = b"Username:"
LOGIN_PASSWORD = b"Password:"

INVALID_CREDENTIALS = "invalid credentials"
AUTHZID_REFUSED = "authorization identity not allowed"

_NO_BINDINGS: Mapping[str, bytes] = MappingProxyType({})
# Fake salts for unknown users derive from this per-process key, so asking twice for the same
# unknown name shows the same salt (RFC 5802 §5.1: do not reveal that the user is unknown).
_FAKE_SALT_KEY = secrets.token_bytes(32)


def mechanisms(*, tls: bool, allow_plaintext: bool, channel_binding: bool) -> list[str]:
    """The mechanisms to advertise: none before TLS unless plaintext auth is allowed (RFC 4954
    §4: PLAIN and LOGIN send the password itself); -PLUS only with a channel binding to offer."""
    if not (tls or allow_plaintext):
        return []
    names = [SCRAM_SHA_256, PLAIN, LOGIN]
    if channel_binding:
        names.insert(0, SCRAM_SHA_256_PLUS)
    return names


class _Expect(enum.Enum):
    """Which call the server waits for next."""

    START = "start"
    RESPONSE = "respond"
    PASSWORD = "password_checked"
    SCRAM = "scram_credentials"
    DONE = "done"


class _Stage(enum.Enum):
    """Where a mechanism is within its exchange (what the next client response is)."""

    INITIAL = "initial"  # PLAIN message / SCRAM client-first
    USERNAME = "username"  # LOGIN
    PASSWORD = "password"  # LOGIN
    CLIENT_FINAL = "client-final"  # SCRAM


class SaslServer:
    """One authentication exchange with one mechanism.

    ``channel_bindings`` holds the channel binding data the shell could compute for this TLS
    connection, by type (``tls-exporter``, ``tls-server-end-point``). When it is not empty the
    shell advertises SCRAM-SHA-256-PLUS, so a SCRAM-SHA-256 client that says it supports
    channel binding ("y") is refused as a downgrade (RFC 5802 §6). ``server_nonce`` fixes the
    server's part of the SCRAM nonce (tests reproducing RFC 7677's example); random otherwise.
    """

    def __init__(
        self,
        mechanism: str,
        *,
        channel_bindings: Mapping[str, bytes] = _NO_BINDINGS,
        server_nonce: str | None = None,
    ) -> None:
        name = mechanism.upper()
        if name not in MECHANISMS:
            raise UnknownMechanism(f"unsupported mechanism {mechanism!r}")
        unknown = set(channel_bindings) - set(CHANNEL_BINDING_TYPES)
        if unknown:
            raise ValueError(f"unknown channel binding type(s) {sorted(unknown)}")
        self._bindings = {k: bytes(v) for k, v in channel_bindings.items() if v}
        if name == SCRAM_SHA_256_PLUS and not self._bindings:
            raise UnknownMechanism(f"{name} needs a TLS channel binding")
        self.mechanism = name
        self._expect = _Expect.START
        self._stage = _Stage.INITIAL
        self._server_nonce = scram.check_nonce(server_nonce) if server_nonce else None
        self._authcid = ""
        self._authzid = ""
        self._username = ""  # LOGIN, between its two responses
        self._first: scram.ClientFirst | None = None
        self._server_first = ""
        self._nonce = ""
        self._creds: scram.ScramCredentials | None = None
        self._account: object | None = None

    @property
    def done(self) -> bool:
        return self._expect is _Expect.DONE

    # -- the calls the shell makes ---------------------------------------------------------------
    def start(self, initial_response: bytes | None) -> Step:
        """Begin, with the client's initial response (decoded; None when it sent none)."""
        self._turn(_Expect.START)
        if initial_response is None:
            self._expect = _Expect.RESPONSE
            if self.mechanism == LOGIN:
                self._stage = _Stage.USERNAME
                return Challenge(LOGIN_USERNAME)
            return Challenge(b"")
        if self.mechanism == LOGIN:
            self._stage = _Stage.USERNAME
        return self._receive(initial_response)

    def respond(self, data: bytes) -> Step:
        """The client's (decoded) answer to the last challenge."""
        self._turn(_Expect.RESPONSE)
        return self._receive(data)

    def password_checked(self, account: object | None, credential: str | None = None) -> Step:
        """The directory's answer to :class:`NeedPassword`: the account, or None if the
        password is wrong (or the user unknown, or disabled); ``credential`` names which of the
        account's passwords it was (reported in :class:`Success`)."""
        self._turn(_Expect.PASSWORD)
        if account is None:
            return self._fail(INVALID_CREDENTIALS)
        self._expect = _Expect.DONE
        return Success(self._authcid, self._authzid or self._authcid, account, None, credential)

    def scram_credentials(
        self, creds: scram.ScramCredentials | None, account: object | None = None
    ) -> Step:
        """The directory's answer to :class:`NeedScram` (None: unknown user, disabled, or no
        SCRAM secret stored). ``account`` is reported in :class:`Success`.

        For None the exchange goes on with a fake salt and keys that match no proof, so the
        client cannot tell an unknown user from a wrong password (RFC 5802 §5.1).
        """
        self._turn(_Expect.SCRAM)
        if creds is None or not creds.keys:
            salt = scram.hmac_sha256(_FAKE_SALT_KEY, self._authcid.encode())[: scram.SALT_LENGTH]
            fake = scram.ScramKey(secrets.token_bytes(32), secrets.token_bytes(32))
            creds = scram.ScramCredentials(salt, scram.DEFAULT_ITERATIONS, [fake])
            account = None
        scram.check_iterations(creds.iterations)
        self._creds = creds
        self._account = account
        first = self._first
        assert first is not None
        self._nonce = first.nonce + (self._server_nonce or scram.new_nonce())
        self._server_first = f"r={self._nonce},s={scram.b64(creds.salt)},i={creds.iterations}"
        self._expect = _Expect.RESPONSE
        self._stage = _Stage.CLIENT_FINAL
        return Challenge(self._server_first.encode("ascii"))

    def abort(self) -> Failure:
        """The client cancelled ("*"): the exchange ends here."""
        self._expect = _Expect.DONE
        return Failure("aborted by the client", malformed=False)

    # -- internals -----------------------------------------------------------------------------
    def _turn(self, expected: _Expect) -> None:
        if self._expect is not expected:
            raise SaslStateError(
                f"{expected.value}() called while the server waits for {self._expect.value}"
            )

    def _fail(self, reason: str, malformed: bool = False) -> Failure:
        self._expect = _Expect.DONE
        return Failure(reason, malformed)

    def _receive(self, data: bytes) -> Step:
        if len(data) > MAX_RESPONSE:
            return self._fail(f"response longer than {MAX_RESPONSE} bytes", malformed=True)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail("response is not UTF-8", malformed=True)
        if self.mechanism == PLAIN:
            return self._plain(text)
        if self.mechanism == LOGIN:
            return self._login(text)
        if self._stage is _Stage.INITIAL:
            return self._client_first(text)
        return self._client_final(text)

    def _need_password(self, authcid: str, authzid: str, password: str) -> Step:
        if authzid and authzid.casefold() != authcid.casefold():
            return self._fail(AUTHZID_REFUSED)
        self._authcid, self._authzid = authcid, authzid
        self._expect = _Expect.PASSWORD
        return NeedPassword(authcid, authzid, password)

    def _plain(self, text: str) -> Step:
        # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
        parts = text.split("\0")
        if len(parts) != 3:
            return self._fail("PLAIN message without exactly two NULs", malformed=True)
        authzid, authcid, password = parts
        if not authcid or not password:
            return self._fail("PLAIN message with an empty authcid or password", malformed=True)
        if any(len(p.encode()) > MAX_PLAIN_FIELD for p in parts):
            return self._fail(f"PLAIN field longer than {MAX_PLAIN_FIELD} bytes", malformed=True)
        return self._need_password(authcid, authzid, password)

    def _login(self, text: str) -> Step:
        if self._stage is _Stage.USERNAME:
            if not text:
                return self._fail("LOGIN with an empty username", malformed=True)
            self._username = text
            self._stage = _Stage.PASSWORD
            self._expect = _Expect.RESPONSE
            return Challenge(LOGIN_PASSWORD)
        if not text:
            return self._fail("LOGIN with an empty password", malformed=True)
        return self._need_password(self._username, "", text)

    def _client_first(self, text: str) -> Step:
        try:
            first = scram.parse_client_first(text)
        except scram.ScramSyntaxError as exc:
            return self._fail(f"invalid client-first-message: {exc}", malformed=True)
        # RFC 5802 §6: the GS2 channel binding flag against what was offered.
        if self.mechanism == SCRAM_SHA_256_PLUS:
            if first.cb_flag != "p":
                return self._fail(f"{self.mechanism} without channel binding", malformed=True)
            if first.cb_name not in self._bindings:
                return self._fail(f"unsupported-channel-binding-type {first.cb_name}")
        elif first.cb_flag == "p":
            return self._fail(f"channel binding with {self.mechanism}", malformed=True)
        elif first.cb_flag == "y" and self._bindings:
            # the client could bind but thinks we cannot: someone removed -PLUS from our list
            return self._fail("server-does-support-channel-binding (downgrade)")
        if first.authzid and first.authzid.casefold() != first.username.casefold():
            return self._fail(AUTHZID_REFUSED)
        self._first = first
        self._authcid, self._authzid = first.username, first.authzid
        self._expect = _Expect.SCRAM
        return NeedScram(first.username, first.authzid)

    def _client_final(self, text: str) -> Step:
        first, creds = self._first, self._creds
        assert first is not None
        assert creds is not None
        try:
            final = scram.parse_client_final(text)
        except scram.ScramSyntaxError as exc:
            return self._fail(f"invalid client-final-message: {exc}", malformed=True)
        if final.nonce != self._nonce:
            return self._fail("client-final-message with another nonce", malformed=True)
        # RFC 5802 §7: c= is the GS2 header followed by the channel binding data for "p"
        expected = first.gs2_header.encode()
        if first.cb_name is not None:
            expected += self._bindings[first.cb_name]
        if not hmac.compare_digest(final.channel_binding, expected):
            return self._fail("channel-bindings-dont-match")
        auth_message = f"{first.bare},{self._server_first},{final.without_proof}".encode()
        matched: scram.ScramKey | None = None
        for key in creds.keys:  # every key is tried, whichever matches
            signature = scram.hmac_sha256(key.stored_key, auth_message)
            client_key = scram.xor(final.proof, signature)
            if hmac.compare_digest(scram.sha256(client_key), key.stored_key) and matched is None:
                matched = key
        if matched is None:
            return self._fail(INVALID_CREDENTIALS)
        self._expect = _Expect.DONE
        verifier = scram.b64(scram.hmac_sha256(matched.server_key, auth_message))
        return Success(
            self._authcid,
            self._authzid or self._authcid,
            self._account,
            f"v={verifier}".encode("ascii"),
            matched.label,
        )
