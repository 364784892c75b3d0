"""The gateway's pure parts: settings, Range parsing, the segment planner used while spooling."""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deoss.core.layout import LayoutParams, SegmentPlan, plan_object
from deoss.services.common.config import ConfigError
from deoss.services.common.ranges import ByteRange, UnsatisfiableRange, parse_range
from deoss.services.gateway.settings import DEFAULT_MAX_OBJECT_BYTES, load_settings
from deoss.services.gateway.spooling import SegmentPlanner

SMALL = LayoutParams(segment_size=64, data_shards=4, parity_shards=2)


def test_settings_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[service]\nkey = "keys/gw.toml"\ndata_dir = "gw"\n')
    settings = load_settings(config)
    assert (tmp_path / "keys" / "gw.toml", tmp_path / "gw") == (
        settings.key_path,
        settings.data_dir,
    )
    assert (tmp_path / "gw" / "spool", tmp_path / "gw" / "addr") == (
        settings.spool_path,
        settings.addr_path,
    )
    assert (DEFAULT_MAX_OBJECT_BYTES, 500, 12, "127.0.0.1:8080") == (
        settings.max_object_bytes,
        settings.hedge_after_ms,
        settings.fragment_parallelism,
        settings.listen,
    )


def test_settings_gateway_section_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nspool_dir = "/var/spool/deoss"\nhedge_after_ms = 20\n')
    monkeypatch.setenv("DEOSS_GATEWAY_MAX_OBJECT_BYTES", "1000")
    settings = load_settings(config)
    assert (Path("/var/spool/deoss"), 20, 1000) == (
        settings.spool_path,
        settings.hedge_after_ms,
        settings.max_object_bytes,
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[gateway]\nhedge_after_ms = 0\n", "gateway.hedge_after_ms"),
        ("[gateway]\nsegment_size = 4096\n", "gateway.segment_size"),
        ("[gateway]\nmax_objet_bytes = 1\n", "gateway.max_objet_bytes"),
        ('[service]\nchain = "ftp://x"\n', "service.chain"),
        ('[service]\nlisten = "nowhere"\n', "service.listen"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=named):
        load_settings(config)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-5", ByteRange(95, 99)),
        ("bytes=-500", ByteRange(0, 99)),
        ("bytes=90-1000", ByteRange(90, 99)),
        ("Bytes = 1-2", ByteRange(1, 2)),
    ],
)
def test_ranges_that_fit_a_100_byte_object(header: str | None, expected: ByteRange | None) -> None:
    assert expected == parse_range(header, 100)


@pytest.mark.parametrize(
    "header", ["bytes=100-", "bytes=5-4", "bytes=-0", "bytes=a-b", "bytes=1-2,4-5", "lines=1-2", ""]
)
def test_ranges_that_do_not(header: str) -> None:
    with pytest.raises(UnsatisfiableRange) as refused:
        parse_range(header, 100)
    assert 100 == refused.value.size


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("bytes=\u00b2-5", "ASCII digits"),
        ("bytes=1-\u0665", "ASCII digits"),  # an Arabic-Indic five
        ("bytes=+1-5", "ASCII digits"),
        ("bytes=1_0-20", "ASCII digits"),
        ("bytes=" + "9" * 5000 + "-", "at most 19 digits"),
        ("bytes=0-" + "9" * 5000, "at most 19 digits"),
        ("bytes=-" + "9" * 5000, "at most 19 digits"),
        ("bytes=" + "0" * 20 + "1-2", "at most 19 digits"),
    ],
)
def test_range_positions_are_a_few_ascii_digits(header: str, why: str) -> None:
    """Numbers int() would choke on (or spend time on) are refused with a message, never a
    ValueError; the message shows a bounded part of the header."""
    with pytest.raises(UnsatisfiableRange) as refused:
        parse_range(header, 100)
    assert why in str(refused.value)
    assert len(str(refused.value)) < 200


def test_the_largest_positions_still_parse() -> None:
    """19 digits are accepted: an end beyond the object is clamped, a start beyond it is 416."""
    assert ByteRange(5, 99) == parse_range("bytes=5-" + "9" * 19, 100)
    assert ByteRange(0, 99) == parse_range("bytes=-" + "9" * 19, 100)
    with pytest.raises(UnsatisfiableRange):
        parse_range("bytes=" + "9" * 19 + "-", 100)


@given(st.binary(max_size=400), st.integers(min_value=1, max_value=97))
def test_planning_while_spooling_agrees_with_planning_the_file(data: bytes, chunk: int) -> None:
    """Planning segments as the spool file grows gives the plan (and fid) of planning it whole."""

    async def plan_chunks(path: Path) -> list[SegmentPlan]:
        planner = SegmentPlanner(path, SMALL, asyncio.Semaphore(1))
        with open(path, "wb") as spool:
            for at in range(0, len(data), chunk):
                spool.write(data[at : at + chunk])
                spool.flush()
                await planner.written(spool.tell())
        return await planner.finish(len(data))

    with tempfile.TemporaryDirectory() as directory:  # not tmp_path: one file per example
        planned = asyncio.run(plan_chunks(Path(directory) / "spool"))
    assert plan_object(io.BytesIO(data), SMALL).segments == planned
