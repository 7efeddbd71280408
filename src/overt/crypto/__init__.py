"""Keys, signed notes and DSSE envelopes.

This package is pure: it does no I/O except in `keyfile`, which reads and writes
the key files a caller names. It imports nothing from the rest of Overt except
`overt.errors`, so other projects can vendor it.
"""
