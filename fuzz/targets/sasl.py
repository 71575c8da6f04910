"""SASL response decoding and the server mechanisms (PLAIN, LOGIN, SCRAM-SHA-256 and -PLUS) on
arbitrary client responses.

Input: one octet choosing the mechanism and whether there is an initial response, then response
lines separated by LF; each is decoded with ``decode_response`` as the shells do, and the server
is driven (a fixed password check, fixed SCRAM credentials) until it is done.
Properties: ``decode_response`` returns bytes, `Aborted` or `Malformed`, never raises; the server
only returns steps (never raises on client data, only `SaslStateError` for the shell's misuse,
which the driver never commits); a response it calls malformed ends the exchange; the exchange
ends within a few steps; nobody authenticates without the password.
"""

from __future__ import annotations

from fuzz.harness import instrument, run

with instrument(__name__ == "__main__"):
    from mailstead.sasl import (
        MECHANISMS,
        Aborted,
        Challenge,
        Failure,
        Malformed,
        NeedPassword,
        NeedScram,
        SaslServer,
        Success,
        decode_response,
    )
    from mailstead.sasl.scram import ScramCredentials, ScramKey, derive_keys

_KEY: ScramKey = derive_keys("secret", b"0123456789abcdef", 4096)
_CREDS = ScramCredentials(b"0123456789abcdef", 4096, [_KEY])
_BINDINGS = {"tls-exporter": b"E" * 32, "tls-server-end-point": b"S" * 32}


def check(data: bytes) -> None:
    if not data:
        return
    mechs = sorted(MECHANISMS)
    mechanism = mechs[data[0] % len(mechs)]
    bindings = _BINDINGS if data[0] & 16 or mechanism.endswith("-PLUS") else {}
    server = SaslServer(mechanism, channel_bindings=bindings, server_nonce="fuzznonce")
    responses = data[1:].split(b"\n")
    first = decode_response(responses[0])
    assert isinstance(first, bytes | Aborted | Malformed)
    if isinstance(first, Aborted | Malformed):
        return
    step = server.start(first if data[0] & 32 else None)
    for line in responses[1:] if data[0] & 32 else responses:
        if server.done:
            break
        if isinstance(step, NeedPassword):
            ok = step.password == "secret" and step.authcid == "user"
            step = server.password_checked(object() if ok else None)
            continue
        if isinstance(step, NeedScram):
            step = server.scram_credentials(_CREDS if step.authcid == "user" else None)
            continue
        assert isinstance(step, Challenge), step
        decoded = decode_response(line)
        if isinstance(decoded, Aborted):
            step = server.abort()
        elif isinstance(decoded, Malformed):
            return
        else:
            step = server.respond(decoded)
        if isinstance(step, Failure) and step.malformed:
            assert server.done
    if isinstance(step, NeedPassword):
        step = server.password_checked(None)
    if isinstance(step, Success):
        assert step.authcid == "user", step
        # PLAIN/LOGIN need "secret"; SCRAM a proof only the key's owner can compute
        assert mechanism in ("PLAIN", "LOGIN") or step.final_data is not None


if __name__ == "__main__":
    run(check)
