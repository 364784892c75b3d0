"""ChainView: what the miner reads from the chain, over the typed reader (``ChainClient.reads``).

What is the miner's own here: chain failures become service errors (``chain_errors``), records
are named by public key, the genesis parameters are read once, and a confirmed read reason is
remembered briefly (``TtlCache``, ``REASON_TTL_S``). Which query answers what, and that NotFound
means None, is the reader's (client/chain_reads.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from deoss.chain.genesis import ChainParams
from deoss.chain.modules.deals import Deal
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.miners import Miner
from deoss.chain.modules.restoral import Order
from deoss.chain.modules.schedulers import Scheduler
from deoss.client.chain import ChainClient
from deoss.client.errors import ClientError, NodeUnavailable, QueryFailed
from deoss.core.keys import address_of
from deoss.core.podr2 import TagPublicKey
from deoss.services.common.cache import TtlCache
from deoss.services.common.errors import BadRequest, NotFound, ServiceUnavailable, UpstreamFailed

__all__ = ["REASON_TTL_S", "ChainView", "chain_errors"]

REASON_TTL_S = 5.0  # a confirmed read reason stays confirmed this long (a download's many reads)


@contextlib.contextmanager
def chain_errors(what: str) -> Iterator[None]:
    """Client errors of a chain lookup as service errors: 503 unreachable, 502 otherwise."""
    try:
        yield
    except NodeUnavailable as exc:
        raise ServiceUnavailable(f"cannot {what}: the chain node is unreachable") from exc
    except QueryFailed as exc:
        raise BadRequest(f"cannot {what}: {exc}") from exc
    except ClientError as exc:
        raise UpstreamFailed(f"cannot {what}: {exc}") from exc


class ChainView:
    """What the miner reads from the chain. Only a confirmed read reason is cached (briefly, so
    a download's many fragment reads cost one check): deal and file state decide what is
    accepted, so they are always read afresh."""

    def __init__(self, chain: ChainClient) -> None:
        self.chain = chain
        self._params: ChainParams | None = None
        self._reasons: TtlCache[tuple[object, ...], bool] = TtlCache()

    async def chain_id(self) -> str:
        with chain_errors("read the chain id"):
            return await self.chain.chain_id()

    async def params(self) -> ChainParams:
        """The chain's parameters (genesis: they never change), read once."""
        if self._params is None:
            with chain_errors("read the chain parameters"):
                self._params = await self.chain.reads.params()
        return self._params

    async def deal(self, deal_id: int) -> Deal:
        """The deal as the chain has it now (never cached: its state decides). Raises NotFound."""
        deal = await self.deal_or_none(deal_id)
        if deal is None:
            raise NotFound(f"no deal {deal_id} on chain")
        return deal

    async def deal_or_none(self, deal_id: int) -> Deal | None:
        with chain_errors("read the deal"):
            return await self.chain.reads.deal(deal_id)

    async def file(self, fid: str) -> FileRecord | None:
        with chain_errors("read the file"):
            return await self.chain.reads.file(fid)

    async def scheduler(self, public_key: bytes) -> Scheduler | None:
        with chain_errors("read a scheduler"):
            return await self.chain.reads.scheduler(address_of(public_key))

    async def tag_key(self, key_id: bytes) -> TagPublicKey | None:
        """The registered tag public key with this id (its scheduler may be gone for good)."""
        with chain_errors("read a tag key"):
            return await self.chain.reads.tag_key(key_id)

    async def order(self, order_id: int) -> Order | None:
        with chain_errors("read a restoral order"):
            return await self.chain.reads.order(order_id)

    async def miner(self, public_key: bytes) -> Miner | None:
        with chain_errors("read a miner"):
            return await self.chain.reads.miner(address_of(public_key))

    async def object_fid(self, owner: bytes, bucket: str, name: str) -> str | None:
        with chain_errors("read an object"):
            found = await self.chain.reads.object(address_of(owner), bucket, name)
        return found.fid if found else None

    async def owns_fid(self, owner: str, fid: str) -> bool:
        """Whether ``owner`` has an object stored as file ``fid`` (one indexed chain read)."""
        with chain_errors("read what an owner owns"):
            return await self.chain.reads.owns(owner, fid) > 0

    async def gateway_acts_for(self, gateway: bytes, owner: str) -> bool:
        """Whether ``gateway`` is a registered gateway that ``owner`` authorized."""
        with chain_errors("read a user's authorized gateways"):
            authorized = await self.chain.reads.authorized_gateways(owner)
        return address_of(gateway) in authorized

    async def confirmed(self, key: tuple[object, ...], check: Callable[[], Any]) -> bool:
        """``await check()`` (a bool), remembered for REASON_TTL_S when it is True."""
        if self._reasons.get(key):
            return True
        ok = bool(await check())
        if ok:
            self._reasons.put(key, True, REASON_TTL_S)
        return ok
