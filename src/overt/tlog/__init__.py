"""Pure transparency-log math and formats.

Merkle hashing and proofs (RFC 9162), tiles and entry bundles (C2SP
tlog-tiles), checkpoints (C2SP tlog-checkpoint), cosignatures (C2SP
tlog-cosignature), offline proofs (C2SP tlog-proof) and trust policies (C2SP
tlog-policy). Nothing here does I/O: readers of hashes and tiles are passed in
by the caller. Imports only `overt.crypto` and `overt.errors`.
"""
