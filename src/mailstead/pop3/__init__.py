"""The POP3 service layer: session logic over the store and the directory, answering the typed
commands of the sans-IO core (``mailstead.protocols.pop3``)."""

from mailstead.pop3.maildrop import Entry, Maildrop, MaildropLocks, NoSuchMessage
from mailstead.pop3.session import Action, Pop3Session, SessionConfig, SessionStats, is_loopback

__all__ = [
    "Action",
    "Entry",
    "Maildrop",
    "MaildropLocks",
    "NoSuchMessage",
    "Pop3Session",
    "SessionConfig",
    "SessionStats",
    "is_loopback",
]
