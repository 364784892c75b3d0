"""Ed25519 account keys, addresses and signatures.

An account is an Ed25519 key pair (libsodium through PyNaCl). Its address is the 32-byte public
key written in bech32 with the human-readable part ``deoss`` (64 characters, lowercase, with a
6-character checksum that catches any single typo), so anyone holding an address can check that
account's signatures without a lookup.

Key files hold the 32-byte seed in a small TOML-like text. This module only renders and parses
that text; writing it with mode 0600 and refusing files readable by others is done by
``deoss.keyfile``, which owns the disk.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, NewType

import bech32
import msgspec
import nacl.exceptions
import nacl.signing

from deoss.core.errors import BadSignature, InvalidKey

__all__ = [
    "ADDRESS_HRP",
    "Address",
    "KeyPair",
    "PublicKeyBytes",
    "SignatureBytes",
    "address_of",
    "parse_address",
    "parse_key_file",
    "render_key_file",
    "verify",
]

ADDRESS_HRP = "deoss"
PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64

Address = NewType("Address", str)
PublicKeyBytes = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
SignatureBytes = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]

_KEY_FILE_HEADER = "# DeOSS account key. Keep this file secret: it controls the account.\n"


@lru_cache(maxsize=65536)
def address_of(public_key: bytes) -> Address:
    """Return the bech32 address of a 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKey(f"public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    words = bech32.convertbits(public_key, 8, 5, True)
    if words is None:
        raise InvalidKey("public key cannot be converted to bech32 words")
    return Address(bech32.bech32_encode(ADDRESS_HRP, words))


@lru_cache(maxsize=65536)
def parse_address(text: str) -> bytes:
    """Return the public key named by an address.

    Raises:
        InvalidKey: wrong prefix, bad checksum, mixed case or wrong length.
    """
    if not isinstance(text, str) or not text:
        raise InvalidKey("address is empty")
    if text != text.lower():
        raise InvalidKey(f"address {text!r} must be lowercase")
    hrp, words = bech32.bech32_decode(text)
    if hrp is None or words is None:
        raise InvalidKey(f"address {text!r} is not valid bech32 (bad character or checksum)")
    if hrp != ADDRESS_HRP:
        raise InvalidKey(f"address {text!r} has prefix {hrp!r}, expected {ADDRESS_HRP!r}")
    key = bech32.convertbits(words, 5, 8, False)
    if key is None or len(key) != PUBLIC_KEY_SIZE:
        raise InvalidKey(f"address {text!r} does not hold a {PUBLIC_KEY_SIZE}-byte public key")
    return bytes(key)


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature.

    Raises:
        InvalidKey: the key or signature has the wrong size or is not a valid point.
        BadSignature: the signature does not match the message and key.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKey(f"public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidKey(f"signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except nacl.exceptions.BadSignatureError as exc:
        raise BadSignature("signature does not verify") from exc
    except (nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise InvalidKey(f"public key is not a valid Ed25519 key: {exc}") from exc


@dataclass(frozen=True, eq=False)
class KeyPair:
    """An Ed25519 signing key with its public key and address. The seed never shows in repr."""

    seed: bytes = field(repr=False)
    _signing_key: nacl.signing.SigningKey = field(repr=False, compare=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        if len(seed) != SEED_SIZE:
            raise InvalidKey(f"key seed must be {SEED_SIZE} bytes, got {len(seed)}")
        return cls(bytes(seed), nacl.signing.SigningKey(bytes(seed)))

    @classmethod
    def generate(cls) -> KeyPair:
        """A new key from the operating system's random source (libsodium)."""
        return cls.from_seed(bytes(nacl.signing.SigningKey.generate()))

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def address(self) -> Address:
        return address_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached signature of ``message``."""
        return bytes(self._signing_key.sign(message).signature)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyPair) and hmac.compare_digest(self.seed, other.seed)

    def __hash__(self) -> int:
        return hash(self.public_key)


def render_key_file(key: KeyPair) -> str:
    """The text of a key file for ``key``."""
    return f'{_KEY_FILE_HEADER}address = "{key.address}"\nseed = "{key.seed.hex()}"\n'


def parse_key_file(text: str) -> KeyPair:
    """Parse the text of a key file and check that its address matches its seed.

    Raises:
        InvalidKey: missing or malformed fields, or an address that does not match the seed.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        value = value.strip()
        if not sep or len(value) < 2 or value[0] != '"' or value[-1] != '"':
            raise InvalidKey(f'key file line {number}: expected name = "value"')
        values[name.strip()] = value[1:-1]
    if "seed" not in values:
        raise InvalidKey("key file has no seed")
    try:
        seed = bytes.fromhex(values["seed"])
    except ValueError as exc:
        raise InvalidKey("key file seed is not hexadecimal") from exc
    key = KeyPair.from_seed(seed)
    if "address" in values and values["address"] != key.address:
        raise InvalidKey(
            f"key file address {values['address']} does not match its seed ({key.address})"
        )
    return key
