"""The gateway's operations, one function per route, over the chain, schedulers and miners.

``Gateway`` holds what every request needs (the chain client, the gateway's key, one HTTP
client to schedulers and miners, the request verifier, caches) and implements the REST API of
docs/api.md without HTTP concepts: routes parse, call one method, shape the answer. Invariants:

* Every method acts for a user whose signature was verified and who authorized this gateway
  on chain (``require_authorized``, cached for ``auth_cache_ms``); whatever it submits names
  that user as the owner, so the chain checks the authorization again.
* Chain refusals propagate as ``deoss.client.errors`` (the app maps their codes to statuses);
  refusals found before anything is submitted are ``ServiceError``s with a message that says
  what to do.
* Uploads are admitted (``UploadSlots``: per gateway, per user; else 429) and checked (name,
  bucket, object, space, size) before the body is read, so a refused upload spools nothing;
  a body without a length is cut off as soon as it exceeds the user's free space (507).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from deoss.chain.errors import TxError
from deoss.chain.modules.buckets import Bucket, CreateBucket, DeleteBucket
from deoss.chain.modules.deals import Deal
from deoss.chain.modules.files import (
    DeleteObject,
    FileRecord,
    ObjectRecord,
    check_object_name,
)
from deoss.chain.modules.gateways import RegisterGateway
from deoss.chain.modules.space import Lease, LeaseState
from deoss.client.chain import ChainClient
from deoss.client.gateway_types import (
    BucketChange,
    BucketInfo,
    DealStatus,
    FileStatus,
    FragmentStatus,
    ObjectDeleted,
    ObjectInfo,
    ObjectPage,
    SegmentStatus,
    UploadResult,
)
from deoss.client.signing import SigningAuth
from deoss.core.keys import KeyPair, address_of
from deoss.core.layout import LayoutParams, padded_size, segment_count, segment_span
from deoss.services.common.app import log_event
from deoss.services.common.auth import RequestVerifier
from deoss.services.common.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    PayloadTooLarge,
    ServiceError,
)
from deoss.services.common.ranges import parse_range
from deoss.services.common.signing import Signer
from deoss.services.gateway.deal_driver import UploadTasks, drive_deal, read_deal
from deoss.services.gateway.download import Download, open_download
from deoss.services.gateway.miner_book import MinerBook
from deoss.services.gateway.segment_reader import DownloadMetrics, SegmentReader
from deoss.services.gateway.settings import GatewaySettings
from deoss.services.gateway.spooling import Spooled, spool_body, sweep_spool
from deoss.services.gateway.uplink import Uplink, UploadMetrics
from deoss.services.gateway.upload import Declared, UploadSlots, declare_upload

__all__ = [
    "BucketChange",
    "BucketInfo",
    "DealStatus",
    "FileStatus",
    "Gateway",
    "InsufficientStorage",
    "ObjectDeleted",
    "ObjectInfo",
    "ObjectPage",
    "UploadResult",
    "register_gateway",
]

MAX_AUTH_CACHE = 10_000


class InsufficientStorage(ServiceError):
    status, code = 507, "insufficient_space"


# --- what the API answers -----------------------------------------------------------------


def _object_size(record: FileRecord, size: int | None, layout: LayoutParams) -> int:
    """``size`` if an object of that size has this file's segments (default: the first)."""
    if size is None:
        return sum(s.size for s in record.segments)
    last = record.segments[-1]
    fits = (
        size >= 0
        and segment_count(size, layout) == len(record.segments)
        and padded_size(segment_span(last.index, size, layout)[1], layout) == last.padded_size
    )
    if not fits:
        raise BadRequest(f"file {record.fid} cannot hold an object of {size} bytes")
    return size


def _deal_status(deal: Deal) -> DealStatus:
    return DealStatus(
        id=deal.id,
        state=deal.state.name,
        owner=address_of(deal.owner),
        declarer=address_of(deal.declarer),
        bucket=deal.bucket,
        name=deal.name,
        size=deal.size,
        fid=deal.fid,
        segments=len(deal.segments),
        scheduler=address_of(deal.scheduler) if deal.scheduler else None,
        attempts=deal.attempts,
        deadline=deal.deadline,
        created_at=deal.created_at,
        reason=deal.reason,
    )


