"""deoss.serving: the server plumbing the node and the services share."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from deoss.serving import bind_socket, parse_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:8080", ("::1", 8080)), ("h:65535", ("h", 65535))],
)
def test_host_port_is_parsed(text: str, expected: tuple[str, int]) -> None:
    assert expected == parse_host_port(text)


@pytest.mark.parametrize("text", ["", "8080", ":80", "host:", "host:port", "host:65536", "h:-1"])
def test_a_bad_host_port_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT") as caught:
        parse_host_port(text)
    assert repr(text) in str(caught.value)


def test_a_socket_that_cannot_bind_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stricter of the two old binds: a failed bind leaves no open socket behind."""
    made: list[socket.socket] = []
    real_socket = socket.socket

    def tracking_socket(*args: object) -> socket.socket:
        sock = real_socket(*args)  # type: ignore[arg-type]
        made.append(sock)
        return sock

    with bind_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        monkeypatch.setattr(socket, "socket", tracking_socket)
        with pytest.raises(OSError):
            bind_socket("127.0.0.1", port)
    assert 1 == len(made) and -1 == made[0].fileno()


def test_services_import_nothing_from_the_node() -> None:
    """Services talk to a node over RPC only: importing every service process pulls in no
    deoss.node module."""
    code = (
        "import sys\n"
        "import deoss.services.gateway.main, deoss.services.miner.main\n"
        "import deoss.services.scheduler.main\n"
        "print(sorted(m for m in sys.modules if m.startswith('deoss.node')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == out.stdout.strip()
