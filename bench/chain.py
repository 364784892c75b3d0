"""Benchmark of the chain: transfers and deal cycles per second, block commit latency, and
proof verification inside a block (the last three from bench/ledger.py).

What is measured (every transfer is a signed ``accounts.transfer``; signing happens before
the clock starts; "committed" means in a block that is in the store):

1. Machine only: ``finalize_block`` + ``commit`` of blocks of 1,000 transfers from 50 senders
   (no mempool, no disk): transfers per second, median over the blocks.
2. Embedded driver in-process (DevNode over SQLite in WAL, synchronous=FULL): ``check_tx`` of
   every transfer, then ``produce_block`` until the mempool is empty; transfers per second
   over the whole run, and the check_tx rate alone.
3. Block commit latency: the median time of ``produce_block`` (finalize + commit + store +
   mempool upkeep) for blocks of 1, 100 and 1,000 transfers.
4. Through the RPC of a real ``deoss node chain`` process (blocks every 100 ms): 8 senders,
   each sending its transfers in nonce order with ``broadcast_tx_sync``, all senders at once;
   one transfer per HTTP request, and again in JSON-RPC batches of 100. The clock runs from
   the first send until the last transfer is committed (read back from the chain).

Run from the repository root:

    .venv/bin/python bench/chain.py            # about a minute on 2 cores
    .venv/bin/python bench/chain.py --quick    # smaller runs
    .venv/bin/python bench/chain.py --state-growth-only  # part 5 alone (10^4..10^6)
    .venv/bin/python bench/chain.py --json out.json

The Markdown report goes to stdout, progress to stderr. The benchmark client shares the
machine with the node process in part 4, so that part is a lower bound for the node.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

import ledger  # bench/ledger.py, beside this script
from deoss.chain.calls import sign_tx
from deoss.chain.genesis import ChainParams, Genesis, GenesisAccount
from deoss.chain.machine import StateMachine
from deoss.chain.modules import deals, holdings, space
from deoss.chain.modules.accounts import Transfer
from deoss.chain.types import BlockHeader
from deoss.client.chain import ChainClient
from deoss.core.keys import KeyPair
from deoss.keyfile import read_key_file
from deoss.node.devnode import DevNode
from deoss.node.home import init_home, rpc_addr_path
from deoss.node.store import open_store
from machine import cpu_model  # bench/machine.py, beside this script

CHAIN_ID = "bench"
RECIPIENT = KeyPair.from_seed(b"\x42" * 32).address


def progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def make_keys(count: int) -> list[KeyPair]:
    return [KeyPair.from_seed(i.to_bytes(32, "big")) for i in range(1, count + 1)]


def make_genesis(keys: list[KeyPair]) -> Genesis:
    accounts = [GenesisAccount(address=k.address, balance=10**15) for k in keys]
    return Genesis(chain_id=CHAIN_ID, genesis_time_ns=1, params=ChainParams(), accounts=accounts)


def signed_transfers(keys: list[KeyPair], per_key: int, chain_id: str = CHAIN_ID) -> list[bytes]:
    """Transfers interleaved over the keys, each key's nonces in order."""
    return [
        sign_tx(key, chain_id, nonce, Transfer(to=RECIPIENT, amount=1))
        for nonce in range(per_key)
        for key in keys
    ]


# --- 1. the machine alone ----------------------------------------------------------------


