"""deoss put / get / ls / rm through a gateway served by uvicorn on 127.0.0.1 (with the fake
schedulers and miners of the gateway tests) over a served DevNode, via CliRunner."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from deoss.cli.main import app
from deoss.client.chain import ChainClient
from deoss.core.layout import hash_object
from deoss.keyfile import write_key_file
from deoss.node.serve import bind_socket
from deoss.services.gateway.app import create_app
from deoss.services.gateway.service import Gateway
from tests.chain_fixtures import ServedNode
from tests.unit.chain.harness import key
from tests.unit.services.gateway.network import (
    GATEWAY,
    LAYOUT,
    MINERS,
    FakeMiner,
    FakeScheduler,
    Network,
    chain_params,
    gateway_settings,
    start_node,
)

runner = CliRunner()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServedGateway:
    """The gateway app, fake schedulers and miners, served from a background thread."""

    def __init__(self, chain_url: str, tmp_path: Path) -> None:
        self.chain_url = chain_url
        self.tmp_path = tmp_path
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with ChainClient(self.chain_url, poll_interval_s=0.01) as chain:
            network = Network()
            miners = [FakeMiner(name) for name in MINERS]
            schedulers = [FakeScheduler(f"sched{i}", chain, miners) for i in (0, 1)]
            services: list[FakeMiner | FakeScheduler] = [*miners, *schedulers]
            for service in services:
                network.handlers[f"{service.name}.test"] = service.handle
            settings = gateway_settings(self.tmp_path)
            gateway = Gateway(settings, chain=chain, key=key(GATEWAY), transport=network)
            app = create_app(gateway)
            server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
            with bind_socket("127.0.0.1", 0) as sock:
                serving = asyncio.create_task(server.serve(sockets=[sock]))
                while not server.started:
                    await asyncio.sleep(0.01)
                host, port = sock.getsockname()[:2]
                self.url = f"http://{host}:{port}"
                self._ready.set()
                await self._stop.wait()
                server.should_exit = True
                await serving
            await gateway.aclose()

    def start(self) -> ServedGateway:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test gateway did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def gateway_url(tmp_path: Path) -> Iterator[str]:
    node = start_node(tmp_path / "chain.sqlite", chain_params())
    served = ServedNode(node).start()
    gateway = ServedGateway(served.url, tmp_path).start()
    yield gateway.url
    gateway.stop()
    served.stop()
    node.store.close()


def deoss(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_put_ls_get_rm(gateway_url: str, tmp_path: Path) -> None:
    """A file goes in and comes back identical; ls lists it; rm deletes it; then exit 3."""
    key_file = tmp_path / "alice.toml"
    write_key_file(key_file, key("alice"))
    common = ["--gateway", gateway_url, "--key", str(key_file), "--json"]
    data = bytes((7 * j + 3) % 251 for j in range(2 * LAYOUT.segment_size + 99))
    source = tmp_path / "photo.jpg"
    source.write_bytes(data)
    fid, _ = hash_object(io.BytesIO(data), LAYOUT)

    code, out = deoss("put", str(source), "photos/album/photo.jpg", *common)
    assert (0, fid, "SUCCESS") == (code, json.loads(out)["fid"], json.loads(out)["state"])
    code, out = deoss("ls", "photos/album/", *common)
    assert (0, ["album/photo.jpg"]) == (code, [o["name"] for o in json.loads(out)["objects"]])
    code, out = deoss("ls", *common)
    assert (0, [{"name": "photos", "objects": 1}]) == (
        code,
        [{k: b[k] for k in ("name", "objects")} for b in json.loads(out)["buckets"]],
    )
    target = tmp_path / "back.jpg"
    code, out = deoss("get", "photos/album/photo.jpg", "-o", str(target), *common)
    assert (0, data, False) == (
        code,
        target.read_bytes(),
        target.with_name("back.jpg.part").exists(),
    )
    code, out = deoss("get", fid, "-o", str(tmp_path / "part"), "--range", "10-19", *common)
    assert (0, data[10:20]) == (code, (tmp_path / "part").read_bytes())
    assert "bytes 10-19/" in json.loads(out)["content_range"]
    assert 0 == deoss("rm", "photos/album/photo.jpg", *common)[0]
    code, out = deoss("get", "photos/album/photo.jpg", "-o", str(tmp_path / "gone"), *common)
    assert (3, False) == (code, (tmp_path / "gone").exists())
    assert 3 == deoss("rm", "photos/album/photo.jpg", *common)[0]


def test_put_refusals(gateway_url: str, tmp_path: Path) -> None:
    """No bucket named: usage error 2; a missing file or a gateway not authorized: 1."""
    carol = tmp_path / "carol.toml"
    write_key_file(carol, key("carol"))
    source = tmp_path / "f.txt"
    source.write_bytes(b"hello")
    common = ["--gateway", gateway_url, "--key", str(carol), "--json"]
    assert 2 == deoss("put", str(source), *common)[0]
    code, out = deoss("put", str(tmp_path / "missing.txt"), "carols", *common)
    assert 1 == code and "cannot read" in json.loads(out)["error"]["message"]
    code, out = deoss("put", str(source), "carols", *common)
    assert 1 == code and "has not authorized this gateway" in json.loads(out)["error"]["message"]


def test_put_says_what_it_waits_for_and_gives_up_at_its_deadline(tmp_path: Path) -> None:
    """No gateway listening: put tries again, saying so on standard error, until --deadline;
    then exit 1 naming the gateway."""
    key_file = tmp_path / "alice.toml"
    write_key_file(key_file, key("alice"))
    source = tmp_path / "f.txt"
    source.write_bytes(b"hello")
    with bind_socket("127.0.0.1", 0) as sock:  # a port that was free a moment ago
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    args = ["put", str(source), "b/f.txt", "--gateway", url, "--key", str(key_file)]
    result = runner.invoke(app, [*args, "--deadline", "1.5", "--json"])
    assert 1 == result.exit_code
    assert f"cannot reach the gateway at {url}" in json.loads(result.stdout)["error"]["message"]
    assert "upload of b/f.txt" in result.stderr and "trying again in" in result.stderr
