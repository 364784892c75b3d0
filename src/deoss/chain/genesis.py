"""Genesis: every chain parameter and the endowed accounts. Deadlines are in blocks."""

from __future__ import annotations

from deoss.core.codec import Record
from deoss.core.errors import DataPathError
from deoss.core.keys import parse_address
from deoss.core.layout import LayoutParams
from deoss.core.podr2 import PodrParams

__all__ = ["ChainParams", "Genesis", "GenesisAccount", "GenesisError", "validate_genesis"]

GiB = 1024**3
TiB = 1024**4


class ChainParams(Record):
    """Every tunable of the ledger. Amounts are integers in base units."""

    layout: LayoutParams = LayoutParams()
    podr2: PodrParams = PodrParams()
    block_interval_ms: int = 1000
    max_tx_bytes: int = 4 * 1024 * 1024
    # fees (to the treasury): a flat fee per transaction, taken before the call runs, and a
    # price per byte of new state the call adds (deleting refunds nothing)
    tx_fee: int = 1_000
    state_byte_price: int = 10
    # space
    price_per_gib_day: int = 1_000
    blocks_per_day: int = 86_400
    space_grace_blocks: int = 86_400
    expiry_removals_per_block: int = 16
    # deals and files
    deal_timeout_blocks: int = 30
    deal_blocks_per_segment: int = 2
    max_deal_attempts: int = 3
    tag_timeout_blocks: int = 600
    late_tag_penalty: int = 1_000_000
    # a holding of a tagged file whose holder has not confirmed its tags by then is released
    tag_confirm_blocks: int = 600
    # schedulers and miners
    scheduler_min_stake: int = 10_000_000
    miner_min_stake: int = 1_000_000
    stake_per_tib: int = 100_000_000
    gateway_stake: int = 10_000_000  # reserved by gateways.register (readers cost a stake)
    # audit
    challenge_interval_blocks: int = 30
    proof_deadline_blocks: int = 20
    reward_per_round: int = 1_000_000
    slash_missed_bps: int = 500
    slash_failed_bps: int = 1_000
    max_consecutive_faults: int = 3
    # restoral
    restoral_deadline_blocks: int = 60


class GenesisAccount(Record):
    address: str
    balance: int


class Genesis(Record):
    chain_id: str
    genesis_time_ns: int
    params: ChainParams
    accounts: list[GenesisAccount]
    treasury: int = 0


class GenesisError(ValueError):
    """A genesis document that cannot start a chain."""


def validate_genesis(genesis: Genesis) -> None:
    """Raises GenesisError naming the first bad field."""
    if not 1 <= len(genesis.chain_id) <= 50 or not genesis.chain_id.isprintable():
        raise GenesisError("chain_id must be 1..50 printable characters")
    p = genesis.params
    positive = {
        "block_interval_ms": p.block_interval_ms,
        "max_tx_bytes": p.max_tx_bytes,
        "price_per_gib_day": p.price_per_gib_day,
        "blocks_per_day": p.blocks_per_day,
        "expiry_removals_per_block": p.expiry_removals_per_block,
        "deal_timeout_blocks": p.deal_timeout_blocks,
        "max_deal_attempts": p.max_deal_attempts,
        "tag_timeout_blocks": p.tag_timeout_blocks,
        "tag_confirm_blocks": p.tag_confirm_blocks,
        "challenge_interval_blocks": p.challenge_interval_blocks,
        "proof_deadline_blocks": p.proof_deadline_blocks,
        "max_consecutive_faults": p.max_consecutive_faults,
        "restoral_deadline_blocks": p.restoral_deadline_blocks,
        "miner_min_stake": p.miner_min_stake,
        "scheduler_min_stake": p.scheduler_min_stake,
    }
    for name, value in positive.items():
        if value <= 0:
            raise GenesisError(f"params.{name} must be positive, got {value}")
    for name, value in {
        "tx_fee": p.tx_fee,
        "state_byte_price": p.state_byte_price,
        "deal_blocks_per_segment": p.deal_blocks_per_segment,
        "space_grace_blocks": p.space_grace_blocks,
        "late_tag_penalty": p.late_tag_penalty,
        "stake_per_tib": p.stake_per_tib,
        "gateway_stake": p.gateway_stake,
        "reward_per_round": p.reward_per_round,
        "treasury": genesis.treasury,
    }.items():
        if value < 0:
            raise GenesisError(f"{name} must not be negative, got {value}")
    for name, value in {
        "slash_missed_bps": p.slash_missed_bps,
        "slash_failed_bps": p.slash_failed_bps,
    }.items():
        if not 0 <= value <= 10_000:
            raise GenesisError(f"params.{name} must be in 0..10000, got {value}")
    if p.proof_deadline_blocks > p.challenge_interval_blocks:
        raise GenesisError("params.proof_deadline_blocks must not exceed challenge_interval_blocks")
    seen = set()
    for account in genesis.accounts:
        try:
            parse_address(account.address)
        except DataPathError as exc:
            raise GenesisError(f"genesis account: {exc}") from exc
        if account.balance < 0:
            raise GenesisError(f"genesis account {account.address} has a negative balance")
        if account.address in seen:
            raise GenesisError(f"genesis account {account.address} is listed twice")
        seen.add(account.address)
