"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from deoss.core.layout import LayoutParams


@st.composite
def layout_params(draw: st.DrawFn) -> LayoutParams:
    """Small layouts, so that objects span many segments and every boundary is reachable."""
    k = draw(st.integers(1, 8))
    m = draw(st.integers(1, 8))
    units = draw(st.integers(1, 64))
    return LayoutParams(segment_size=k * units, data_shards=k, parity_shards=m)
