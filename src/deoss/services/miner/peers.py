"""The miner's calls to other nodes: fragments and tags (their own, or mirror copies of other
fragments' tags) from other miners, tags from a scheduler.

Every request is signed with the miner's key (the other side checks who asks). Every answer is
checked before it is used: a fragment must hash to the hash asked for, tags must have exactly
the length the fragment's size gives, and neither is read past that length
(``deoss.client.miner.MinerClient``, ``deoss.client.fetch``: a peer streaming gigabytes is cut
off). A failure raises ``PeerError`` (``deoss.client.errors``) with the URL and the reason;
callers decide whether to try another peer or later.
"""

from __future__ import annotations

import httpx

from deoss.client.chain import ChainClient
from deoss.client.errors import PeerError
from deoss.client.miner import MinerClient
from deoss.client.miner_types import ReadReason
from deoss.client.scheduler import SchedulerClient
from deoss.client.signing import SigningAuth
from deoss.core.keys import KeyPair, address_of, parse_address

__all__ = ["PeerError", "Peers"]

DEFAULT_TIMEOUT_S = 60.0


class Peers:
    """Signed HTTP to miners and schedulers, with their endpoints read from the chain."""

    def __init__(
        self,
        chain: ChainClient,
        key: KeyPair,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.chain = chain
        self.timeout_s = timeout_s
        self.http = httpx.AsyncClient(auth=SigningAuth(key), transport=transport, timeout=timeout_s)
        self.miners = MinerClient(self.http, timeout_s=timeout_s)
        self.schedulers = SchedulerClient(self.http, timeout_s=timeout_s)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def miner_endpoints(self) -> dict[bytes, str]:
        entries = await self.chain.reads.miners()
        return {parse_address(e.address): e.miner.endpoint.rstrip("/") for e in entries}

    async def scheduler_endpoint(self, scheduler: bytes) -> str:
        """The registered endpoint of a scheduler (the tagger of a file)."""
        address = address_of(scheduler)
        found = await self.chain.reads.scheduler(address)
        if found is None:
            raise PeerError(f"{address} is not a registered scheduler")
        return found.endpoint.rstrip("/")

    async def fetch_fragment(
        self, endpoint: str, fragment_hash: bytes, size: int, order_id: int
    ) -> bytes:
        """A fragment of ``size`` bytes from a miner, for restoral order ``order_id`` (claimed
        by this miner: the holder checks it), checked against its hash; the read stops past
        ``size`` bytes."""
        reason = ReadReason("restoral", order=order_id)
        return await self.miners.fragment(endpoint, fragment_hash, size, reason)

    async def fetch_tags(
        self, endpoint: str, fragment_hash: bytes, key_id: bytes, expected: int, order_id: int
    ) -> bytes:
        """The ``expected`` bytes of tags a miner stores for a fragment under one tag key, for
        restoral order ``order_id``, checked for length only (the caller checks them against
        the fragment with ``core.podr2.check_tags``)."""
        reason = ReadReason("restoral", order=order_id)
        return await self.miners.tags(endpoint, fragment_hash, key_id, expected, reason)

    async def fetch_mirror(
        self,
        endpoint: str,
        fragment_hash: bytes,
        key_id: bytes,
        expected: int,
        order_id: int | None = None,
    ) -> bytes:
        """The ``expected`` bytes of a mirror copy of a fragment's tags that another holder of
        its segment keeps (``GET /mirror-tags``; ``order_id``: the restoral order the asker
        claimed, else the asker holds the fragment), checked for length only."""
        return await self.miners.mirror_tags(endpoint, fragment_hash, key_id, expected, order_id)

    async def request_tags(
        self,
        endpoint: str,
        fid: str,
        fragment_hash: bytes,
        data: bytes,
        sectors_per_block: int,
        order_id: int | None = None,
    ) -> bytes:
        """The PoDR² tags of ``data`` from the scheduler at ``endpoint`` (docs/services.md,
        ``PUT /tags/{hash}``), checked for length."""
        return await self.schedulers.tags(
            endpoint, fid, fragment_hash, data, sectors_per_block, order_id
        )
