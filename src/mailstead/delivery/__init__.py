"""The inbound pipeline: from an accepted SMTP transaction to messages in mailboxes."""

from mailstead.delivery.local import Envelope, LocalDelivery, Recipient, return_path_header
from mailstead.delivery.spool import Spool

__all__ = ["Envelope", "LocalDelivery", "Recipient", "Spool", "return_path_header"]
