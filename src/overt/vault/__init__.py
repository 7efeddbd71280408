"""The data vault: residency, per-region encrypted stores, the access gate and the access log."""
