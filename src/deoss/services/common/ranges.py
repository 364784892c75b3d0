"""The one parser of ``Range`` headers, shared by the gateway (objects, files) and the miner
(fragments).

Only a single ``bytes=`` range is served: ``first-last``, ``first-`` or ``-suffix``. Numbers are
ASCII digits (``str.isdigit`` would let ``²`` through to a failing ``int()``) of at most
``MAX_DIGITS`` digits, so a header of thousands of digits costs nothing to refuse. Anything else
(another unit, several ranges, a malformed or an out-of-range one) is ``UnsatisfiableRange``:
416 with ``Content-Range: bytes */size`` and a message that says what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from deoss.services.common.errors import RangeNotSatisfiable

__all__ = ["MAX_DIGITS", "ByteRange", "UnsatisfiableRange", "parse_range"]

MAX_DIGITS = 19  # 10^19 > 2^63: any larger position is beyond every object
_OWS = " \t"  # optional whitespace in HTTP (RFC 9110 §5.6.3)


class UnsatisfiableRange(RangeNotSatisfiable):
    """A Range header this object cannot satisfy; the answer carries ``bytes */size``."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size

    def headers(self) -> dict[str, str] | None:
        return {"content-range": f"bytes */{self.size}"}


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range of a Range header over ``size`` bytes (None: all of them).

    Raises:
        UnsatisfiableRange: another unit, several ranges, a malformed one (numbers that are
            not 1 to ``MAX_DIGITS`` ASCII digits), or one that does not overlap the bytes.
    """
    if header is None:
        return None
    shown = repr(header[:60] + ("…" if len(header) > 60 else ""))
    unit, _, spec = header.strip(_OWS).partition("=")
    if unit.strip(_OWS).lower() != "bytes" or not spec.strip(_OWS):
        raise UnsatisfiableRange(f"Range {shown}: expected bytes=START-END", size)
    if "," in spec:
        raise UnsatisfiableRange(f"Range {shown}: only a single range is supported", size)
    first, dash, last = (part.strip(_OWS) for part in spec.partition("-"))
    if not dash or (first == "" and last == ""):
        raise UnsatisfiableRange(f"Range {shown}: expected bytes=START-END", size)
    for number in (first, last):
        if number and not (number.isascii() and number.isdigit()):
            raise UnsatisfiableRange(f"Range {shown}: positions are ASCII digits", size)
        if len(number) > MAX_DIGITS:
            raise UnsatisfiableRange(
                f"Range {shown}: positions have at most {MAX_DIGITS} digits", size
            )
    if first == "":
        if int(last) == 0 or size == 0:
            raise UnsatisfiableRange(f"Range {shown}: empty suffix of {size} bytes", size)
        return ByteRange(max(0, size - int(last)), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if start > end or start >= size:
        raise UnsatisfiableRange(f"Range {shown} does not overlap the {size} bytes", size)
    return ByteRange(start, min(end, size - 1))
