"""One login service for every protocol: bans, SASL credential lookups, in-flight accounting,
the outcome's record and log events (see :mod:`mailstead.login.service`)."""

from mailstead.login.service import (
    BANNED,
    BANNED_DURING_VERIFICATION,
    MAX_WAITING,
    TOO_MANY_WAITING,
    Client,
    Credentials,
    LoggedIn,
    LoginFailed,
    LoginRefused,
    LoginService,
    Outcome,
    SaslLogin,
    SaslOutcome,
)

__all__ = [
    "BANNED",
    "BANNED_DURING_VERIFICATION",
    "MAX_WAITING",
    "TOO_MANY_WAITING",
    "Client",
    "Credentials",
    "LoggedIn",
    "LoginFailed",
    "LoginRefused",
    "LoginService",
    "Outcome",
    "SaslLogin",
    "SaslOutcome",
]