def bench_machine(blocks: int, block_txs: int) -> dict[str, float]:
    keys = make_keys(50)
    machine = StateMachine()
    machine.init_chain(make_genesis(keys))
    txs = signed_transfers(keys, blocks * block_txs // len(keys))
    rates = []
    for height in range(1, blocks + 1):
        chunk = txs[(height - 1) * block_txs : height * block_txs]
        header = BlockHeader(chain_id=CHAIN_ID, height=height, time_ns=height, hash=bytes(32))
        started = time.perf_counter()
        outcome = machine.finalize_block(header, chunk)
        machine.commit()
        rates.append(len(chunk) / (time.perf_counter() - started))
        if any(r.code for r in outcome.tx_results):
            raise RuntimeError("a benchmark transfer failed")
    return {"tx_per_s": statistics.median(rates)}


# --- 5. empty-block time against the size of the state ----------------------------------------


def fill_state(machine: StateMachine, count: int) -> None:
    """``count`` space leases, deals and fragment holdings, written straight into the committed
    state in bulk (not through signed transactions, so that 10^6 of each builds in seconds).

    Each lease and deal has a deadline far in the future (its height-index entry too), so an
    empty block has nothing due: what it costs is what the per-block hooks read regardless.
    The records are opaque bytes of a realistic size; a hook that decoded one would be a bug.
    """
    far = (10**9).to_bytes(8, "big")
    miners_ = [KeyPair.from_seed(b"\x07" * 31 + bytes([i])).public_key for i in range(10)]
    blob = bytes(120)
    bulk: dict[bytes, bytes] = {}
    for i in range(count):
        ident = i.to_bytes(32, "big")
        bulk[space.PREFIX + ident] = blob
        bulk[space.EXPIRY + far + ident] = b""
        bulk[deals.DEAL + i.to_bytes(8, "big")] = blob
        bulk[deals.DEADLINE + far + i.to_bytes(8, "big")] = b""
        hold = holdings.HOLD + miners_[i % len(miners_)] + ident + bytes(6)
        bulk[hold] = blob
    machine.state._committed.update(bulk)


def bench_state_growth(sizes: list[int], blocks: int) -> dict[int, float]:
    """Median ms of an empty block (finalize + commit) with ``size`` leases, deals, holdings."""
    results = {}
    for size in sizes:
        machine = StateMachine()
        machine.init_chain(make_genesis(make_keys(1)))
        fill_state(machine, size)
        times = []
        for height in range(1, blocks + 1):
            header = BlockHeader(chain_id=CHAIN_ID, height=height, time_ns=height, hash=bytes(32))
            started = time.perf_counter()
            machine.finalize_block(header, [])
            machine.commit()
            times.append((time.perf_counter() - started) * 1000)
        results[size] = statistics.median(times)
        progress(f"  {size:,}: {results[size]:.2f} ms")
    return results


# --- 2 and 3. the embedded driver in-process -----------------------------------------------


@contextmanager
def dev_node(directory: Path, keys: list[KeyPair]) -> Iterator[DevNode]:
    node = DevNode(open_store(directory / "chain.sqlite"), genesis=make_genesis(keys))
    try:
        yield node
    finally:
        node.store.close()


def bench_driver(directory: Path, total: int) -> dict[str, float]:
    keys = make_keys(50)
    txs = signed_transfers(keys, total // len(keys))
    with dev_node(directory / "driver", keys) as node:
        started = time.perf_counter()
        for tx in txs:
            if node.check_tx(tx).code:
                raise RuntimeError("check_tx refused a benchmark transfer")
        checked = time.perf_counter()
        while len(node.mempool):
            node.produce_block()
        done = time.perf_counter()
    return {
        "tx_per_s": len(txs) / (done - started),
        "check_tx_per_s": len(txs) / (checked - started),
        "txs": len(txs),
    }


def bench_commit_latency(directory: Path, sizes: list[int], repeats: int) -> dict[int, float]:
    keys = make_keys(50)
    latencies: dict[int, float] = {}
    with dev_node(directory / "latency", keys) as node:
        nonces = dict.fromkeys(range(len(keys)), 0)
        for size in sizes:
            times = []
            for _ in range(repeats):
                for i in range(size):
                    k = i % len(keys)
                    tx = sign_tx(keys[k], CHAIN_ID, nonces[k], Transfer(to=RECIPIENT, amount=1))
                    nonces[k] += 1
                    node.check_tx(tx)
                started = time.perf_counter()
                node.produce_block()
                times.append(time.perf_counter() - started)
            latencies[size] = statistics.median(times) * 1000
    return latencies


# --- 4. through the RPC of a real node process ---------------------------------------------


@contextmanager
def node_process(home: Path, block_ms: int) -> Iterator[str]:
    address = rpc_addr_path(home)
    command = [sys.executable, "-m", "deoss", "node", "chain", "--home", str(home)]
    log = home / "node.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [*command, "--rpc", "127.0.0.1:0", "--block-ms", str(block_ms)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not address.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield "http://" + address.read_text().strip()
    finally:
        process.terminate()
        process.wait(15)


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client: httpx costs more CPU per request than the node
    does, and on a 2-core machine the client would then measure itself, not the node."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> Any:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST / HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return msgspec.json.decode(await self.reader.readexactly(length))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def send_all(url: str, per_key: list[list[bytes]], batch: int) -> None:
    """Each key's transfers in order over its own connection; all keys at once."""

    def request(txs: list[bytes]) -> bytes:
        body = [
            {"jsonrpc": "2.0", "id": i, "method": "broadcast_tx_sync", "params": {"tx": tx}}
            for i, tx in enumerate(base64.b64encode(t).decode() for t in txs)
        ]
        return msgspec.json.encode(body if batch > 1 else body[0])

    async def sender(bodies: list[bytes]) -> None:
        connection = RawHttp(url)
        try:
            for body in bodies:
                answers = await connection.post(body)
                for answer in answers if isinstance(answers, list) else [answers]:
                    if answer.get("error") or answer["result"]["code"]:
                        raise RuntimeError(f"broadcast refused: {answer}")
        finally:
            connection.close()

    requests = [[request(t[i : i + batch]) for i in range(0, len(t), batch)] for t in per_key]
    await asyncio.gather(*(sender(bodies) for bodies in requests))


async def wait_committed(url: str, keys: list[KeyPair], per_key: int) -> None:
    async with ChainClient(url) as client:
        while True:
            nonces = [(await client.account(key.address)).nonce for key in keys]
            if min(nonces) >= per_key:
                return
            await asyncio.sleep(0.02)


def bench_rpc(directory: Path, senders: int, per_key: int, batch: int) -> dict[str, float]:
    home = directory / f"rpc-home-{batch}"
    init_home(home, chain_id=CHAIN_ID, dev_accounts=senders, block_ms=100)
    keys = [read_key_file(home / "keys" / f"dev-{i}.toml") for i in range(senders)]
    per_key_txs = [
        [sign_tx(key, CHAIN_ID, n, Transfer(to=RECIPIENT, amount=1)) for n in range(per_key)]
        for key in keys
    ]
    with node_process(home, block_ms=100) as url:
        started = time.perf_counter()
        asyncio.run(send_all(url, per_key_txs, batch))
        sent = time.perf_counter()
        asyncio.run(wait_committed(url, keys, per_key))
        done = time.perf_counter()
    total = senders * per_key
    return {"tx_per_s": total / (done - started), "send_s": sent - started, "txs": total}


# --- report ----------------------------------------------------------------------------------


def machine_description() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}


def report(results: dict[str, Any]) -> str:
    host, machine, driver = results["host"], results["machine"], results["driver"]
    single, batched = results["rpc_single"], results["rpc_batch"]
    rows = [
        ("machine only: finalize_block + commit, blocks of 1,000 transfers", machine["tx_per_s"]),
        (
            f"embedded driver in-process: check_tx + produce_block ({driver['txs']:,} transfers)",
            driver["tx_per_s"],
        ),
        ("embedded driver in-process: check_tx alone", driver["check_tx_per_s"]),
        (
            f"RPC of a real node, 8 senders, 1 tx per request ({single['txs']:,} committed)",
            single["tx_per_s"],
        ),
        (
            f"RPC of a real node, 8 senders, batches of 100 ({batched['txs']:,} committed)",
            batched["tx_per_s"],
        ),
    ]
    lines = [
        f"Machine: {host['cpu']}, {host['cores']} cores, Python {host['python']}.",
        "",
        "| what | result |",
        "|---|---|",
        *(f"| {what} | {rate:,.0f} tx/s |" for what, rate in rows),
        *(
            f"| produce_block (finalize + commit + store), {size:,} tx | {ms:,.1f} ms |"
            for size, ms in results["commit_latency_ms"].items()
        ),
    ]
    return "\n".join(lines) + "\n"


def report_state_growth(host: dict[str, Any], growth: dict[int, float]) -> str:
    lines = [
        f"Empty block (finalize + commit), median of 20; {host['cpu']}, {host['cores']} cores,"
        f" Python {host['python']}.",
        "",
        "| leases, deals and holdings (each) | empty block |",
        "|---|---|",
        *(f"| {size:,} | {ms:,.2f} ms |" for size, ms in growth.items()),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--state-growth-only",
        action="store_true",
        help="only part 5: empty-block time at 10^4..10^6 leases, deals and holdings",
    )
    options = parser.parse_args()
    scale = 1 if options.quick else 3
    results: dict[str, Any] = {"host": machine_description()}
    growth_sizes = [10**3, 10**4] if options.quick else [10**4, 10**5, 10**6]
    if options.state_growth_only:
        progress("empty block against state size ...")
        growth = bench_state_growth(growth_sizes, blocks=20)
        sys.stdout.write(report_state_growth(results["host"], growth))
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        progress("machine only ...")
        results["machine"] = bench_machine(blocks=2 * scale, block_txs=1000)
        progress("embedded driver ...")
        results["driver"] = bench_driver(directory, total=2000 * scale)
        progress("commit latency ...")
        results["commit_latency_ms"] = bench_commit_latency(directory, [1, 100, 1000], 3)
        progress("RPC, one tx per request ...")
        results["rpc_single"] = bench_rpc(directory, senders=8, per_key=125 * scale, batch=1)
        progress("RPC, batches of 100 ...")
        results["rpc_batch"] = bench_rpc(directory, senders=8, per_key=250 * scale, batch=100)
        progress("deal cycles in-process ...")
        results["deal_cycles"] = ledger.bench_deal_cycles(count=100 * scale, per_block=50)
        progress("deal cycles through the RPC ...")
        results["deal_cycles_rpc"] = ledger.bench_deal_cycles_rpc(
            directory, count=50 * scale, concurrency=16
        )
        progress("proof verification inside a block ...")
        results["proof_block"] = ledger.bench_proof_block(files_per_miner=70)
    progress("empty block against state size ...")
    results["state_growth_ms"] = bench_state_growth(growth_sizes, blocks=20)
    sys.stdout.write(report(results))
    sys.stdout.write("\n" + report_state_growth(results["host"], results["state_growth_ms"]))
    sys.stdout.write(
        "\n"
        + ledger.render(results["deal_cycles"], results["deal_cycles_rpc"], results["proof_block"])
        + "\n"
    )
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
