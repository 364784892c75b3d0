"""Fixtures of the node tests."""

from tests.chain_fixtures import node

__all__ = ["node"]
