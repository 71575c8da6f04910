"""RFC 5322 / MIME parsing with byte offsets, for delivery, IMAP, webmail and filters.

Pure: no I/O and no imports from the rest of Mailstead. ``parse_message`` runs once at
delivery; ``to_json`` / ``from_json`` store the result (envelope and MIME tree) so IMAP
answers ENVELOPE, BODYSTRUCTURE and BODY[section] the way Dovecot does without
re-parsing.
"""

from mailstead.message.addresses import (
    Address,
    AddressError,
    domain_to_ascii,
    normalize_domain,
    normalize_localpart,
    parse_address_list,
    split_address,
)
from mailstead.message.envelope import Envelope
from mailstead.message.headers import HeaderField, decode_header_value
from mailstead.message.mime import MimePart
from mailstead.message.parse import ParsedMessage, from_json, parse_message, to_json

__all__ = [
    "Address",
    "AddressError",
    "Envelope",
    "HeaderField",
    "MimePart",
    "ParsedMessage",
    "decode_header_value",
    "domain_to_ascii",
    "from_json",
    "normalize_domain",
    "normalize_localpart",
    "parse_address_list",
    "parse_message",
    "split_address",
    "to_json",
]
