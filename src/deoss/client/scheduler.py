"""One typed client of the scheduler's HTTP API (its routes: ``deoss.services.scheduler.
routes``): segments from gateways, a deal's progress, tags for a fragment's holder or restorer.

The caller owns the signed ``httpx.AsyncClient`` (``deoss.client.signing.SigningAuth``); this
builds the URLs and reads every answer with a cap (``deoss.client.fetch``). Every failure is a
``deoss.client.errors.PeerError``: ``PeerUnreachable`` (no answer), ``PeerRefused`` (another
status, with the scheduler's error message quoted), ``PeerBadAnswer`` (an answer of the wrong
length or shape).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
import msgspec

from deoss.client.errors import PeerBadAnswer, PeerRefused
from deoss.client.fetch import fetch_answer, fetch_exact
from deoss.client.scheduler_types import DealProgress, SegmentPlacement
from deoss.client.signing import HEADER_BODY
from deoss.core.podr2 import TAG_BYTES, block_count

__all__ = ["ANSWER_MAX_BYTES", "SchedulerClient"]

T = TypeVar("T")

# the scheduler's JSON answers are short (a segment's 12 miner addresses: ~1 KiB); a longer
# one is cut off here instead of filling the caller's memory
ANSWER_MAX_BYTES = 64 * 1024


class SchedulerClient:
    """The scheduler API over ``http``. ``timeout_s``: a deadline for each whole exchange
    (None: the client's own timeouts only)."""

    def __init__(self, http: httpx.AsyncClient, *, timeout_s: float | None = None) -> None:
        self.http = http
        self.timeout_s = timeout_s

    async def put_segment(
        self,
        endpoint: str,
        deal_id: int,
        index: int,
        body: AsyncIterator[bytes],
        *,
        sha256: bytes,
        size: int,
        http_timeout_s: float | None = None,
    ) -> SegmentPlacement:
        """``PUT /deals/{deal}/segments/{index}``: one padded segment of ``size`` bytes,
        streamed from ``body``, signed as hashing to ``sha256``. ``http_timeout_s``: httpx's
        timeout for each step of the exchange, instead of the client's.

        Raises:
            PeerUnreachable: no answer. PeerRefused: not placed (``status``; 404 or 409: the
                scheduler does not see the deal assigned to it). PeerBadAnswer: not a placement.
        """
        url = f"{endpoint}/deals/{deal_id}/segments/{index}"
        options: dict[str, Any] = {}
        if http_timeout_s is not None:
            options["timeout"] = http_timeout_s
        status, answer = await fetch_answer(
            self.http,
            "PUT",
            url,
            max_bytes=ANSWER_MAX_BYTES,
            what=url,
            timeout_s=self.timeout_s,
            content=body,
            headers={HEADER_BODY: sha256.hex(), "content-length": str(size)},
            **options,
        )
        return _decoded(url, status, answer, SegmentPlacement)

    async def deal_progress(self, endpoint: str, deal_id: int) -> DealProgress:
        """``GET /deals/{deal}``: what the scheduler did for a deal so far.

        Raises:
            PeerUnreachable, PeerRefused (404: not a deal), PeerBadAnswer.
        """
        url = f"{endpoint}/deals/{deal_id}"
        status, answer = await fetch_answer(
            self.http, "GET", url, max_bytes=ANSWER_MAX_BYTES, timeout_s=self.timeout_s
        )
        return _decoded(url, status, answer, DealProgress)

    async def tags(
        self,
        endpoint: str,
        fid: str,
        fragment_hash: bytes,
        data: bytes,
        sectors_per_block: int,
        order_id: int | None = None,
    ) -> bytes:
        """``PUT /tags/{hash}?fid=``: the PoDR² tags of fragment ``data`` of file ``fid``, from
        its tagger (``order_id``: the restoral order the asker claimed, else the asker holds
        the fragment), checked for length (the caller checks them against the fragment)."""
        params: dict[str, str | int] = {"fid": fid}
        if order_id is not None:
            params["order"] = order_id
        return await fetch_exact(
            self.http,
            "PUT",
            f"{endpoint}/tags/{fragment_hash.hex()}",
            size=block_count(len(data), sectors_per_block) * TAG_BYTES,
            timeout_s=self.timeout_s,
            params=params,
            content=data,
        )


def _decoded(url: str, status: int, answer: bytes, kind: type[T]) -> T:
    if status != 200:
        raise PeerRefused(f"{url}: HTTP {status}: {_error_message(answer)}", status)
    try:
        return msgspec.json.decode(answer, type=kind)
    except msgspec.ValidationError as exc:
        raise PeerBadAnswer(f"{url}: not a {kind.__name__} ({exc})") from exc
    except msgspec.DecodeError as exc:
        raise PeerBadAnswer(f"{url}: not JSON ({exc})") from exc


def _error_message(answer: bytes) -> str:
    """The message of a service's error answer (``{"error": {"message": ...}}``), else the
    answer's first bytes."""
    try:
        return str(json.loads(answer)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return answer[:200].decode("utf-8", "replace")
