"""Integer path and query parameters of every service, parsed strictly.

pydantic's lax ``int`` accepts ``+5``, ``5_0`` and `` 5``, and FastAPI's ``int`` no upper bound:
``/deals/999999999999999999999999999999`` then overflowed in the chain client's encoding (a
500). These types take 1 to 19 ASCII digits and the range of the field they end up in, so
anything else is a 400 naming the parameter before a route runs. Use them as
``deal_id: Uint63`` or ``Annotated[Uint63, Query(description=...)]``.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge, Lt
from pydantic import BeforeValidator

__all__ = ["MAX_DIGITS", "Uint16", "Uint32", "Uint63", "ascii_digits"]

MAX_DIGITS = 19  # 2^63 - 1 has 19 digits


def ascii_digits(value: Any) -> Any:
    """``value`` unchanged if it is not text or is 1 to ``MAX_DIGITS`` ASCII digits."""
    if isinstance(value, str) and not (
        0 < len(value) <= MAX_DIGITS and value.isascii() and value.isdigit()
    ):
        shown = value[:40] + ("…" if len(value) > 40 else "")
        raise ValueError(f"expected 1 to {MAX_DIGITS} ASCII digits, got {shown!r}")
    return value


_DIGITS = BeforeValidator(ascii_digits)  # last in Annotated: it runs before int parsing

Uint63 = Annotated[int, Ge(0), Lt(2**63), _DIGITS]  # deal and order ids, heights, sizes
Uint32 = Annotated[int, Ge(0), Lt(2**32), _DIGITS]  # segment indices, assignment attempts
Uint16 = Annotated[int, Ge(0), Lt(2**16), _DIGITS]  # fragment indices
