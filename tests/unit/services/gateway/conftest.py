"""Fixtures of the gateway tests: a running in-process network (see network.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.chain_fixtures import anyio_backend
from tests.unit.services.gateway.network import Net, running_network

__all__ = ["anyio_backend", "net"]


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with running_network(tmp_path) as network:
        yield network
