"""The deoss command: fid, inspect, keys; --json output and exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deoss.cli.main import app
from deoss.core.layout import LayoutParams, hash_object, plan_object

runner = CliRunner()


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "object.bin"
    path.write_bytes(bytes(range(256)) * 40 + b"tail")
    return path


def test_fid_prints_fid_and_size(sample: Path) -> None:
    fid, size = hash_object(io.BytesIO(sample.read_bytes()))
    result = runner.invoke(app, ["fid", str(sample)])
    assert 0 == result.exit_code
    assert f"{fid}  {size}  {sample}\n" == result.output


def test_fid_json_and_stdin(sample: Path) -> None:
    fid, size = hash_object(io.BytesIO(sample.read_bytes()))
    result = runner.invoke(app, ["fid", "-", "--json"], input=sample.read_bytes())
    assert 0 == result.exit_code
    assert {"fid": fid, "size": size, "file": "-"} == json.loads(result.output)


def test_fid_with_custom_layout(sample: Path) -> None:
    params = LayoutParams(segment_size=1024, data_shards=2, parity_shards=1)
    fid, _ = hash_object(io.BytesIO(sample.read_bytes()), params)
    args = ["fid", str(sample), "--json", "--segment-size", "1024", "-k", "2", "-m", "1"]
    assert fid == json.loads(runner.invoke(app, args).output)["fid"]


def test_inspect_json_lists_every_segment_and_fragment(sample: Path) -> None:
    plan = plan_object(io.BytesIO(sample.read_bytes()), LayoutParams(segment_size=4096))
    result = runner.invoke(app, ["inspect", str(sample), "--json", "--segment-size", "4096"])
    assert 0 == result.exit_code
    info = json.loads(result.output)
    assert (plan.fid, plan.size, 3) == (info["fid"], info["size"], len(info["segments"]))
    assert [s.hash.hex() for s in plan.segments] == [s["hash"] for s in info["segments"]]
    assert [h.hex() for h in plan.segments[2].fragment_hashes] == info["segments"][2]["fragments"]
    assert 1024 == info["segments"][0]["fragment_size"]


def test_inspect_human_output(sample: Path) -> None:
    result = runner.invoke(app, ["inspect", str(sample)])
    assert 0 == result.exit_code
    assert "fid " in result.output and "parity  11" in result.output


@pytest.mark.parametrize("command", ["fid", "inspect"])
def test_missing_file_is_a_clear_error(command: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [command, str(tmp_path / "nope"), "--json"])
    assert 1 == result.exit_code
    assert "cannot read" in json.loads(result.output)["error"]["message"]
    result = runner.invoke(app, [command, str(tmp_path)])
    assert 1 == result.exit_code
    assert "is a directory" in result.output


def test_bad_layout_parameters_are_a_clear_error(sample: Path) -> None:
    result = runner.invoke(app, ["fid", str(sample), "--segment-size", "10", "--json"])
    assert 1 == result.exit_code
    assert "multiple of k=4" in json.loads(result.output)["error"]["message"]


def test_usage_error_exit_code() -> None:
    assert 2 == runner.invoke(app, ["fid"]).exit_code


def test_keys_new_then_show(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    created = runner.invoke(app, ["keys", "new", "--key", str(path), "--json"])
    assert 0 == created.exit_code
    shown = runner.invoke(app, ["keys", "show", "--key", str(path), "--json"])
    assert json.loads(created.output) == json.loads(shown.output)
    assert json.loads(shown.output)["address"].startswith("deoss1")
    assert "seed" not in shown.output


def test_keys_new_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    first = json.loads(runner.invoke(app, ["keys", "new", "--key", str(path), "--json"]).output)
    again = runner.invoke(app, ["keys", "new", "--key", str(path)])
    assert 1 == again.exit_code and "already exists" in again.output
    shown = json.loads(runner.invoke(app, ["keys", "show", "--key", str(path), "--json"]).output)
    assert first == shown
    forced = runner.invoke(app, ["keys", "new", "--key", str(path), "--force", "--json"])
    assert first["address"] != json.loads(forced.output)["address"]


def test_keys_show_refuses_readable_key_and_reports_missing(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    runner.invoke(app, ["keys", "new", "--key", str(path)])
    path.chmod(0o644)
    result = runner.invoke(app, ["keys", "show", "--key", str(path)])
    assert 1 == result.exit_code and "chmod 600" in result.output
    missing = runner.invoke(app, ["keys", "show", "--key", str(tmp_path / "none")])
    assert 1 == missing.exit_code and "deoss keys new" in missing.output


def test_default_key_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEOSS_KEY", str(tmp_path / "env.toml"))
    assert 0 == runner.invoke(app, ["keys", "new"]).exit_code
    assert (tmp_path / "env.toml").exists()
