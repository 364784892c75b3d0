"""Confirming tags on chain (``files.confirm_tags``) for holdings the tagger could not confirm.

A file is tagged once k holders per segment confirmed their tags; the chain challenges only
confirmed holdings and releases, after ``tag_confirm_blocks``, those still unconfirmed (their
fragments are rebuilt elsewhere). A holder that missed its tags (down while the tagger
delivered, a restorer that rebuilt before the file was tagged) must therefore obtain them and
confirm. The confirmer wakes on ``file.tagged`` and ``restoral.completed`` events and every
``poll_s`` anyway; it reads this miner's holdings, and for each unconfirmed one of a tagged
file: tags already stored under the file's key are used (they were checked on arrival), else
they are fetched from the file's tagger and kept only if they verify
(``prover.fetch_tags_from_tagger``); then one ``files.confirm_tags`` per file names its
segments.

Invariants:

* A holding is confirmed only once verified tags of the file's key are stored here: the
  confirmation is what makes the chain challenge it.
* A failure for one file (tagger unreachable, tags that do not verify, a refusal) is logged and
  retried on the next pass; the other files go on.
"""

from __future__ import annotations

import asyncio

from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.holdings import Holding
from deoss.chain.modules.tagging import ConfirmTags
from deoss.client.errors import ClientError, TxRefused
from deoss.services.common.app import log_event
from deoss.services.common.supervise import wait_woken
from deoss.services.miner.peers import PeerError, Peers
from deoss.services.miner.prover import fetch_tags_from_tagger
from deoss.services.miner.service import ROLE, MinerService
from deoss.services.miner.store import StoreError

__all__ = ["TagConfirmer"]

DEFAULT_POLL_S = 30.0


class TagConfirmer:
    """Obtains and confirms the tags of this miner's unconfirmed holdings (``run`` is a
    background task of the miner)."""

    def __init__(
        self, service: MinerService, peers: Peers, *, poll_s: float = DEFAULT_POLL_S
    ) -> None:
        self.service = service
        self.peers = peers
        self.poll_s = poll_s
        self.confirmed = 0  # holdings confirmed by this process (for /healthz)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.confirm_pending()
            except ClientError as exc:
                log_event(ROLE, "confirm_retry", error=str(exc))
            await wait_woken(self._wake, self.poll_s)

    async def confirm_pending(self) -> int:
        """One pass over this miner's unconfirmed holdings; returns how many it confirmed."""
        holdings = await self.service.chain.reads.holdings(self.service.key.address)
        by_fid: dict[str, list[Holding]] = {}
        for holding in holdings:
            if not holding.tags_confirmed:
                by_fid.setdefault(holding.fid, []).append(holding)
        done = 0
        for fid, pending in sorted(by_fid.items()):
            record = await self.service.view.file(fid)
            if record is None or not record.tagged:
                continue  # not tagged yet: its tagger delivers and collects the confirmations
            try:
                done += await self._confirm_file(record, pending)
            except (PeerError, StoreError, TxRefused) as exc:
                log_event(ROLE, "confirm_failed", fid=fid, why=f"{type(exc).__name__}: {exc}")
        self.confirmed += done
        return done

    async def _confirm_file(self, record: FileRecord, pending: list[Holding]) -> int:
        store = self.service.store
        for holding in pending:
            if not await asyncio.to_thread(
                store.has_tags, holding.fragment_hash, record.tag_key_id
            ):
                await fetch_tags_from_tagger(
                    self.service, self.peers, record, holding.fragment_hash, holding.size
                )
        segments = sorted(h.segment for h in pending)
        call = ConfirmTags(fid=record.fid, key_id=record.tag_key_id, segments=segments)
        await self.service.chain.submit(self.service.key, call)
        log_event(ROLE, "tags_confirmed", fid=record.fid, segments=len(segments))
        return len(segments)
