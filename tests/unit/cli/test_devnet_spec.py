"""The local network's defaults (deoss.devnet): room to repair."""

from __future__ import annotations

from pathlib import Path

from deoss.core.layout import LayoutParams
from deoss.devnet import DevnetSpec, devnet_params


def test_the_default_network_can_lose_miners_and_still_repair() -> None:
    """Every segment's k + m fragments go to distinct miners, and a lost miner's fragments are
    rebuilt on miners holding none of that segment: the default network has 4 to spare."""
    spec = DevnetSpec(home=Path("unused"))
    layout: LayoutParams = devnet_params(spec).layout
    assert layout.total_shards + 4 <= spec.miners
