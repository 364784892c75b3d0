"""The storage miner service."""
