"""ChainClient: the one client of the chain's RPC, for every service and the CLI.

It speaks only the CometBFT v0.38 subset that both drivers serve (docs/chain.md, "## RPC"), so
it works against the embedded node and CometBFT alike. Invariants:

* Transport failures become ``NodeUnavailable`` in one place (``_transport_errors``); a
  JSON-RPC error object becomes ``RpcError``; a refused transaction ``TxRefused`` with its code.
* ``submit`` keeps one nonce counter per key under an asyncio lock: the transactions of one key
  reach check_tx in nonce order, however many are submitted at once. A BadNonce refusal (or a
  failed send whose fate is unknown) drops the counter, and the next use reads the committed
  nonce again.
* Waiting for inclusion never holds the key's lock: one shared watcher follows the blocks while
  anyone waits. A hash is registered before its transaction is sent, and the watcher starts at
  a height fetched after that, so no block holding it can be missed.
* ``follow`` yields every block from ``from_height`` on exactly once and in order, retrying with
  backoff while the node is unreachable (a restart, say). Against a real node it takes blocks
  from a websocket ``BlockFeed`` when it can and reads them over HTTP otherwise; polling is only
  the fallback (and the only way through a test transport).

Several endpoints (RPC URLs of nodes of one chain): requests go to one; a transport failure
(refused, reset, timeout, a 5xx that is not JSON-RPC) moves the client to the next, and the
request is sent there, each endpoint tried once per request. A transaction is never signed
again for that: the same signed bytes go to the next node, which is safe. A node that already
has them answers "tx already exists in cache", which after a re-send means "accepted"; a
BadNonce refusal after a re-send may mean the first send was committed, so the client looks
the hash up (``tx``) before reporting the refusal. The block feed fails over on its own
(block_feed.py).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
from collections.abc import AsyncGenerator, Coroutine, Iterator, Sequence
from contextlib import aclosing, contextmanager, suppress
from typing import Any, TypeVar

import httpx
import msgspec

from deoss.chain.calls import sign_tx
from deoss.chain.errors import BadNonce
from deoss.chain.modules.accounts import Account
from deoss.chain.query import QueryArgs
from deoss.chain.types import Call
from deoss.client import chain_types as read
from deoss.client.block_feed import BlockFeed, websocket_url
from deoss.client.chain_reads import ChainReader
from deoss.client.chain_types import (
    AppInfo,
    BlockInfo,
    BlockResults,
    ChainStatus,
    FollowedBlock,
    TxOutcome,
    followed_block,
    tx_hash,
)
from deoss.client.errors import (
    BadResponse,
    InclusionTimeout,
    NodeUnavailable,
    QueryFailed,
    RpcError,
    TxRefused,
)
from deoss.core import codec
from deoss.core.errors import DataPathError
from deoss.core.keys import KeyPair

__all__ = ["DEFAULT_NODE_URL", "ChainClient", "default_node_url", "node_urls", "run"]

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

DEFAULT_NODE_URL = "http://127.0.0.1:26657"
NONCE_ATTEMPTS = 4
_COMMIT_TIMEOUT = "timed out waiting for tx to be included in a block"
_IN_CACHE = "tx already exists in cache"  # the answer to a re-send of a tx a node has
_HEIGHT_NOT_YET = "must be less than or equal to the current blockchain height"
_JSON = {"content-type": "application/json"}
FEED_SILENCE_S = 2.0  # with the feed live and no block for this long, ask the node anyway


def default_node_url() -> str:
    """$DEOSS_NODE (one URL, or several separated by commas), or the embedded node's default
    address."""
    return os.environ.get("DEOSS_NODE") or DEFAULT_NODE_URL


def node_urls(value: str | Sequence[str] | None) -> list[str]:
    """The RPC endpoints named by ``value``: a URL, URLs separated by commas, or a list of
    them; None or "": ``default_node_url()``.

    Raises:
        ValueError: no URL, or one that is not http(s), named.
    """
    if value is None or value == "":
        value = default_node_url()
    items = value.split(",") if isinstance(value, str) else list(value)
    urls = [item.strip() for item in items if item.strip()]
    if not urls:
        raise ValueError(f"no chain node URL in {value!r}")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"chain node URL {url!r} is not an http(s) URL")
    return urls


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a client coroutine from synchronous code (the CLI)."""
    return asyncio.run(coroutine)


@contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    """Every failure to reach the node, whatever httpx calls it, is NodeUnavailable."""
    try:
        yield
    except httpx.TransportError as exc:  # connect/read/write errors and timeouts
        raise NodeUnavailable(f"chain node at {url} is unreachable: {exc!r}") from exc


class ChainClient:
    """An async client of a chain's nodes. Use ``async with`` or call ``aclose``."""

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        poll_interval_s: float = 0.05,
        inclusion_timeout_s: float = 30.0,
        block_feed: bool | None = None,
        feed_url: str | None = None,
    ) -> None:
        """``url``: one RPC endpoint or several (a list, or URLs separated by commas; see
        ``node_urls``), tried in order. ``block_feed``: follow blocks pushed over the nodes'
        websockets (``feed_url``, by default /websocket beside each URL); by default on unless
        a custom ``transport`` is given, which cannot carry a websocket."""
        self.urls = node_urls(url)
        self._current = 0  # the endpoint requests go to, until it fails
        self.poll_interval_s = poll_interval_s
        self.inclusion_timeout_s = inclusion_timeout_s
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout_s)
        self._ids = itertools.count(1)
        self._chain_id: str | None = None
        self._nonces: dict[bytes, int] = {}
        self._key_locks: dict[bytes, asyncio.Lock] = {}
        self._watcher = _InclusionWatcher(self)
        use_feed = transport is None if block_feed is None else block_feed
        feed_urls = [feed_url] if feed_url else [websocket_url(u) for u in self.urls]
        self._feed = BlockFeed(feed_urls) if use_feed else None
        self.reads = ChainReader(self)  # the chain's queries, typed (chain_reads.py)

    @property
    def url(self) -> str:
        """The endpoint requests go to now."""
        return self.urls[self._current]

    @property
    def feed(self) -> BlockFeed | None:
        """The websocket block feed, if this client uses one."""
        return self._feed

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._watcher.stop()
        if self._feed is not None:
            await self._feed.aclose()
        await self._http.aclose()

    # --- JSON-RPC ------------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One JSON-RPC call; returns its ``result``. Sent to the next endpoint when one is
        unreachable, each at most once.

        Raises:
            NodeUnavailable (no endpoint answered), RpcError, BadResponse.
        """
        result, _ = await self._call_resending(method, params)
        return result

    async def _call_resending(self, method: str, params: dict[str, Any] | None) -> tuple[Any, bool]:
        """(result, resent): ``resent`` when the request went to more than one endpoint, so
        that an earlier try may have reached its node. An RpcError carries ``resent`` too."""
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        request["params"] = params or {}
        body = msgspec.json.encode(request)
        failure: NodeUnavailable | None = None
        for tries in range(len(self.urls)):
            url = self.url
            try:
                document = await self._post(url, method, body)
            except NodeUnavailable as exc:
                failure = exc
                self._fail_over(url, exc)
                continue
            try:
                return _result_of(method, document), tries > 0
            except RpcError as exc:
                exc.resent = tries > 0
                raise
        assert failure is not None
        raise failure

    async def _post(self, url: str, method: str, body: bytes) -> Any:
        with _transport_errors(url):
            response = await self._http.post(url, content=body, headers=_JSON)
        try:
            return msgspec.json.decode(response.content)
        except msgspec.DecodeError as exc:
            error = NodeUnavailable if response.status_code >= 500 else BadResponse
            raise error(f"{method}: HTTP {response.status_code} from {url}, not JSON-RPC") from exc

    def _fail_over(self, url: str, exc: Exception) -> None:
        """Move to the endpoint after ``url``, unless another request already moved on."""
        if len(self.urls) > 1 and self.url == url:
            self._current = (self._current + 1) % len(self.urls)
            log.warning("chain node %s failed (%s); now using %s", url, exc, self.url)

    # --- reading -------------------------------------------------------------------------

    async def status(self) -> ChainStatus:
        return read.read_status(await self.call("status"))

    async def app_info(self) -> AppInfo:
        """The app's last committed height and app hash (abci_info)."""
        return read.read_app_info(await self.call("abci_info"))

    async def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = (await self.status()).chain_id
        return self._chain_id

    async def block(self, height: int | None = None) -> BlockInfo:
        params = {"height": str(height)} if height else {}
        return read.read_block(await self.call("block", params))

    async def block_results(self, height: int | None = None) -> BlockResults:
        params = {"height": str(height)} if height else {}
        return read.read_block_results(await self.call("block_results", params))

    async def tx(self, hash_: bytes) -> TxOutcome:
        """The transaction with this SHA-256, once it is in a block (RpcError otherwise)."""
        encoded = base64.b64encode(hash_).decode("ascii")  # []byte in a JSON body: base64
        outcome, _ = read.read_tx(await self.call("tx", {"hash": encoded}))
        return outcome

    async def query(self, path: str, args: QueryArgs, type_: type[R]) -> R:
        """Run a chain query and decode its value as ``type_``.

        Raises:
            QueryFailed: the chain answered with a code != 0. BadResponse: undecodable value.
        """
        result = await self.call("abci_query", {"path": path, "data": codec.encode(args).hex()})
        with read.reading("abci_query"):
            response = result["response"]
            code, log = int(response.get("code", 0)), str(response.get("log", ""))
            value = read.from_b64(response.get("value"))
        if code != 0:
            raise QueryFailed(path, code, log)
        try:
            return codec.decode(value, type_)
        except DataPathError as exc:
            raise BadResponse(f"abci_query {path}: {exc}") from exc

    async def account(self, address: str) -> Account:
        return await self.reads.account(address)

    # --- writing -------------------------------------------------------------------------

    async def broadcast(self, tx: bytes, wait: bool = True) -> TxOutcome:
        """Send a signed transaction; return after check_tx, or after inclusion if ``wait``.
        When an endpoint fails, the same bytes go to the next (see the module docstring).

        Raises:
            TxRefused: code != 0 at check or in the block. InclusionTimeout: not seen in time.
        """
        hash_ = tx_hash(tx)
        encoded = {"tx": base64.b64encode(tx).decode("ascii")}
        if not wait:
            try:
                result, resent = await self._call_resending("broadcast_tx_sync", encoded)
            except RpcError as exc:
                if exc.resent and _IN_CACHE in exc.data:
                    return TxOutcome(hash=hash_)  # an earlier try reached a node's mempool
                raise
            with read.reading("broadcast_tx_sync"):
                code, why = int(result.get("code", 0)), str(result.get("log", ""))
            if code != 0:
                refused = TxRefused(code=code, log=why, tx_hash=hash_, stage="check")
                return await self._unless_committed(refused, resent)
            return TxOutcome(hash=hash_)
        try:
            result, resent = await self._call_resending("broadcast_tx_commit", encoded)
        except RpcError as exc:
            if _COMMIT_TIMEOUT in exc.data:
                raise InclusionTimeout(hash_, self.inclusion_timeout_s) from exc
            if exc.resent and _IN_CACHE in exc.data:
                return _included(await self._wait_for_inclusion(hash_))
            raise
        with read.reading("broadcast_tx_commit"):
            check = read.read_tx_result(result["check_tx"])
            included = read.read_tx_result(result["tx_result"])
            height = int(result.get("height", 0))
        if check.code != 0:
            refused = TxRefused(code=check.code, log=check.log, tx_hash=hash_, stage="check")
            return _included(await self._unless_committed(refused, resent))
        return _included(TxOutcome(hash=hash_, height=height, result=included))

    async def _unless_committed(self, refused: TxRefused, resent: bool) -> TxOutcome:
        """After a re-send, a BadNonce refusal may be the first send's own nonce, used when it
        was committed: then its outcome. Otherwise (or if not found) raise ``refused``."""
        if resent and refused.code == BadNonce.code:
            try:
                return await self.tx(refused.tx_hash)
            except RpcError:
                pass  # not committed (or not indexed yet): the refusal stands
        raise refused

    async def _wait_for_inclusion(self, hash_: bytes) -> TxOutcome:
        """The outcome of a transaction some node already has: registered with the watcher
        first, then looked up, so that neither an earlier nor a later block is missed."""
        inclusion = await self._watcher.expect(hash_)
        try:
            found = await self.tx(hash_)
        except RpcError:
            return await self._watcher.wait(hash_, inclusion)
        self._watcher.forget(hash_)
        return found

    async def submit(self, key: KeyPair, call: Call, wait: bool = True) -> TxOutcome:
        """Sign ``call`` with the key's next nonce and broadcast it (see the module docstring).

        Raises:
            TxRefused, InclusionTimeout, NodeUnavailable, RpcError.
        """
        for attempt in range(NONCE_ATTEMPTS):
            try:
                return await self._submit_once(key, call, wait)
            except TxRefused as exc:
                if exc.code != BadNonce.code or exc.stage != "check":
                    raise
                if attempt == NONCE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(self.poll_interval_s * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _submit_once(self, key: KeyPair, call: Call, wait: bool) -> TxOutcome:
        sender = key.public_key
        lock = self._key_locks.setdefault(sender, asyncio.Lock())
        async with lock:
            nonce = self._nonces.get(sender)
            if nonce is None:
                nonce = (await self.account(key.address)).nonce
            tx = sign_tx(key, await self.chain_id(), nonce, call)
            inclusion = await self._watcher.expect(tx_hash(tx)) if wait else None
            try:
                outcome = await self.broadcast(tx, wait=False)
            except BaseException:
                self._nonces.pop(sender, None)  # refused, or fate unknown: read it again
                if inclusion is not None:
                    self._watcher.forget(tx_hash(tx))
                raise
            self._nonces[sender] = nonce + 1
        if inclusion is None:
            return outcome
        return _included(await self._watcher.wait(tx_hash(tx), inclusion))

    # --- following -----------------------------------------------------------------------

    async def next_block(self, timeout_s: float) -> None:
        """Wait until the feed brings a block newer than the newest it has, or ``timeout_s``:
        a cheap "the chain may have changed" for pollers (without a live feed, just a sleep)."""
        feed = self._feed
        if feed is None or not feed.live:
            await asyncio.sleep(timeout_s)
            return
        await feed.wait_for(feed.latest + 1, timeout_s)

    async def next_height(self) -> int:
        """A height no later than the next block to be committed: one past the newest block
        the live feed delivered, else one past the node's latest."""
        if self._feed is not None and self._feed.live and self._feed.latest:
            return self._feed.latest + 1
        return (await self.status()).height + 1

    async def follow(self, from_height: int) -> AsyncGenerator[FollowedBlock, None]:
        """Every committed block from ``from_height`` on, in order, each exactly once."""
        height = max(from_height, 1)
        latest = 0
        delay_s = self.poll_interval_s
        if self._feed is not None:
            self._feed.start()
        while True:
            try:
                block = self._feed.get(height) if self._feed is not None else None
                if block is None:
                    if height > latest:
                        latest = await self._await_height(height)
                        if height > latest and (self._feed is None or not self._feed.live):
                            await asyncio.sleep(self.poll_interval_s)
                        continue  # the wait may have brought the block in the feed
                    block = await self._fetch_block(height)
            except NodeUnavailable:
                await asyncio.sleep(delay_s)  # the node may be restarting: back off, retry
                delay_s = min(delay_s * 2, 2.0)
                continue
            except RpcError as exc:
                if _HEIGHT_NOT_YET not in exc.data:
                    raise
                latest = 0  # failed over to a node a block or two behind: wait for it
                await asyncio.sleep(self.poll_interval_s)
                continue
            delay_s = self.poll_interval_s
            yield block
            height += 1

    async def _await_height(self, height: int) -> int:
        """The latest committed height, once it reaches ``height`` or the wait is over: with
        the feed live, until it delivers ``height`` (at most FEED_SILENCE_S, then the node is
        asked); otherwise by one ``status`` request."""
        feed = self._feed
        if feed is not None and feed.live:
            if await feed.wait_for(height, FEED_SILENCE_S):
                return feed.latest
            if feed.live:  # silent for that long: ask, in case the feed missed something
                return max(feed.latest, (await self.status()).height)
        return (await self.status()).height

    async def _fetch_block(self, height: int) -> FollowedBlock:
        header = await self.block(height)
        results = await self.block_results(height)
        if (header.height, results.height) != (height, height):
            raise BadResponse(f"asked for block {height}, got {header.height}/{results.height}")
        return followed_block(header, results)


def _result_of(method: str, document: Any) -> Any:
    """The ``result`` of a JSON-RPC response; RpcError for its ``error``."""
    if not isinstance(document, dict):
        raise BadResponse(f"{method}: expected a JSON-RPC response object")
    if "error" in document:
        error_object = document["error"] or {}
        raise RpcError(
            int(error_object.get("code", 0)),
            str(error_object.get("message", "")),
            str(error_object.get("data", "")),
        )
    if "result" not in document:
        raise BadResponse(f"{method}: response has neither result nor error")
    return document["result"]


def _included(outcome: TxOutcome) -> TxOutcome:
    if outcome.result.code != 0:
        raise TxRefused(
            code=outcome.result.code,
            log=outcome.result.log,
            tx_hash=outcome.hash,
            stage="block",
            height=outcome.height,
        )
    return outcome


class _InclusionWatcher:
    """Follows blocks while anyone waits for a transaction, resolving their futures."""

    def __init__(self, client: ChainClient) -> None:
        self._client = client
        self._waiting: dict[bytes, asyncio.Future[TxOutcome]] = {}
        self._task: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()

    async def expect(self, hash_: bytes) -> asyncio.Future[TxOutcome]:
        """Register ``hash_`` before its transaction is sent; returns the future to wait on."""
        future: asyncio.Future[TxOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[hash_] = future
        async with self._start_lock:
            if self._task is None or self._task.done():
                try:
                    start = await self._client.next_height()  # read after registering
                except BaseException:
                    self._waiting.pop(hash_, None)
                    raise
                self._task = asyncio.create_task(self._follow(start))
        return future

    def forget(self, hash_: bytes) -> None:
        self._waiting.pop(hash_, None)

    async def wait(self, hash_: bytes, future: asyncio.Future[TxOutcome]) -> TxOutcome:
        timeout_s = self._client.inclusion_timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise InclusionTimeout(hash_, timeout_s) from None
        finally:
            self.forget(hash_)

    async def _follow(self, start: int) -> None:
        try:
            async with aclosing(self._client.follow(start)) as blocks:
                async for block in blocks:
                    for index, hash_ in enumerate(block.tx_hashes):
                        future = self._waiting.pop(hash_, None)
                        if future is not None and not future.done():
                            result = block.tx_results[index]
                            future.set_result(TxOutcome(hash_, block.height, index, result))
                    if not self._waiting:
                        return
        except Exception as exc:  # hand the failure to everyone waiting, then stop
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(exc)
            self._waiting.clear()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
