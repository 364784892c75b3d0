"""Fixtures of the CLI tests."""

from tests.chain_fixtures import served_node

__all__ = ["served_node"]
