"""Witnesses: the tlog-witness server, and the log-side client that gathers cosignatures."""
