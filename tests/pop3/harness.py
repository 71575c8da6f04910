"""A POP3 session over a real store and directory, driven by bytes without sockets.

`Conn` runs the loop the asyncio shell runs (``servers.pop3``): feed the core, hand commands
and AUTH lines to the session, carry out its `Action`. STLS "succeeds" at once.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from mailstead.directory import Directory
from mailstead.login import LoginService
from mailstead.pop3 import Action, MaildropLocks, Pop3Session, SessionConfig
from mailstead.protocols.pop3 import (
    NEED_DATA,
    AuthResponse,
    CommandReceived,
    ConnectionClosed,
    ProtocolErrorEvent,
    ServerCore,
    Settings,
)
from mailstead.sasl import SaslClient
from mailstead.security.bans import AuthFailureTracker
from mailstead.store import DeliveryRequest, DeliveryTarget, Store, open_sqlite

ALICE, ALICE_PW = "alice@example.org", "alice-pw"
BOB, BOB_PW = "bob@example.org", "bob-pw"


def message(n: int, body: bytes = b"") -> bytes:
    return b"From: a@example.net\r\nSubject: m%d\r\n\r\n" % n + (body or b"body %d\r\n" % n)


class Conn:
    def __init__(
        self,
        harness: Harness,
        *,
        tls: bool,
        insecure: bool,
        max_errors: int,
        channel_bindings: dict[str, bytes],
        bans: AuthFailureTracker | None,
        clock: Callable[[], float],
    ) -> None:
        self.core = ServerCore(Settings(max_errors=max_errors))
        config = SessionConfig("mx.example.org", allow_insecure_auth=insecure,
                               stls_available=True, channel_bindings=channel_bindings)  # fmt: skip
        self.session = Pop3Session(
            harness.store, harness.directory, config, self.core, harness.locks,
            tls_active=tls, peer="192.0.2.1",
            login=LoginService(harness.directory, bans, clock=clock),
        )  # fmt: skip
        self.session.greeting()
        self.greeting = self.core.data_to_send()
        self.closed: str | None = None

    async def send(self, data: bytes) -> bytes:
        """Feed ``data``; return every byte the server sent in answer."""
        core, session = self.core, self.session
        core.receive_data(data)
        out = bytearray()
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, ConnectionClosed):
                self.closed = event.reason
                session.close()
                break
            if isinstance(event, ProtocolErrorEvent):
                continue
            if isinstance(event, CommandReceived):
                action = await session.handle(event.command)
            else:
                assert isinstance(event, AuthResponse)
                action = await session.auth_response(event)
            if action is Action.NONE:
                core.command_done()
            elif action is Action.CLOSE:
                self.closed = "message-broken"
                session.close()
                break
            elif action is Action.AUTH:
                core.begin_auth()
            elif action is Action.STLS:
                out += core.data_to_send()
                core.tls_started()
                session.tls_active = True
        out += core.data_to_send()
        return bytes(out)

    async def line(self, text: str) -> bytes:
        return await self.send(text.encode() + b"\r\n")

    async def login(self, user: str = ALICE, password: str = ALICE_PW) -> bytes:
        assert (await self.line(f"USER {user}")).startswith(b"+OK")
        return await self.line(f"PASS {password}")

    async def sasl(self, client: SaslClient, *, initial: bool = True) -> bytes:
        """Run ``client``'s exchange (AUTH with its initial response unless ``initial`` is
        False); return the server's final reply."""
        first = client.initial_response() if initial else None
        command = f"AUTH {client.mechanism}"
        if first is not None:
            command += " " + (base64.b64encode(first).decode() or "=")
        reply = await self.line(command)
        while reply.startswith(b"+ "):
            challenge = base64.b64decode(reply[2:].strip())
            reply = await self.line(base64.b64encode(client.respond(challenge)).decode())
        return reply

    def drop(self) -> None:
        """The connection is lost (no QUIT)."""
        self.session.close()


class Harness:
    """A store that holds alice and bob (see conftest), a directory and the maildrop locks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.locks = MaildropLocks()

    async def __aenter__(self) -> Harness:
        self.store: Store = open_sqlite(self.path)
        await self.store.open()
        self.directory = Directory(self.store)
        self.alice = await self.directory.require_account(ALICE)
        self.bob = await self.directory.require_account(BOB)
        inbox = await self.store.get_mailbox(self.alice.id, "INBOX")
        assert inbox is not None
        self.inbox = inbox
        return self

    async def __aexit__(self, *exc: object) -> None:
        problems = await self.store.check_integrity()
        await self.store.close()
        assert problems == []

    async def deliver(self, raw: bytes, account_id: int | None = None) -> int:
        target = DeliveryTarget(self.alice.id if account_id is None else account_id)
        outcome = await self.store.deliver(DeliveryRequest(raw, [target], 0))
        uid = outcome.uids[0]
        assert uid is not None
        return uid

    def connect(
        self,
        *,
        tls: bool = True,
        insecure: bool = False,
        max_errors: int = 10,
        channel_bindings: dict[str, bytes] | None = None,
        bans: AuthFailureTracker | None = None,
        clock: Callable[[], float] = lambda: 0.0,
    ) -> Conn:
        return Conn(self, tls=tls, insecure=insecure, max_errors=max_errors,
                    channel_bindings=channel_bindings or {}, bans=bans, clock=clock)  # fmt: skip

    async def inbox_uids(self) -> list[int]:
        return [m.uid for m in await self.store.message_index(self.inbox.id)]
