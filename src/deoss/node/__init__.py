"""The chain's shell: embedded block producer, SQLite store, CometBFT-compatible RPC."""
