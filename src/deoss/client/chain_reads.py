"""ChainReader: the chain's queries as typed methods, so no query path is spelled outside it.

Each attribute of ``ChainReader`` is one query of the chain's table (``deoss.chain.calls.QUERIES``,
docs/chain.md "Queries"): its path, the ``QueryArgs`` it takes as typed arguments, and the record
type of its value. Two kinds:

* ``Read``: the value, always (a list, a count, parameters...). Errors pass through unchanged.
* ``Lookup``: one record that may not exist. Calling it gives the record, or None when the chain
  answers NotFound: the one place that rule lives. ``.required(...)`` gives the record and lets
  NotFound through as the ``QueryFailed`` the chain answered (its log names what is missing),
  for callers that report it as it is (the gateway's 404s, the CLI).

Every other failure (``NodeUnavailable``, another ``QueryFailed``, ``BadResponse``) passes through
both kinds exactly as ``ChainClient.query`` raises it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from deoss.chain.errors import NotFound
from deoss.chain.genesis import ChainParams
from deoss.chain.modules.accounts import Account, Treasury
from deoss.chain.modules.audit import Challenge, ChallengeEntry, Round
from deoss.chain.modules.buckets import Bucket, BucketEntry
from deoss.chain.modules.deals import Deal, DealCounts
from deoss.chain.modules.files import FileRecord, ObjectEntry, ObjectRecord
from deoss.chain.modules.gateways import Gateway, GatewayEntry
from deoss.chain.modules.holdings import Holding
from deoss.chain.modules.miners import Miner, MinerEntry
from deoss.chain.modules.restoral import Order
from deoss.chain.modules.schedulers import Scheduler, SchedulerEntry
from deoss.chain.modules.space import Lease
from deoss.chain.query import QueryArgs
from deoss.client.errors import QueryFailed
from deoss.core.podr2 import TagPublicKey

if TYPE_CHECKING:  # the client imports this module to offer ``ChainClient.reads``
    from deoss.client.chain import ChainClient

__all__ = ["BoundLookup", "BoundRead", "ChainReader", "Lookup", "Read"]

P = ParamSpec("P")
R = TypeVar("R")


class BoundRead(Generic[P, R]):
    """A ``Read`` of one reader: ``await reads.miners()``."""

    def __init__(self, query: Read[P, R], reader: ChainReader) -> None:
        self._query = query
        self._reader = reader

    @property
    def path(self) -> str:
        """The query's path, for messages."""
        return self._query.path

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._read(*args, **kwargs)

    async def _read(self, *args: P.args, **kwargs: P.kwargs) -> R:
        query = self._query
        return await self._reader.chain.query(query.path, query.args(*args, **kwargs), query.type_)


