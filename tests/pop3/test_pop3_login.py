"""Logging in: USER/PASS, what CAPA offers, TLS first, the maildrop lock, the error limit."""

from __future__ import annotations

import base64

from mailstead.security.bans import AuthFailureTracker

from .harness import ALICE, BOB, BOB_PW

AUTH_FAILED = b"-ERR [AUTH] Authentication failed\r\n"
BANNED = b"-ERR [IN-USE] Too many failed logins, try again later\r\n"
PLAINTEXT_REFUSED = b"-ERR [AUTH] Plaintext authentication disallowed, use STLS first\r\n"
CAPA_TLS = (
    b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
    b"PIPELINING\r\nUSER\r\nSASL SCRAM-SHA-256 PLAIN LOGIN\r\nIMPLEMENTATION Mailstead\r\n.\r\n"
)


def test_greeting_and_login(run):
    async def scenario(h):
        await h.deliver(b"Subject: a\r\n\r\n12345\r\n")
        conn = h.connect()
        assert conn.greeting == b"+OK mx.example.org Mailstead POP3 ready\r\n"
        assert await conn.line(f"USER {ALICE}") == b"+OK Send PASS\r\n"
        assert await conn.line("PASS alice-pw") == b"+OK Logged in, 1 messages (21 octets)\r\n"
        assert await conn.line("STAT") == b"+OK 1 21\r\n"

    run(scenario)


def test_wrong_password_and_unknown_user_get_the_same_reply(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line(f"USER {ALICE}") == b"+OK Send PASS\r\n"
        assert await conn.line("PASS wrong") == AUTH_FAILED
        assert await conn.line("USER nobody@example.org") == b"+OK Send PASS\r\n"
        assert await conn.line("PASS wrong") == AUTH_FAILED
        assert await conn.line("USER nobody@unknown.example") == b"+OK Send PASS\r\n"
        assert await conn.line("PASS wrong") == AUTH_FAILED
        assert await conn.line("USER not an address") == b"+OK Send PASS\r\n"
        assert await conn.line("PASS wrong") == AUTH_FAILED
        await h.directory.set_enabled(BOB, False)
        assert await conn.line(f"USER {BOB}") == b"+OK Send PASS\r\n"
        assert await conn.line(f"PASS {BOB_PW}") == AUTH_FAILED  # disabled: the same again
        assert await conn.line("STAT") == b"-ERR Log in first\r\n"
        assert conn.session.stats.login_failures == 5

    run(scenario)


def test_user_and_pass_need_tls(run):
    async def scenario(h):
        conn = h.connect(tls=False)
        capa = await conn.line("CAPA")
        assert b"USER\r\n" not in capa and b"SASL" not in capa
        assert b"STLS\r\n" in capa
        assert await conn.line(f"USER {ALICE}") == PLAINTEXT_REFUSED
        assert await conn.line("PASS alice-pw") == b"-ERR Send USER first\r\n"
        assert await conn.line("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3") == (
            PLAINTEXT_REFUSED
        )
        assert await conn.line("STLS") == b"+OK Begin TLS negotiation\r\n"
        assert await conn.line("CAPA") == CAPA_TLS
        assert (await conn.login()).startswith(b"+OK Logged in")

    run(scenario)


def test_plaintext_allowed_when_configured(run):
    async def scenario(h):
        conn = h.connect(tls=False, insecure=True)  # [auth] allow_plaintext_on_loopback
        capa = await conn.line("CAPA")
        assert capa == CAPA_TLS.replace(b"IMPLEMENTATION", b"STLS\r\nIMPLEMENTATION")
        assert (await conn.login()).startswith(b"+OK Logged in")

    run(scenario)


def test_capa_after_login_and_stls_refusals(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line("STLS") == b"-ERR TLS is already active\r\n"
        await conn.login()
        assert await conn.line("CAPA") == (
            b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
            b"PIPELINING\r\nIMPLEMENTATION Mailstead\r\n.\r\n"
        )
        assert await conn.line("STLS") == b"-ERR Already logged in\r\n"

    run(scenario)


def test_second_session_finds_the_maildrop_in_use(run):
    async def scenario(h):
        first, second = h.connect(), h.connect()
        assert (await first.login()).startswith(b"+OK Logged in")
        # RFC 2449 §8.1.2, after the password was checked (a wrong one still gets [AUTH])
        assert await second.login(password="wrong") == AUTH_FAILED
        assert await second.login() == b"-ERR [IN-USE] Maildrop is locked by another session\r\n"
        assert await second.line("STAT") == b"-ERR Log in first\r\n"
        assert (await second.login(BOB, BOB_PW)).startswith(b"+OK Logged in")  # other maildrop
        assert await first.line("QUIT") == b"+OK Bye, 0 deleted, 0 left\r\n"
        assert first.closed == "quit"
        assert (await h.connect().login()).startswith(b"+OK Logged in")

    run(scenario)


def test_a_dropped_connection_releases_the_lock(run):
    async def scenario(h):
        first = h.connect()
        await first.login()
        first.drop()
        assert (await h.connect().login()).startswith(b"+OK Logged in")

    run(scenario)


def test_failed_logins_close_the_connection(run):
    async def scenario(h):
        conn = h.connect(max_errors=3)
        await conn.login(password="wrong-1")
        await conn.login(password="wrong-2")
        assert await conn.login(password="wrong-3") == (
            AUTH_FAILED + b"-ERR Too many errors, closing connection\r\n"
        )
        assert conn.closed == "errors"

    run(scenario)


def test_quit_before_login(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line("QUIT") == b"+OK Bye\r\n"
        assert conn.closed == "quit"

    run(scenario)


def test_brute_force_ban(run):
    async def scenario(h):
        now = [1000.0]
        bans = AuthFailureTracker(max_failures=3, window=60, ban_time=300)

        def connect():
            return h.connect(bans=bans, clock=lambda: now[0])

        conn = connect()
        for _ in range(3):
            assert await conn.login(password="wrong") == AUTH_FAILED
        # refused before the password is looked at: the right one fares no better
        assert await conn.login() == BANNED
        plain = base64.b64encode(f"\0{ALICE}\0alice-pw".encode()).decode()
        assert await conn.line(f"AUTH PLAIN {plain}") == BANNED
        assert await connect().login(BOB, BOB_PW) == BANNED  # the client, whatever account
        now[0] += 301
        assert (await conn.login()).startswith(b"+OK Logged in")

    run(scenario)


def test_a_successful_login_forgets_the_failures(run):
    async def scenario(h):
        bans = AuthFailureTracker(max_failures=3, window=60, ban_time=300)
        first = h.connect(bans=bans)
        await first.login(password="wrong")
        await first.login(password="wrong")
        assert (await first.login()).startswith(b"+OK Logged in")
        await first.line("QUIT")
        second = h.connect(bans=bans)
        await second.login(password="wrong")
        await second.login(password="wrong")
        assert (await second.login()).startswith(b"+OK Logged in")

    run(scenario)
