"""Transaction errors. Their codes are consensus data: append new ones, never renumber.

The tree::

    TxError (code != 0 in a TxResult; the message goes to the log)
    ├── BadEncoding (1)        bytes that are not a signed transaction
    ├── BadSignature (2)       the signature does not verify for the sender
    ├── WrongChain (3)         the transaction names another chain id
    ├── BadNonce (4)           replayed or skipped nonce
    ├── TooLarge (5)           transaction above the size limit
    ├── UnknownCall (6)        a call type this chain does not know
    ├── InsufficientFunds (7)  balance or stake too low
    ├── InsufficientSpace (8)  purchased space too small, expired or frozen
    ├── NotFound (9)           the named account, bucket, deal, file, miner… does not exist
    ├── Unauthorized (10)      the sender may not do this
    ├── InvalidTransition (11) the record is not in a state that allows this
    ├── AlreadyExists (12)     the name or id is taken
    ├── InvalidArgument (13)   a field is out of range or malformed
    └── BadReport (14)         a placement or tag report breaks a rule

Code 15 is reserved: it was ProofRejected, never raised (a proof that does not verify is not
refused: it is accepted as a FAILED answer and slashed, see audit.apply_submit_proof). Do not
reuse it.

Anything else raised inside a handler is a bug: the machine halts rather than diverge.
"""

from __future__ import annotations

from typing import ClassVar


class TxError(Exception):
    """A transaction refused with a code and a message; state is left as it was."""

    code: ClassVar[int] = 99


class BadEncoding(TxError):
    code = 1


class BadSignature(TxError):
    code = 2


class WrongChain(TxError):
    code = 3


class BadNonce(TxError):
    code = 4


class TooLarge(TxError):
    code = 5


class UnknownCall(TxError):
    code = 6


class InsufficientFunds(TxError):
    code = 7


class InsufficientSpace(TxError):
    code = 8


class NotFound(TxError):
    code = 9


class Unauthorized(TxError):
    code = 10


class InvalidTransition(TxError):
    code = 11


class AlreadyExists(TxError):
    code = 12


class InvalidArgument(TxError):
    code = 13


class BadReport(TxError):
    code = 14


ALL_ERRORS: tuple[type[TxError], ...] = (
    BadEncoding,
    BadSignature,
    WrongChain,
    BadNonce,
    TooLarge,
    UnknownCall,
    InsufficientFunds,
    InsufficientSpace,
    NotFound,
    Unauthorized,
    InvalidTransition,
    AlreadyExists,
    InvalidArgument,
    BadReport,
)
