"""Fixtures for the tests that start real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class Launcher:
    """Starts ``deoss`` processes with their output in log files; kills what is left."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp_path / f"{name}-{len(self.started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "deoss", *args], stdout=log, stderr=subprocess.STDOUT
            )
        self.started.append((process, log_path))
        return process

    def wait_for_file(self, path: Path, process: subprocess.Popen[bytes]) -> str:
        deadline = time.monotonic() + 30
        while not path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{path} never appeared (exit {process.poll()}):\n{self.logs()}")
            time.sleep(0.05)
        return path.read_text().strip()

    def logs(self) -> str:
        return "\n".join(f"--- {log}\n{log.read_text()}" for _, log in self.started)

    def kill_all(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    started = Launcher(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()
