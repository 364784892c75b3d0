"""Registering the miner on chain at start, or updating its endpoint (``deoss node miner``)."""

from __future__ import annotations

from deoss.chain.modules.miners import MinerState, RegisterMiner, UpdateMiner, required_stake
from deoss.client.chain import ChainClient
from deoss.core.keys import KeyPair
from deoss.services.common.app import log_event
from deoss.services.miner.chain_view import ChainView
from deoss.services.miner.service import ROLE
from deoss.services.miner.settings import MinerSettings

__all__ = ["STAKE_HEADROOM", "ensure_registered"]

# Registering with only the required stake would stop the miner from taking fragments after its
# first slash (every slash takes a share of the stake); twice the requirement absorbs a run of
# missed rounds, e.g. a restart, and leaves the operator time to top it up.
STAKE_HEADROOM = 2


async def ensure_registered(
    chain: ChainClient, key: KeyPair, settings: MinerSettings, bound_url: str
) -> None:
    """Register this miner on chain, or update its endpoint if it changed.

    Raises:
        ClientError: the chain refused or could not be reached (the process stops).
    """
    endpoint = settings.public_url or bound_url
    view = ChainView(chain)
    current = await view.miner(key.public_key)
    if current is None:
        required = required_stake(await view.params(), settings.capacity_bytes)
        stake = settings.stake or STAKE_HEADROOM * required
        call = RegisterMiner(endpoint=endpoint, capacity_bytes=settings.capacity_bytes, stake=stake)
        outcome = await chain.submit(key, call)
        log_event(ROLE, "registered", endpoint=endpoint, stake=stake, height=outcome.height)
        return
    if current.endpoint != endpoint:
        outcome = await chain.submit(key, UpdateMiner(endpoint=endpoint))
        log_event(ROLE, "endpoint_updated", endpoint=endpoint, height=outcome.height)
    required = required_stake(await view.params(), current.capacity_bytes)
    if current.state == MinerState.ACTIVE and current.stake < required:
        log_event(
            ROLE,
            "stake_below_required",
            stake=current.stake,
            required=required,
            note="slashes took the stake under what the capacity requires: no new fragments "
            "or restoral claims until `deoss miner stake AMOUNT` tops it up",
        )
    if current.capacity_bytes != settings.capacity_bytes:
        log_event(
            ROLE,
            "capacity_unchanged",
            registered=current.capacity_bytes,
            configured=settings.capacity_bytes,
            note="the chain has no call to change a miner's capacity",
        )
