"""The outbound queue: messages for remote recipients, their per-recipient state, retries with
backoff, and delivery status notifications (RFC 3464) when delivery fails or is delayed.

- `service.Queue`: enqueue (DKIM-signed once), per-recipient outcomes, reports to senders;
- `runner.QueueRunner`: picks due recipients, groups them per destination, delivers within
  concurrency limits;
- `transport.SmtpTransport`: MX routing, failover and the SMTP client for one destination;
- `schedule.RetrySchedule`, `dsn.build`: when to retry, what a report says.

docs/queue.md describes the operations side (states, schedule, CLI, reports)."""
