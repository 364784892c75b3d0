"""The SDK stands alone: importing every module of deoss.client loads no service, no node and
no web framework (the wire protocol lives in deoss.client; the services import it, never the
other way round)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("deoss.services", "deoss.node", "fastapi", "starlette")

PROBE = f"""
import importlib, pkgutil, sys
import deoss.client
for module in pkgutil.iter_modules(deoss.client.__path__):
    importlib.import_module("deoss.client." + module.name)
loaded = sorted(n for n in sys.modules if n.startswith({FORBIDDEN!r}))
print(",".join(loaded))
"""


def test_importing_the_client_loads_no_service_node_or_web_framework() -> None:
    # a fresh interpreter: this test process has imported the services already
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert "" == done.stdout.strip(), f"deoss.client pulled in: {done.stdout.strip()}"
