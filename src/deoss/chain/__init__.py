"""The ledger: a deterministic, ABCI-shaped state machine (no I/O, clock or randomness)."""
