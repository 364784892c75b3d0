"""Fixtures of the scheduler tests."""

from tests.chain_fixtures import anyio_backend

__all__ = ["anyio_backend"]
