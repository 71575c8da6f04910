"""Message authentication: DKIM signing now; SPF, DKIM verification, DMARC, ARC and iprev later.

Pure functions and evaluators: key material, messages and (later) a resolver come in as
arguments; nothing here reads the store or the clock.
"""
