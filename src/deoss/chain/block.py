"""One block, step by step: the begin-block steps, the transactions, the end-block steps.

``process_block`` is the block's order written out once. Every step is a function of its
module named for what it does; the comment above each call says why it runs there. The order is
consensus: moving a step changes which deadlines a transaction in the block still meets, and
the app hash (tests/vectors/app_hash.json pins it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from deoss.chain.genesis import ChainParams
from deoss.chain.modules import audit, deals, files, restoral, space, tagging
from deoss.chain.state import State
from deoss.chain.types import BlockContext, BlockEvents, Event, TxResult

__all__ = ["process_block"]


def process_block(
    state: State,
    ctx: BlockContext,
    params: ChainParams,
    txs: Sequence[bytes],
    apply_tx: Callable[[bytes], TxResult],
) -> tuple[list[TxResult], list[Event]]:
    """Run one block over ``state``: (the transactions' results, the block steps' events).

    The begin-block steps run before the transactions, so that what is due at this height is
    settled before a transaction of the block sees it: a lease, deal, tag or tag-confirmation
    deadline at this height is already past for the block's transactions. A restoral claim and
    an audit answer may still be given at their deadline height (steps 6 and 10).
    """
    events = BlockEvents()
    # --- begin block ---------------------------------------------------------------------
    # 1. Leases at their deadline freeze, frozen ones past the grace period start purging:
    #    first, so that a lease expiring now refuses this block's declarations, and an owner
    #    whose lease starts purging now loses objects from this very block on (step 3).
    space.advance_expired_leases(state, ctx, params, events)
    # 2. Untagged files past their tag deadline get another tagger (the late one penalised),
    #    before the purge: the penalty does not depend on whether the file is purged now.
    tagging.reassign_late_tagging(state, ctx, params, events)
    # 3. Objects of purging owners are removed (a bounded number per block); deleted files go
    #    to the files.GONE outbox that step 8 empties in this same block.
    files.purge_expired_objects(state, params, events)
    # 4. Deals at their deadline are reassigned or FAILED before the transactions: a report
    #    for the assignment that just timed out is refused.
    deals.retry_overdue_deals(state, ctx, params, events)
    # 5. Holdings still unconfirmed at their due height are released and ordered rebuilt,
    #    before the transactions (a confirmation in this block is too late) and after the
    #    purge (a purged file's holdings are gone and get no order).
    restoral.release_unconfirmed_holdings_due(state, ctx.height, events)
    # 6. Claims past their deadline (a claim completes up to its deadline height) reopen,
    #    before the transactions, so that this block's claims can take them.
    restoral.reopen_expired_claims(state, ctx, events)

    # --- the transactions, in block order ------------------------------------------------
    results = [apply_tx(raw) for raw in txs]

    # --- end block -----------------------------------------------------------------------
    # 7. OPEN deals, those declared in this block included, go to a scheduler at once.
    deals.assign_open_deals(state, ctx, params, events)
    # 8. Orders of files deleted in this block (transactions or step 3) are cancelled, so no
    #    miner is asked to rebuild a fragment nobody stores any more.
    restoral.cancel_orders_of_deleted_files(state, events)
    # 9. Exiting miners (this block's miners.exit included) get orders for what they hold;
    #    one with nothing held or claimed exits. After step 8: cancelled claims are unlocked.
    restoral.advance_exiting_miners(state, ctx, events)
    # 10. The round is settled at its deadline, after the transactions: a proof submitted at
    #     the deadline height counts.
    audit.settle_round_if_due(state, ctx, params, events)
    # 11. A new round opens last: after the old one is settled (a round may end and start at
    #     one height), and over the holdings as this block left them.
    audit.open_round_if_due(state, ctx, params, events)
    return results, events.events
