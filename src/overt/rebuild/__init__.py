"""Independent rebuilders: rebuild, compare, explain the difference, attest (SLSA VSA)."""
