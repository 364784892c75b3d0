"""Errors of the data path.

The tree::

    DataPathError                 any refusal of the data path
    ├── DecodeError               bytes that are not a valid canonical record
    ├── InvalidParameters         layout / erasure / PoDR² parameters out of range
    │   └── BadTag                a stored PoDR² tag that is not a point (names its fragment)
    ├── InvalidKey                a key, address, key file or signature that is malformed
    ├── BadSignature              a well-formed signature that does not verify
    ├── NotEnoughFragments        fewer than k usable fragments of a segment
    ├── HashMismatch              bytes whose SHA-256 is not the expected one
    ├── MerkleProofMismatch       an inclusion proof that does not lead to the root
    └── BadProof                  a PoDR² proof or proof of possession that does not verify

Every message says what was wrong, with the offending value where that is safe to print.
"""


class DataPathError(Exception):
    """Base of every error raised by deoss.core."""


class DecodeError(DataPathError):
    """Bytes are not a valid canonical encoding of the expected record."""


class InvalidParameters(DataPathError):
    """A layout, erasure or PoDR² parameter is out of its allowed range."""


class BadTag(InvalidParameters):
    """A PoDR² tag read for a proof is not a 48-byte compressed G1 point."""

    def __init__(self, message: str, *, fragment_hash: bytes, index: int) -> None:
        super().__init__(message)
        self.fragment_hash = fragment_hash
        self.index = index


class InvalidKey(DataPathError):
    """A key, address, key file or signature is malformed."""


class BadSignature(DataPathError):
    """A signature is well formed but does not verify for the message and key."""


class NotEnoughFragments(DataPathError):
    """Fewer than k distinct, valid fragments were given for a segment."""


class HashMismatch(DataPathError):
    """Data does not hash to the value it was declared with."""


class MerkleProofMismatch(DataPathError):
    """An inclusion proof does not lead from the leaf to the root."""


class BadProof(DataPathError):
    """A PoDR² proof, or a tag key's proof of possession, does not verify."""
