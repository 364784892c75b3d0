"""deoss fid / deoss inspect: what the network would store for a local file, offline."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from deoss.cli.output import console, fail, print_json
from deoss.core.errors import DataPathError
from deoss.core.layout import DEFAULT_PARAMS, LayoutParams, ObjectPlan, hash_object, plan_object

FileArg = Annotated[str, typer.Argument(help="Path of the file, or - for standard input.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
SegmentOpt = Annotated[int, typer.Option(help="Segment size in bytes.")]
DataOpt = Annotated[int, typer.Option("--data-shards", "-k", help="Data fragments per segment.")]
ParityOpt = Annotated[
    int, typer.Option("--parity-shards", "-m", help="Parity fragments per segment.")
]


@contextmanager
def _open_input(name: str, as_json: bool) -> Any:
    if name == "-":
        yield sys.stdin.buffer
        return
    path = Path(name)
    if path.is_dir():
        fail(f"{name} is a directory, not a file", as_json=as_json)
    try:
        handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        fail(f"cannot read {name}: {exc.strerror}", as_json=as_json)
    with handle:
        yield handle


def _params(segment_size: int, k: int, m: int, as_json: bool) -> LayoutParams:
    try:
        return LayoutParams(segment_size=segment_size, data_shards=k, parity_shards=m)
    except DataPathError as exc:
        fail(str(exc), as_json=as_json)


def fid_command(
    file: FileArg,
    as_json: JsonOpt = False,
    segment_size: SegmentOpt = DEFAULT_PARAMS.segment_size,
    data_shards: DataOpt = DEFAULT_PARAMS.data_shards,
    parity_shards: ParityOpt = DEFAULT_PARAMS.parity_shards,
) -> None:
    """Print the fid and size of a file, without uploading anything."""
    params = _params(segment_size, data_shards, parity_shards, as_json)
    with _open_input(file, as_json) as stream:
        fid, size = hash_object(stream, params)
    if as_json:
        print_json({"fid": fid, "size": size, "file": file})
    else:
        sys.stdout.write(f"{fid}  {size}  {file}\n")


def plan_to_json(plan: ObjectPlan) -> dict[str, Any]:
    return {
        "fid": plan.fid,
        "size": plan.size,
        "segment_size": plan.params.segment_size,
        "data_shards": plan.params.data_shards,
        "parity_shards": plan.params.parity_shards,
        "stored_bytes": sum(s.padded_size for s in plan.segments)
        * plan.params.total_shards
        // plan.params.data_shards,
        "segments": [
            {
                "index": s.index,
                "size": s.size,
                "padded_size": s.padded_size,
                "fragment_size": plan.params.fragment_size(s),
                "hash": s.hash.hex(),
                "fragments": [h.hex() for h in s.fragment_hashes],
            }
            for s in plan.segments
        ],
    }


def inspect_command(
    file: FileArg,
    as_json: JsonOpt = False,
    segment_size: SegmentOpt = DEFAULT_PARAMS.segment_size,
    data_shards: DataOpt = DEFAULT_PARAMS.data_shards,
    parity_shards: ParityOpt = DEFAULT_PARAMS.parity_shards,
) -> None:
    """Print the segment and fragment plan of a file: sizes and SHA-256 hashes."""
    params = _params(segment_size, data_shards, parity_shards, as_json)
    with _open_input(file, as_json) as stream:
        plan = plan_object(stream, params)
    info = plan_to_json(plan)
    if as_json:
        print_json(info)
        return
    console.print(f"fid      {plan.fid}")
    console.print(f"size     {plan.size} bytes in {len(plan.segments)} segment(s)")
    console.print(
        f"code     {params.data_shards}+{params.parity_shards} Reed-Solomon, "
        f"segment size {params.segment_size}; {info['stored_bytes']} bytes stored in all"
    )
    for segment in info["segments"]:
        console.print(
            f"segment {segment['index']:>5}  {segment['padded_size']:>10} B  {segment['hash']}"
        )
        for index, digest in enumerate(segment["fragments"]):
            kind = "data  " if index < params.data_shards else "parity"
            console.print(f"  {kind} {index:>3}  {segment['fragment_size']:>10} B  {digest}")
