"""One typed client of the miner's HTTP API (its routes: ``deoss.services.miner.routes``),
for every party that speaks it: the gateway (fragments for downloads), the scheduler (fragments
for tagging, tags and mirror copies delivered) and other miners (fragments, tags and mirror
copies for restoral and proofs).

The caller owns the signed ``httpx.AsyncClient`` (``deoss.client.signing.SigningAuth``); this
builds the URLs and queries, and reads every answer with a cap (``deoss.client.fetch``): a
fragment must have its size and hash, tags the length asked for, a JSON answer at most a few
KiB. A miner streaming more is cut off one network read past that. Every failure is a
``deoss.client.errors.PeerError`` (unreachable, refused, or a bad answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from deoss.client.fetch import fetch_exact, fetch_small, request_ok
from deoss.client.miner_types import ReadReason, Receipt
from deoss.client.signing import HEADER_BODY, sent_once

__all__ = ["RECEIPT_MAX_BYTES", "MinerClient"]

# a receipt answer is a small JSON object (address and signature: ~250 bytes); a miner answering
# more is cut off here instead of filling the scheduler's memory
RECEIPT_MAX_BYTES = 4096


class MinerClient:
    """The miner API over ``http``. ``timeout_s``: a deadline for each whole exchange (None:
    the client's own timeouts only)."""

    def __init__(self, http: httpx.AsyncClient, *, timeout_s: float | None = None) -> None:
        self.http = http
        self.timeout_s = timeout_s

    async def put_fragment(
        self,
        endpoint: str,
        fragment_hash: bytes,
        data: bytes,
        query: Mapping[str, str],
        *,
        what: str | None = None,
    ) -> Receipt:
        """``PUT /fragments/{hash}``: store a fragment (``query``: deal, attempt, segment,
        fragment); the miner's receipt, from an answer of status 200 and at most
        ``RECEIPT_MAX_BYTES`` (its signature is the caller's to check). The body is sent once
        (``sent_once``) with its hash as the signed body SHA-256."""
        what = what or f"PUT {endpoint}/fragments/{fragment_hash.hex()}"
        body, length = sent_once(data)
        answer = await fetch_small(
            self.http,
            "PUT",
            f"{endpoint}/fragments/{fragment_hash.hex()}",
            max_bytes=RECEIPT_MAX_BYTES,
            status=200,
            what=what,
            timeout_s=self.timeout_s,
            params=dict(query),
            content=body,
            headers={HEADER_BODY: fragment_hash.hex(), **length},
        )
        return Receipt.from_answer(answer, what)

    async def fragment(
        self,
        endpoint: str,
        fragment_hash: bytes,
        size: int,
        reason: ReadReason,
        *,
        what: str | None = None,
        http_timeout_s: float | None = None,
    ) -> bytes:
        """``GET /fragments/{hash}``: the fragment's ``size`` bytes, checked against its hash,
        read for ``reason`` (the miner checks it on chain). ``http_timeout_s``: httpx's timeout
        for each step of the exchange, instead of the client's."""
        options: dict[str, Any] = {}
        if http_timeout_s is not None:
            options["timeout"] = http_timeout_s
        return await fetch_exact(
            self.http,
            "GET",
            f"{endpoint}/fragments/{fragment_hash.hex()}",
            params=reason.query(),
            size=size,
            sha256=fragment_hash,
            what=what,
            timeout_s=self.timeout_s,
            **options,
        )

    async def tags(
        self, endpoint: str, fragment_hash: bytes, key_id: bytes, expected: int, reason: ReadReason
    ) -> bytes:
        """``GET /tags/{hash}?key=``: the ``expected`` bytes of tags the miner stores for a
        fragment under one tag key, checked for length only (the caller checks them against
        the fragment)."""
        return await fetch_exact(
            self.http,
            "GET",
            f"{endpoint}/tags/{fragment_hash.hex()}",
            params={"key": key_id.hex(), **reason.query()},
            size=expected,
            timeout_s=self.timeout_s,
        )

    async def mirror_tags(
        self,
        endpoint: str,
        fragment_hash: bytes,
        key_id: bytes,
        expected: int,
        order_id: int | None = None,
    ) -> bytes:
        """``GET /mirror-tags/{hash}?key=``: the ``expected`` bytes of a mirror copy of a
        fragment's tags (``order_id``: the restoral order the asker claimed, else the asker
        holds the fragment), checked for length only."""
        params = {"key": key_id.hex()}
        if order_id is not None:
            params["order"] = str(order_id)
        return await fetch_exact(
            self.http,
            "GET",
            f"{endpoint}/mirror-tags/{fragment_hash.hex()}",
            params=params,
            size=expected,
            timeout_s=self.timeout_s,
        )

    async def put_tags(
        self,
        endpoint: str,
        fragment_hash: bytes,
        tags: bytes,
        query: Mapping[str, str],
        *,
        max_answer_bytes: int,
    ) -> bytes:
        """``PUT /tags/{hash}``: deliver a fragment's tags (``query``: fid, segment, fragment);
        the miner's answer (its tag confirmation, JSON), at most ``max_answer_bytes``."""
        return await fetch_small(
            self.http,
            "PUT",
            f"{endpoint}/tags/{fragment_hash.hex()}",
            max_bytes=max_answer_bytes,
            timeout_s=self.timeout_s,
            params=dict(query),
            content=tags,
        )

    async def put_mirror_tags(
        self, endpoint: str, fragment_hash: bytes, tags: bytes, fid: str, segment: int, index: int
    ) -> None:
        """``PUT /mirror-tags/{hash}``: give a mirror copy of fragment ``index`` of ``segment``
        of ``fid``'s tags to a miner holding another fragment of that segment."""
        await request_ok(
            self.http,
            "PUT",
            f"{endpoint}/mirror-tags/{fragment_hash.hex()}",
            timeout_s=self.timeout_s,
            params={"fid": fid, "segment": segment, "fragment": index},
            content=tags,
        )
