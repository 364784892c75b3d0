"""Fixtures of the client tests."""

from tests.chain_fixtures import node

__all__ = ["node"]
