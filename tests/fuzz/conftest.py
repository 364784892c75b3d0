"""Fixtures of the fuzz tests."""

from tests.chain_fixtures import anyio_backend

__all__ = ["anyio_backend"]
