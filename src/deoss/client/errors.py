"""Errors of the clients, one tree (as httpx's ``_exceptions.py``)::

    ClientError
    ├── NodeUnavailable     the node could not be reached: refused, reset, timed out, or it
    │                       answered with a server error and no JSON-RPC body
    ├── BadResponse         the node answered something that is not the expected shape
    ├── RpcError            the node answered with a JSON-RPC error object (code, message, data)
    ├── QueryFailed         abci_query answered with a code != 0 (code, log, path)
    ├── TxRefused           the chain refused a transaction: code != 0 at check or in the block
    ├── InclusionTimeout    a checked transaction was not seen in a block in time
    └── PeerError           another service (a miner, a scheduler) did not give what was asked
        ├── PeerUnreachable     no answer: a transport error, or none before the deadline
        ├── PeerRefused         an answer with another status than asked for (``status``)
        └── PeerBadAnswer       an answer of the wrong size, encoding or hash, or malformed

Transport failures are translated in one place per protocol (``deoss.client.chain.
_transport_errors`` for the chain node, ``deoss.client.fetch`` between services), always
``raise … from exc`` so the cause stays attached.
"""

from __future__ import annotations

from deoss.chain.errors import ALL_ERRORS

__all__ = [
    "BadResponse",
    "ClientError",
    "InclusionTimeout",
    "NodeUnavailable",
    "PeerBadAnswer",
    "PeerError",
    "PeerRefused",
    "PeerUnreachable",
    "QueryFailed",
    "RpcError",
    "TxRefused",
]

_CHAIN_ERROR_NAMES = {error.code: error.__name__ for error in ALL_ERRORS}


class ClientError(Exception):
    """Base of every error raised by deoss.client."""


class NodeUnavailable(ClientError):
    """The node could not be reached or did not answer."""


class BadResponse(ClientError):
    """The node's answer is not what the protocol says it should be."""


class RpcError(ClientError):
    """A JSON-RPC error object from the node."""

    def __init__(self, code: int, message: str, data: str) -> None:
        super().__init__(f"{message} ({code}): {data}" if data else f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data
        self.resent = False  # the request went to more than one endpoint (ChainClient)


class QueryFailed(ClientError):
    """abci_query answered with a code != 0."""

    def __init__(self, path: str, code: int, log: str) -> None:
        name = _CHAIN_ERROR_NAMES.get(code, "error")
        super().__init__(f"query {path} refused: {name} (code {code}): {log}")
        self.path = path
        self.code = code
        self.log = log


class TxRefused(ClientError):
    """The chain refused a transaction; ``stage`` is "check" (mempool) or "block"."""

    def __init__(
        self, *, code: int, log: str, tx_hash: bytes, stage: str, height: int | None = None
    ) -> None:
        where = "at check" if stage == "check" else f"in block {height}"
        super().__init__(f"transaction refused {where}: {self.name_of(code)} (code {code}): {log}")
        self.code = code
        self.log = log
        self.tx_hash = tx_hash
        self.stage = stage
        self.height = height

    @staticmethod
    def name_of(code: int) -> str:
        """The deoss.chain.errors class name of a code, or "error"."""
        return _CHAIN_ERROR_NAMES.get(code, "error")


class InclusionTimeout(ClientError):
    """A transaction passed check but was not seen in a block in time (it may land later)."""

    def __init__(self, tx_hash: bytes, timeout_s: float) -> None:
        super().__init__(f"transaction {tx_hash.hex().upper()} not included within {timeout_s:g} s")
        self.tx_hash = tx_hash


class PeerError(ClientError):
    """Another service did not give what was asked, or gave something wrong; the message says
    what was asked of whom, and why it failed."""


class PeerUnreachable(PeerError):
    """The service could not be reached, or did not answer in time."""


class PeerRefused(PeerError):
    """The service answered with another status than asked for; its first bytes are quoted."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class PeerBadAnswer(PeerError):
    """The service answered, but not what the protocol says: the wrong size, encoding or hash,
    a longer answer than allowed, or a malformed document."""
