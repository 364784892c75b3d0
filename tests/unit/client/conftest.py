"""Fixtures of the client tests."""

from tests.chain_fixtures import anyio_backend, node, served_node

__all__ = ["anyio_backend", "node", "served_node"]
