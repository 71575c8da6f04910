"""Message authentication: DKIM signing (`dkim`), SPF (`spf`), DKIM verification
(`dkim_verify`), DMARC with the Public Suffix List (`dmarc`, `psl`), ARC verification and
sealing (`arc`), Authentication-Results (`results`), and the inbound pipeline that joins them
(`inbound`).

Pure functions and evaluators: key material, messages and a resolver come in as arguments;
nothing here reads the store, and the clock only where a caller leaves ``now`` out.
"""
