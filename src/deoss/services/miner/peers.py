"""The miner's calls to other nodes: fragments from other miners, tags from a scheduler.

Every request is signed with the miner's key (the other side checks who asks). Every answer is
checked before it is used: a fragment must hash to the hash asked for, tags must have exactly
the length the fragment's size gives. A failure raises ``PeerError`` with the URL and the reason;
callers decide whether to try another peer or later.
"""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from deoss.chain.errors import NotFound
from deoss.chain.modules.miners import MinerEntry
from deoss.chain.modules.schedulers import Scheduler
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.errors import QueryFailed
from deoss.core.keys import KeyPair, address_of, parse_address
from deoss.core.podr2 import TAG_BYTES, block_count
from deoss.services.common.signing import SigningAuth

__all__ = ["PeerError", "Peers"]

DEFAULT_TIMEOUT_S = 60.0


class PeerError(Exception):
    """Another node did not give what was asked, or gave something wrong; the message says."""


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

    async def aclose(self) -> None:
        await self.http.aclose()

    async def miner_endpoints(self) -> dict[bytes, str]:
        entries = await self.chain.query("/miners/list", QueryArgs(), list[MinerEntry])
        return {parse_address(e.address): e.miner.endpoint.rstrip("/") for e in entries}

    async def scheduler_endpoint(self, scheduler: bytes) -> str:
        """The registered endpoint of a scheduler (the tagger of a file)."""
        args = QueryArgs(address=address_of(scheduler))
        try:
            found = await self.chain.query("/schedulers/scheduler", args, Scheduler)
        except QueryFailed as exc:
            if exc.code == NotFound.code:
                raise PeerError(f"{args.address} is not a registered scheduler") from exc
            raise
        return found.endpoint.rstrip("/")

    async def fetch_fragment(self, endpoint: str, fragment_hash: bytes) -> bytes:
        """A fragment from a miner, checked against its hash."""
        url = f"{endpoint}/fragments/{fragment_hash.hex()}"
        response = await self._request("GET", url)
        if hashlib.sha256(response.content).digest() != fragment_hash:
            raise PeerError(f"GET {url}: the bytes do not hash to {fragment_hash.hex()}")
        return response.content

    async def fetch_tags(
        self, endpoint: str, fragment_hash: bytes, key_id: bytes, expected: int
    ) -> bytes:
        """The tags a miner stores for a fragment under one tag key, checked for length only
        (the caller checks them against the fragment with ``core.podr2.check_tags``)."""
        url = f"{endpoint}/tags/{fragment_hash.hex()}"
        response = await self._request("GET", url, params={"key": key_id.hex()})
        return _tags_of(response, f"GET {url}", expected)

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
        url = f"{endpoint}/tags/{fragment_hash.hex()}"
        params: dict[str, str | int] = {"fid": fid}
        if order_id is not None:
            params["order"] = order_id
        response = await self._request("PUT", url, params=params, content=data)
        return _tags_of(
            response, f"PUT {url}", block_count(len(data), sectors_per_block) * TAG_BYTES
        )

    async def _request(self, method: str, url: str, **options: object) -> httpx.Response:
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.http.request(method, url, **options)  # type: ignore[arg-type]
        except TimeoutError as exc:
            raise PeerError(f"{method} {url}: no answer in {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise PeerError(f"{method} {url}: {exc!r}") from exc
        if response.status_code != 200:
            raise PeerError(f"{method} {url}: HTTP {response.status_code} {response.text[:300]!r}")
        return response


def _tags_of(response: httpx.Response, what: str, expected: int) -> bytes:
    if len(response.content) != expected:
        raise PeerError(f"{what}: {len(response.content)} bytes of tags, {expected} expected")
    return response.content
