"""The state machine: ABCI-shaped sequencing of blocks over the modules. No I/O.

    info -> init_chain(genesis) -> [check_tx]* -> finalize_block(header, txs) -> commit -> …

finalize_block runs the block (``deoss.chain.block.process_block``: the begin-block steps,
every transaction, the end-block steps) and returns the results and the new app hash; commit
folds the block's writes into the committed state and returns them for the driver to persist
in one database transaction. The app hash chains the previous one with the sorted write set of
the block:

    app_hash(h) = sha256("deoss-app-v1" || app_hash(h-1) || h (8 bytes) || sha256(writes))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from deoss.chain import calls
from deoss.chain.block import process_block
from deoss.chain.errors import BadNonce, NotFound, TooLarge, TxError, WrongChain
from deoss.chain.genesis import ChainParams, Genesis, validate_genesis
from deoss.chain.modules import accounts
from deoss.chain.params import PARAMS_KEY, load_params
from deoss.chain.query import QueryArgs
from deoss.chain.state import State, put_record
from deoss.chain.types import (
    BlockContext,
    BlockHeader,
    Event,
    QueryResult,
    TxContext,
    TxResult,
)
from deoss.core import codec
from deoss.core.errors import DataPathError

__all__ = ["BlockOutcome", "StateMachine"]

META_KEY = b"meta"


class Meta(codec.Record):
    height: int
    app_hash: bytes
    chain_id: str


class _Refused(Exception):
    """Carries a refused check_tx result out of its savepoint (to roll it back)."""

    def __init__(self, result: TxResult) -> None:
        super().__init__(result.log)
        self.result = result


@dataclass
class BlockOutcome:
    height: int
    tx_results: list[TxResult]
    events: list[Event] = field(default_factory=list)
    app_hash: bytes = b""


class StateMachine:
    """The ledger over one State. Not thread-safe: the driver serialises calls."""

    def __init__(self, state: State | None = None) -> None:
        self.state = state or State()
        self._check = self.state.fork()
        self._finalized: BlockOutcome | None = None
        meta = self._meta()
        self.height = meta.height if meta else 0
        self.app_hash = meta.app_hash if meta else b""
        self.chain_id = meta.chain_id if meta else ""
        self._params: ChainParams | None = load_params(self.state) if meta else None

    def _meta(self) -> Meta | None:
        raw = self.state.get(META_KEY)
        return codec.decode(raw, Meta) if raw else None

    @property
    def params(self) -> ChainParams:
        if self._params is None:
            raise RuntimeError("chain not initialised: call init_chain first")
        return self._params

    # --- ABCI ----------------------------------------------------------------------------

    def info(self) -> tuple[int, bytes]:
        """(last committed height, app hash)."""
        return self.height, self.app_hash

    def init_chain(self, genesis: Genesis) -> bytes:
        """Write the genesis state and commit it as height 0; returns the app hash."""
        if self._meta() is not None:
            raise RuntimeError("chain already initialised")
        validate_genesis(genesis)
        put_record(self.state, PARAMS_KEY, genesis.params)
        accounts.init_genesis(self.state, genesis)  # the only module with genesis state
        self.chain_id = genesis.chain_id
        self._params = genesis.params
        self.app_hash = self._next_app_hash(0)
        put_record(
            self.state, META_KEY, Meta(height=0, app_hash=self.app_hash, chain_id=self.chain_id)
        )
        self.state.commit_pending()
        self._check = self.state.fork()
        return self.app_hash

    def check_tx(self, raw: bytes) -> TxResult:
        """Validate a transaction against the mempool state (pending txs applied in order).

        A refused transaction leaves no trace (not even its nonce bump): the check state stays
        "committed state + the transactions accepted into the mempool".
        """
        context = BlockContext(self.chain_id, self.height + 1, 0, b"", b"")
        try:
            with self._check.savepoint():
                result = self._apply(self._check, context, raw)
                if result.code != 0:
                    raise _Refused(result)
        except _Refused as refused:
            return refused.result
        return result

    def finalize_block(self, header: BlockHeader, txs: Sequence[bytes]) -> BlockOutcome:
        """Execute a block; nothing is committed until commit()."""
        if header.height != self.height + 1:
            raise ValueError(f"expected block {self.height + 1}, got {header.height}")
        if header.chain_id != self.chain_id:
            raise ValueError(f"block for chain {header.chain_id!r}, this is {self.chain_id!r}")
        seed = hashlib.sha256(self.app_hash + header.hash).digest()
        context = BlockContext(self.chain_id, header.height, header.time_ns, header.hash, seed)
        tx_results, events = process_block(
            self.state, context, self.params, txs, lambda raw: self._apply(self.state, context, raw)
        )
        outcome = BlockOutcome(height=header.height, tx_results=tx_results, events=events)
        outcome.app_hash = self._next_app_hash(header.height)
        put_record(
            self.state,
            META_KEY,
            Meta(height=header.height, app_hash=outcome.app_hash, chain_id=self.chain_id),
        )
        self._finalized = outcome
        return outcome

    def commit(self) -> list[tuple[bytes, bytes | None]]:
        """Make the finalized block the committed state; returns its writes for the store."""
        if self._finalized is None:
            raise RuntimeError("commit without finalize_block")
        writes = self.state.commit_pending()
        self.height, self.app_hash = self._finalized.height, self._finalized.app_hash
        self._finalized = None
        self._check = self.state.fork()  # the mempool state restarts from the new block
        return writes

    def query(self, path: str, data: bytes = b"") -> QueryResult:
        """Answer a read-only query against the committed state."""
        handler = calls.QUERIES.get(path)
        if handler is None:
            return QueryResult(
                code=NotFound.code, log=f"unknown query path {path!r}", height=self.height
            )
        try:
            args = codec.decode(data, QueryArgs) if data else QueryArgs()
            value = handler(self.state.fork(), args)
        except DataPathError as exc:
            return QueryResult(code=1, log=f"bad query arguments: {exc}", height=self.height)
        except TxError as exc:
            return QueryResult(code=exc.code, log=str(exc), height=self.height)
        return QueryResult(value=value, height=self.height)

    # --- internals -----------------------------------------------------------------------

    def _next_app_hash(self, height: int) -> bytes:
        writes = [(k, v) for k, v in self.state.pending_writes() if k != META_KEY]
        digest = hashlib.sha256(codec.encode(writes)).digest()
        return hashlib.sha256(
            b"deoss-app-v1" + self.app_hash + height.to_bytes(8, "big") + digest
        ).digest()

    def _charge_state_growth(self, state: State, sender: bytes) -> None:
        """Charge the call's new state bytes to the sender (to the treasury).

        Runs inside the call's savepoint: an unpayable price raises, which undoes the call;
        the transaction fee, taken in its own savepoint before the call, is kept.
        """
        price = self.params.state_byte_price
        if not price:
            return
        grown = state.savepoint_growth()
        if grown:
            amount = grown * price
            accounts.debit(state, sender, amount, f"state price ({grown} new bytes x {price})")
            accounts.treasury_credit(state, amount)

    def _apply(self, state: State, block: BlockContext, raw: bytes) -> TxResult:
        """Run one transaction; a refusal leaves only the nonce bump (and fee) behind."""
        try:
            if len(raw) > self.params.max_tx_bytes:
                raise TooLarge(f"transaction is {len(raw)} bytes, limit {self.params.max_tx_bytes}")
            body = calls.decode_tx(raw)
            if body.chain_id != self.chain_id:
                raise WrongChain(
                    f"transaction for chain {body.chain_id!r}, this is {self.chain_id!r}"
                )
            expected = accounts.get_account(state, body.sender).nonce
            if body.nonce != expected:
                raise BadNonce(f"nonce {body.nonce}, expected {expected}")
            with state.savepoint():
                if self.params.tx_fee:
                    accounts.debit(state, body.sender, self.params.tx_fee, "transaction fee")
                    accounts.treasury_credit(state, self.params.tx_fee)
                accounts.bump_nonce(state, body.sender)
        except TxError as exc:
            return TxResult(code=exc.code, log=str(exc))
        context = TxContext(block=block, sender=body.sender)
        try:
            with state.savepoint():
                calls.HANDLERS[type(body.call)](state, context, body.call)
                self._charge_state_growth(state, body.sender)
        except TxError as exc:
            return TxResult(code=exc.code, log=str(exc))
        context.emit(
            "tx", call=calls.call_tag(body.call), sender=context.sender_address, nonce=body.nonce
        )
        return TxResult(events=context.events)
