"""Outbound mail: where a message goes (``routing``: MX selection and failover) and, in later
modules, how it gets there (the SMTP client session, MTA-STS and DANE)."""