def _file_status(record: FileRecord) -> FileStatus:
    segments = [
        SegmentStatus(
            index=segment.index,
            size=segment.size,
            padded_size=segment.padded_size,
            hash=segment.hash.hex(),
            fragments=[
                FragmentStatus(index=i, hash=h.hex(), holder=address_of(holder))
                for i, (h, holder) in enumerate(zip(segment.fragment_hashes, row, strict=True))
            ],
        )
        for segment, row in zip(record.segments, record.holders, strict=True)
    ]
    return FileStatus(
        fid=record.fid,
        size=sum(s.size for s in record.segments),
        owners=record.owners,
        created_at=record.created_at,
        reporter=address_of(record.reporter),
        tagger=address_of(record.tagger),
        tagged=record.tagged,
        tag_deadline=record.tag_deadline,
        segments=segments,
    )


# --- the gateway --------------------------------------------------------------------------


class Gateway:
    """The state of one gateway process and the operations of its API."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        chain: ChainClient,
        key: KeyPair,
        transport: httpx.AsyncBaseTransport | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()  # its own
        self.chain = chain
        self.key = key
        self.verifier = RequestVerifier(public_url=settings.public_url)
        self.http = httpx.AsyncClient(auth=SigningAuth(key), transport=transport)
        self._authorized: dict[str, tuple[float, bool]] = {}
        self.uploads = UploadTasks()
        self.upload_slots = UploadSlots(settings.max_uploads, settings.max_uploads_per_user)
        self._planning = asyncio.Semaphore(settings.planning_slots)
        self.miners = MinerBook(chain)
        self.upload_metrics = UploadMetrics(self.registry)
        self.download_metrics = DownloadMetrics(self.registry)
        self._layout: LayoutParams | None = None
        sweep_spool(settings.spool_path)

    async def layout(self) -> LayoutParams:
        """The chain's layout, read once: genesis parameters never change."""
        if self._layout is None:
            params = await self.chain.reads.params()
            self._layout = params.layout
        return self._layout

    async def _reader(self, fid: str, owner: str) -> SegmentReader:
        return SegmentReader(
            self.http,
            self.miners,
            await self.layout(),
            fid=fid,
            owner=owner,
            hedge_after_s=self.settings.hedge_after_ms / 1000,
            max_in_flight=self.settings.fragment_parallelism,
            timeout_s=self.settings.miner_timeout_s,
            metrics=self.download_metrics,
        )

    async def _uplink(self) -> Uplink:
        return Uplink(
            self.chain,
            await self.layout(),
            self.key,
            self.http,
            self.settings,
            self.upload_metrics,
            self._planning,
        )

    @property
    def address(self) -> str:
        return self.key.address

    async def aclose(self) -> None:
        await self.uploads.cancel_all()
        await self.http.aclose()

    async def health(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "uploads_in_progress": len(self.uploads),
            "uploads_admitted": len(self.upload_slots),
        }

    async def require_authorized(self, user: str) -> None:
        """Raises Forbidden unless ``user`` authorized this gateway on chain (cached briefly)."""
        now = time.monotonic()
        cached = self._authorized.get(user)
        if cached is not None and cached[0] > now:
            allowed = cached[1]
        else:
            gateways = await self.chain.reads.authorized_gateways(user)
            allowed = self.address in gateways
            if len(self._authorized) >= MAX_AUTH_CACHE:
                self._authorized = {u: v for u, v in self._authorized.items() if v[0] > now}
            self._authorized[user] = (now + self.settings.auth_cache_ms / 1000, allowed)
        if not allowed:
            raise Forbidden(
                f"{user} has not authorized this gateway; run: deoss gateway authorize "
                f"{self.address}"
            )

    # --- buckets ----------------------------------------------------------------------------

    async def list_buckets(self, user: Signer) -> list[BucketInfo]:
        entries = await self.chain.reads.buckets(user.address)
        return [BucketInfo(e.name, e.created_at, e.object_count) for e in entries]

    async def create_bucket(self, user: Signer, bucket: str) -> BucketChange:
        outcome = await self.chain.submit(self.key, CreateBucket(name=bucket, owner=user.address))
        return BucketChange(bucket=bucket, height=outcome.height or 0)

    async def delete_bucket(self, user: Signer, bucket: str) -> BucketChange:
        outcome = await self.chain.submit(self.key, DeleteBucket(name=bucket, owner=user.address))
        return BucketChange(bucket=bucket, height=outcome.height or 0)

    # --- objects ----------------------------------------------------------------------------

    async def list_objects(
        self, user: Signer, bucket: str, prefix: str, start_after: str, limit: int
    ) -> ObjectPage:
        await self._bucket(user, bucket)
        entries = await self.chain.reads.objects(
            user.address, bucket, prefix=prefix, start_after=start_after, limit=limit
        )
        objects = [ObjectInfo(bucket, e.name, e.fid, e.size, e.created_at) for e in entries]
        more = objects[-1].name if len(objects) == limit else None
        return ObjectPage(bucket=bucket, prefix=prefix, objects=objects, next_start_after=more)

    async def stat_object(self, user: Signer, bucket: str, name: str) -> ObjectInfo:
        record = await self.chain.reads.object.required(user.address, bucket, name)
        return ObjectInfo(bucket, name, record.fid, record.size, record.created_at)

    async def delete_object(self, user: Signer, bucket: str, name: str) -> ObjectDeleted:
        call = DeleteObject(bucket=bucket, name=name, owner=user.address)
        outcome = await self.chain.submit(self.key, call)
        return ObjectDeleted(bucket=bucket, name=name, height=outcome.height or 0)

    async def open_object(
        self, user: Signer, bucket: str, name: str, range_header: str | None
    ) -> Download:
        info = await self.stat_object(user, bucket, name)
        record = await self.chain.reads.file.required(info.fid)
        byte_range = parse_range(range_header, info.size)
        reader = await self._reader(info.fid, user.address)
        return await open_download(reader, record, info.size, byte_range)

    async def open_file(
        self, user: Signer, fid: str, size: int | None, range_header: str | None
    ) -> Download:
        """A stored file by fid, for a user who owns an object stored as it: the miners serve
        its fragments for no one else (they check ``/files/owns`` too), so others get 403 here.

        Raises:
            Forbidden: the user owns no object stored as ``fid``.
        """
        record = await self.chain.reads.file.required(fid)
        owned = await self.chain.reads.owns(user.address, fid)
        if owned == 0:
            raise Forbidden(f"{user.address} owns no object stored as file {fid}")
        reader = await self._reader(fid, user.address)
        size = _object_size(record, size, reader.layout)
        return await open_download(reader, record, size, parse_range(range_header, size))

    async def file_status(self, fid: str) -> FileStatus:
        return _file_status(await self.chain.reads.file.required(fid))

    async def deal_status(self, deal_id: int) -> DealStatus:
        return _deal_status(await read_deal(self.chain, deal_id))

    # --- uploads ----------------------------------------------------------------------------

    async def check_upload(
        self, user: Signer, bucket: str, name: str, declared_bytes: int | None
    ) -> int:
        """Refuse before reading the body what the chain would refuse after it; returns the
        user's free space in bytes, which no body may exceed.

        Raises:
            BadRequest, PayloadTooLarge, Conflict, InsufficientStorage, QueryFailed (404).
        """
        try:
            check_object_name(name)
        except TxError as exc:
            raise BadRequest(str(exc)) from exc
        limit = self.settings.max_object_bytes
        if declared_bytes is not None and declared_bytes > limit:
            raise PayloadTooLarge(f"{declared_bytes} bytes declared, this gateway takes {limit}")
        _, existing, lease = await asyncio.gather(
            self._bucket(user, bucket),
            self._optional_object(user, bucket, name),
            self._lease(user),
        )
        if existing is not None:
            raise Conflict(f"object {name!r} exists in bucket {bucket!r}; delete it first")
        if lease is None:
            raise InsufficientStorage(f"{user.address} has bought no space; run: deoss space buy")
        if lease.state != LeaseState.ACTIVE:
            state = lease.state.name.lower()
            raise InsufficientStorage(f"the space of {user.address} is {state}; renew it")
        if declared_bytes is not None and declared_bytes > lease.free_bytes:
            raise InsufficientStorage(
                f"{declared_bytes} bytes declared, {lease.free_bytes} bytes of space free"
            )
        return lease.free_bytes

    async def put_object(
        self,
        user: Signer,
        bucket: str,
        name: str,
        body: AsyncIterator[bytes],
        declared_bytes: int | None,
        *,
        wait: bool,
    ) -> UploadResult:
        """Admit, check, spool, declare and deliver an object (see upload.py); ``body`` is
        checked against the SHA-256 ``user`` signed while it is spooled. With ``wait`` False,
        answer once declared; the delivery goes on in the background.

        Raises:
            TooManyRequests: too many uploads in flight (nothing read, nothing declared).
        """
        slot = self.upload_slots.admit(user.address)  # held until the spool file is deleted
        try:
            uplink, spooled, declared = await self._spool_and_declare(
                user, bucket, name, body, declared_bytes
            )
        except BaseException:
            slot.release()
            raise
        result = UploadResult(bucket, name, spooled.fid, spooled.size, declared.deal_id, "", False)
        if declared.deal_id is None:
            spooled.path.unlink(missing_ok=True)
            slot.release()
            return replace(result, state="SUCCESS", deduplicated=True)
        work = drive_deal(uplink, declared.deal_id, spooled.path, declared.segments)
        task = self.uploads.start(work, spooled.path, declared.deal_id, slot)
        if not wait:
            deal = await read_deal(self.chain, declared.deal_id)
            return replace(result, state=deal.state.name)
        deal = await asyncio.shield(task)  # a client that goes away does not stop the deal
        return replace(result, state=deal.state.name)

    async def _spool_and_declare(
        self,
        user: Signer,
        bucket: str,
        name: str,
        body: AsyncIterator[bytes],
        declared_bytes: int | None,
    ) -> tuple[Uplink, Spooled, Declared]:
        free_bytes = await self.check_upload(user, bucket, name, declared_bytes)
        uplink = await self._uplink()
        started = time.perf_counter()
        spooled = await spool_body(
            _within_space(body, free_bytes),
            self.settings.spool_path,
            uplink.layout,
            user.body_sha256,
            uplink.planning,
        )
        self.upload_metrics.bytes_received.inc(spooled.size)
        spooled_at = time.perf_counter()
        try:
            declared = await declare_upload(uplink, user.address, bucket, name, spooled)
        except BaseException:
            spooled.path.unlink(missing_ok=True)
            raise
        log_event(
            "gateway",
            "upload.declared",
            deal=declared.deal_id,
            fid=spooled.fid,
            size=spooled.size,
            spool_ms=round((spooled_at - started) * 1000, 1),
            declare_ms=round((time.perf_counter() - spooled_at) * 1000, 1),
        )
        return uplink, spooled, declared

    # --- helpers ----------------------------------------------------------------------------

    async def _bucket(self, user: Signer, bucket: str) -> Bucket:
        return await self.chain.reads.bucket.required(user.address, bucket)

    async def _optional_object(self, user: Signer, bucket: str, name: str) -> ObjectRecord | None:
        return await self.chain.reads.object(user.address, bucket, name)

    async def _lease(self, user: Signer) -> Lease | None:
        return await self.chain.reads.lease(user.address)


async def _within_space(body: AsyncIterator[bytes], free_bytes: int) -> AsyncIterator[bytes]:
    """``body``, stopped (InsufficientStorage) at the first chunk past ``free_bytes``: a body
    without a Content-Length could not be checked against the user's space before."""
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > free_bytes:
            raise InsufficientStorage(
                f"the body is larger than the {free_bytes} bytes of space free; "
                "buy more (deoss space expand) or delete objects"
            )
        yield chunk


async def register_gateway(chain: ChainClient, key: KeyPair, endpoint: str) -> bool:
    """Register ``key`` as a gateway at ``endpoint`` unless it is already; True if submitted.
    A first registration reserves the chain's ``gateway_stake``; an endpoint update none."""
    current = await chain.reads.gateway(key.address)
    if current is not None:
        if current.endpoint == endpoint:
            return False
        await chain.submit(key, RegisterGateway(endpoint=endpoint))
        return True
    params = await chain.reads.params()
    await chain.submit(key, RegisterGateway(endpoint=endpoint, stake=params.gateway_stake))
    return True
