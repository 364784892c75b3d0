"""Fragment holdings: which miner holds which fragment, and whether its tags are confirmed.

A holding is one fragment a miner stores for a file (deoss.chain.modules.files), as the audit
and restoral need it. It is challenged only once its tags are confirmed
(``Holding.tags_confirmed``, deoss.chain.modules.tagging); a holding of a tagged file still
unconfirmed by its due height is released and rebuilt elsewhere (restoral, from the
``tag-due/`` index). A holding's miner has its service space grown by the fragment's size.

Keys: ``hold/<miner><fid><segment:4><fragment:2>`` -> Holding;
``tag-due/<height:8><miner><fid><segment:4><fragment:2>`` -> b"" (unconfirmed holdings of
tagged files, by the height they are released at).
"""

from __future__ import annotations

from collections.abc import Iterator

from msgspec.structs import replace

from deoss.chain.modules import miners
from deoss.chain.state import State, get_record, put_record
from deoss.chain.types import Hash32
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.layout import SegmentPlan

HOLD = b"hold/"
TAG_CONFIRM_DUE = b"tag-due/"


class Holding(Record):
    """One fragment a miner holds, as the audit and restoral need it."""

    fid: str
    segment: int
    fragment: int
    fragment_hash: Hash32
    size: int
    # the holder confirmed it stores verified tags under the file's tag key: only then is the
    # holding challenged (a holder is never slashed for tags it could not obtain)
    tags_confirmed: bool = False
    # while the file is tagged and this is not confirmed: the height it is released at
    confirm_due: int = 0


def hold_key(miner: bytes, fid: str, segment: int, fragment: int) -> bytes:
    return (
        HOLD + miner + bytes.fromhex(fid) + segment.to_bytes(4, "big") + fragment.to_bytes(2, "big")
    )


def holdings_of(state: State, miner: bytes) -> Iterator[Holding]:
    for _, raw in state.iter_prefix(HOLD + miner):
        yield codec.decode(raw, Holding)


def set_holding(
    state: State,
    miner: bytes,
    fid: str,
    segment: SegmentPlan,
    index: int,
    size: int,
    *,
    tags_confirmed: bool = False,
    confirm_due: int = 0,
) -> None:
    """A new holding (its miner's service space grows); ``confirm_due`` > 0 indexes it for
    release at that height unless its tags are confirmed before."""
    put_holding(
        state,
        miner,
        Holding(
            fid=fid,
            segment=segment.index,
            fragment=index,
            fragment_hash=segment.fragment_hashes[index],
            size=size,
            tags_confirmed=tags_confirmed,
            confirm_due=confirm_due,
        ),
    )
    miners.add_service(state, miner, size)


def put_holding(state: State, miner: bytes, holding: Holding) -> None:
    put_record(state, hold_key(miner, holding.fid, holding.segment, holding.fragment), holding)
    if holding.confirm_due:
        state.put(confirm_due_key(holding.confirm_due, miner, holding), b"")


def confirm_due_key(height: int, miner: bytes, holding: Holding) -> bytes:
    return (
        TAG_CONFIRM_DUE
        + height.to_bytes(8, "big")
        + hold_key(miner, holding.fid, holding.segment, holding.fragment)[len(HOLD) :]
    )


def get_holding(state: State, miner: bytes, fid: str, segment: int, index: int) -> Holding | None:
    return get_record(state, hold_key(miner, fid, segment, index), Holding)


def confirm_holding(state: State, miner: bytes, holding: Holding) -> None:
    """The holder stores verified tags: the holding is challenged from now on, never released
    for want of tags."""
    if holding.confirm_due:
        state.delete(confirm_due_key(holding.confirm_due, miner, holding))
    put_holding(state, miner, replace(holding, tags_confirmed=True, confirm_due=0))


def drop_holding(state: State, miner: bytes, fid: str, segment: int, index: int, size: int) -> None:
    holding = get_holding(state, miner, fid, segment, index)
    if holding is None:
        return  # already released (a recovered miner's): its space must not shrink twice
    if holding.confirm_due:
        state.delete(confirm_due_key(holding.confirm_due, miner, holding))
    state.delete(hold_key(miner, fid, segment, index))
    miners.add_service(state, miner, -size)


def take_unconfirmed_holdings_due(state: State, height: int) -> list[tuple[bytes, Holding]]:
    """The (miner, holding) pairs whose tag confirmation was due by ``height`` and never came;
    their index entries are removed. Reads only the due entries (the index is by height)."""
    out: list[tuple[bytes, Holding]] = []
    for key, _ in state.iter_prefix(TAG_CONFIRM_DUE):
        start = len(TAG_CONFIRM_DUE)
        due = int.from_bytes(key[start : start + 8], "big")
        if due > height:
            break
        state.delete(key)
        raw = key[start + 8 :]
        miner, fid = raw[:32], raw[32:64].hex()
        segment = int.from_bytes(raw[64:68], "big")
        index = int.from_bytes(raw[68:70], "big")
        holding = get_holding(state, miner, fid, segment, index)
        if holding is not None and not holding.tags_confirmed and holding.confirm_due == due:
            out.append((miner, holding))
    return out