class BoundLookup(BoundRead[P, R]):
    """A ``Lookup`` of one reader: the record or None; ``.required`` for the record or the
    chain's NotFound."""

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R | None:  # type: ignore[override]
        try:
            return await self.required(*args, **kwargs)
        except QueryFailed as exc:
            if exc.code == NotFound.code:
                return None
            raise

    async def required(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The record. Raises: QueryFailed, NotFound among others, as the chain answered."""
        return await self._read(*args, **kwargs)


class Read(Generic[P, R]):
    """One query: its ``path``, how its typed arguments become ``QueryArgs``, its value type."""

    bound: type[BoundRead[Any, Any]] = BoundRead

    def __init__(self, path: str, type_: type[R], args: Callable[P, QueryArgs]) -> None:
        self.path = path
        self.type_ = type_
        self.args = args

    @overload
    def __get__(self, reader: None, owner: type[ChainReader]) -> Read[P, R]: ...
    @overload
    def __get__(self, reader: ChainReader, owner: type[ChainReader]) -> BoundRead[P, R]: ...
    def __get__(
        self, reader: ChainReader | None, owner: type[ChainReader]
    ) -> Read[P, R] | BoundRead[P, R]:
        return self if reader is None else BoundRead(self, reader)


class Lookup(Read[P, R]):
    """A query of one record that may be missing (NotFound)."""

    @overload
    def __get__(self, reader: None, owner: type[ChainReader]) -> Lookup[P, R]: ...
    @overload
    def __get__(self, reader: ChainReader, owner: type[ChainReader]) -> BoundLookup[P, R]: ...
    def __get__(
        self, reader: ChainReader | None, owner: type[ChainReader]
    ) -> Lookup[P, R] | BoundLookup[P, R]:
        return self if reader is None else BoundLookup(self, reader)


# --- how typed arguments become QueryArgs (each query reads the fields docs/chain.md names) ---


def _nothing() -> QueryArgs:
    return QueryArgs()


def _address(address: str) -> QueryArgs:
    return QueryArgs(address=address)


def _owner(owner: str) -> QueryArgs:
    return QueryArgs(owner=owner)


def _id(id: int) -> QueryArgs:  # noqa: A002  # the chain's argument name
    return QueryArgs(id=id)


def _fid(fid: str) -> QueryArgs:
    return QueryArgs(fid=fid)


def _key_id(key_id: bytes) -> QueryArgs:
    return QueryArgs(key_id=key_id.hex())


def _bucket(owner: str, name: str) -> QueryArgs:
    return QueryArgs(owner=owner, name=name)


def _object(owner: str, bucket: str, name: str) -> QueryArgs:
    return QueryArgs(owner=owner, bucket=bucket, name=name)


def _owns(owner: str, fid: str) -> QueryArgs:
    return QueryArgs(owner=owner, fid=fid)


def _objects(
    owner: str, bucket: str, *, prefix: str = "", start_after: str = "", limit: int = 100
) -> QueryArgs:
    return QueryArgs(
        owner=owner, bucket=bucket, prefix=prefix, start_after=start_after, limit=limit
    )


def _orders(first_id: int, limit: int) -> QueryArgs:
    return QueryArgs(id=first_id, limit=limit)


class ChainReader:
    """Typed reads of the chain through one ``ChainClient`` (``ChainClient.reads``)."""

    params = Read("/chain/params", ChainParams, _nothing)
    account = Read("/accounts/account", Account, _address)  # zero for an unknown address
    treasury = Read("/accounts/treasury", Treasury, _nothing)
    lease = Lookup("/space/lease", Lease, _address)
    gateway = Lookup("/gateways/gateway", Gateway, _address)
    gateways = Read("/gateways/list", list[GatewayEntry], _nothing)
    authorized_gateways = Read("/gateways/authorized", list[str], _address)  # of a user
    bucket = Lookup("/buckets/bucket", Bucket, _bucket)
    buckets = Read("/buckets/list", list[BucketEntry], _owner)
    scheduler = Lookup("/schedulers/scheduler", Scheduler, _address)
    schedulers = Read("/schedulers/list", list[SchedulerEntry], _nothing)
    tag_key = Lookup("/schedulers/tag_key", TagPublicKey, _key_id)
    miner = Lookup("/miners/miner", Miner, _address)
    miners = Read("/miners/list", list[MinerEntry], _nothing)
    deal = Lookup("/deals/deal", Deal, _id)
    deal_counts = Read("/deals/counts", DealCounts, _nothing)
    file = Lookup("/files/file", FileRecord, _fid)
    object = Lookup("/files/object", ObjectRecord, _object)
    owns = Read("/files/owns", int, _owns)  # how many objects of owner are stored as fid
    objects = Read("/files/objects", list[ObjectEntry], _objects)  # one page, in name order
    holdings = Read("/files/holdings", list[Holding], _address)
    order = Lookup("/restoral/order", Order, _id)
    orders = Read("/restoral/orders", list[Order], _orders)  # one page from first_id on
    round = Lookup("/audit/round", Round, _nothing)  # None before the first round
    challenge = Lookup("/audit/challenge", Challenge, _address)
    challenges = Read("/audit/challenges", list[ChallengeEntry], _nothing)

    def __init__(self, chain: ChainClient) -> None:
        self.chain = chain

    @classmethod
    def queries(cls) -> Iterator[tuple[str, Read[Any, Any]]]:
        """Every query this reader offers, as (attribute name, query)."""
        for name, value in vars(cls).items():
            if isinstance(value, Read):
                yield name, value
