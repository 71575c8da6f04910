"""The outbound queue: messages for remote recipients, their per-recipient state, retries with
backoff, and delivery status notifications (RFC 3464) when delivery fails or is delayed."""
