"""The block's step order (deoss.chain.block.process_block): begin-block steps before the
transactions, end-block steps after, and every module's block step called from it."""

from __future__ import annotations

import hashlib
import inspect

from deoss.chain import calls
from deoss.chain.block import process_block
from deoss.chain.modules import audit, space
from deoss.chain.modules.space import BuySpace, LeaseState
from deoss.chain.types import BlockContext, TxResult
from tests.unit.chain.harness import Chain, key


def test_begin_steps_run_before_the_transactions_and_end_steps_after() -> None:
    # a lease that expires at the height a round opens: the freeze is a begin step, the round
    # an end step
    chain = Chain(challenge_interval_blocks=101)
    chain.run("alice", BuySpace(gib=1, days=1))  # height 1: expires at 1 + 100
    chain.advance(99)
    owner = key("alice").public_key
    state = chain.machine.state
    seen: list[tuple[bytes, LeaseState, int | None]] = []

    def apply_tx(raw: bytes) -> TxResult:
        lease = space.get_lease(state, owner)
        round_ = audit.current_round(state)
        assert lease is not None
        seen.append((raw, lease.state, round_.number if round_ else None))
        return TxResult(log=raw.decode())

    ctx = BlockContext(chain.machine.chain_id, 101, 0, b"", hashlib.sha256(b"seed").digest())
    results, events = process_block(state, ctx, chain.params, [b"first", b"second"], apply_tx)

    assert ["first", "second"] == [r.log for r in results]
    assert [(b"first", LeaseState.FROZEN, None), (b"second", LeaseState.FROZEN, None)] == seen
    assert ["space.frozen", "audit.round"] == [e.type for e in events]
    round_ = audit.current_round(state)
    assert round_ is not None and 1 == round_.number


def test_every_block_step_of_the_modules_is_called_by_process_block() -> None:
    source = inspect.getsource(process_block)
    steps = [
        f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
        for module in calls.MODULES
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if function.__module__ == module.__name__
        and (function.__doc__ or "").startswith("Block step:")
    ]
    assert 11 == len(steps)
    assert [] == [step for step in steps if f"{step}(" not in source]
