"""Interop with GNU SASL (Debian's `gsasl`), an independent implementation, over its stdin/stdout.

`gsasl --client` / `gsasl --server` without a host prints the mechanism name, then one base64
line per step of its side, and reads the other side's lines from stdin. The gsasl client
drives our server (PLAIN, LOGIN, SCRAM-SHA-256, including a password that SASLprep changes) and
our client drives the gsasl server (SCRAM-SHA-256). Channel binding needs a TLS session, which
this line mode does not have: -PLUS is covered by our own client in test_sasl_server.py.
"""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from mailstead.sasl import (
    Challenge,
    Failure,
    NeedPassword,
    NeedScram,
    SaslClient,
    SaslServer,
    Success,
    decode_response,
    scram,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("gsasl") is None,
        reason="GNU SASL's `gsasl` command is not installed (scripts/install-test-deps)",
    ),
]

SALT = b"interop-salt-16b"
ITERATIONS = 4096


class Gsasl:
    """One `gsasl` process in line mode."""

    def __init__(self, side: str, mechanism: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["gsasl", f"--{side}", "--mechanism", mechanism, "--no-cb", "--verbose", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.read_line() == mechanism.encode()

    def read_line(self) -> bytes | None:
        """One line without its newline; None at the end of the output (gsasl exited)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        return line.rstrip(b"\n") if line else None

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(base64.b64encode(data) + b"\n")
        self.proc.stdin.flush()

    def finish(self) -> tuple[int, str]:
        """Close stdin (no application data) and collect the exit status and diagnostics."""
        _, err = self.proc.communicate(b"", timeout=30)
        return self.proc.returncode, err.decode()


def serve(gsasl: Gsasl, mechanism: str, password: str) -> Success | Failure:
    """Our server against a gsasl client, as a shell would run it."""
    secret = scram.derive_keys(password, SALT, ITERATIONS, label="password")
    server = SaslServer(mechanism)
    step = server.start(decode_response(gsasl.read_line() or b""))
    while True:
        if isinstance(step, NeedScram):
            step = server.scram_credentials(
                scram.ScramCredentials(SALT, ITERATIONS, [secret]), account="acct"
            )
        elif isinstance(step, NeedPassword):
            step = server.password_checked("acct" if step.password == password else None)
        elif isinstance(step, Challenge):
            gsasl.send(step.data)
            line = gsasl.read_line()
            assert line is not None, "gsasl stopped"
            response = decode_response(line)
            assert isinstance(response, bytes)
            step = server.respond(response)
        else:
            if isinstance(step, Success) and step.final_data is not None:
                gsasl.send(step.final_data)  # SCRAM server-final as a last challenge...
                assert gsasl.read_line() == b""  # ...answered by an empty response
            if isinstance(step, Success):
                gsasl.send(b"")  # "success": gsasl then reports the outcome
            return step


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "SCRAM-SHA-256"])
@pytest.mark.parametrize("password", ["pencil", "Ⅸ\u00a0pä\u00adss"])
def test_gsasl_client_against_our_server(mechanism, password):
    gsasl = Gsasl("client", mechanism, "-a", "user@example.org", "-p", password)
    step = serve(gsasl, mechanism, password)
    status, diagnostics = gsasl.finish()
    assert isinstance(step, Success), step
    assert (step.authcid, step.account) == ("user@example.org", "acct")
    assert status == 0, diagnostics
    assert "Client authentication finished (server trusted)" in diagnostics


def test_gsasl_client_with_an_authzid():
    gsasl = Gsasl("client", "SCRAM-SHA-256", "-a", "user", "-z", "user", "-p", "pencil")
    step = serve(gsasl, "SCRAM-SHA-256", "pencil")
    gsasl.finish()
    assert isinstance(step, Success)
    assert step.authzid == "user"


def test_gsasl_client_with_a_wrong_password():
    gsasl = Gsasl("client", "SCRAM-SHA-256", "-a", "user", "-p", "wrong")
    step = serve(gsasl, "SCRAM-SHA-256", "pencil")
    gsasl.proc.kill()
    gsasl.finish()
    assert step == Failure("invalid credentials", False)


def drive(gsasl: Gsasl, client: SaslClient) -> None:
    """Our client against a gsasl server: three server lines for SCRAM (empty, server-first,
    server-final), each answered; the last answer is the empty final response."""
    for _ in range(3):
        line = gsasl.read_line()
        if line is None:  # gsasl refused and exited
            return
        gsasl.send(client.respond(base64.b64decode(line)))


@pytest.mark.parametrize("password", ["pencil", "Ⅸ\u00a0pä\u00adss"])
def test_our_client_against_the_gsasl_server(password):
    gsasl = Gsasl("server", "SCRAM-SHA-256", "-a", "user", "-p", password)
    client = SaslClient("SCRAM-SHA-256", authcid="user", password=password)
    drive(gsasl, client)
    status, diagnostics = gsasl.finish()
    assert client.server_verified
    assert status == 0, diagnostics
    assert "Server authentication finished (client trusted)" in diagnostics


def test_the_gsasl_server_refuses_our_client_with_a_wrong_password():
    gsasl = Gsasl("server", "SCRAM-SHA-256", "-a", "user", "-p", "pencil")
    client = SaslClient("SCRAM-SHA-256", authcid="user", password="wrong")
    drive(gsasl, client)
    status, diagnostics = gsasl.finish()
    assert not client.server_verified
    assert status != 0
    assert "Error authenticating user" in diagnostics
