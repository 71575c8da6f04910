"""Nothing acknowledged is lost: SIGKILL the server while 20 clients send, then count."""

from __future__ import annotations

import signal
import smtplib
import threading

import pytest

from mailstead.store import open_sqlite

CLIENTS = 20


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_message(mail_server):
    import asyncio

    server = mail_server()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    enough = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP(*server.smtp_address, timeout=10) as smtp:
                    while not stop.is_set():
                        mid = f"c{n}-{i}"
                        body = (
                            f"From: x@example.net\r\nMessage-ID: <{mid}@load>\r\n\r\n"
                            + "x" * 1500 + "\r\n"
                        )  # fmt: skip
                        smtp.sendmail("x@example.net", ["alice@example.org"], body)
                        with lock:  # only after the 250: acknowledged
                            acknowledged.append(mid)
                            if len(acknowledged) >= 400:
                                enough.set()
                        i += 1
            except (smtplib.SMTPException, OSError):
                i += 1  # the server died mid-transaction: that message was never acknowledged

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        assert enough.wait(60), "the load never got going"
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    with lock:
        acked = set(acknowledged)

    restarted = mail_server.restart(server)
    stored = restarted.messages("alice@example.org")
    stored_ids = {m.split(b"Message-ID: <")[1].split(b"@")[0].decode() for m in stored}
    missing = acked - stored_ids
    assert not missing, f"{len(missing)} acknowledged message(s) lost, e.g. {sorted(missing)[:5]}"
    assert len(stored) == len(stored_ids)  # no duplicates
    restarted.stop()

    async def integrity() -> list[str]:
        store = open_sqlite(restarted.data_dir / "mailstead.db")
        await store.open()
        try:
            return await store.check_integrity()
        finally:
            await store.close()

    assert asyncio.run(integrity()) == []
