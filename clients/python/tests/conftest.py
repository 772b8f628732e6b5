"""Fixtures: the `floe` binary and real `floe serve` processes on loopback ports.

The binary comes from $FLOE_BIN; without it, `cargo build -p floe` runs once in the repository
root and `target/debug/floe` (or `$CARGO_TARGET_DIR/debug/floe`) is used.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import DC, MACHINE, ZONE, FloeServer

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def floe_bin() -> str:
    """Path of the `floe` binary under test."""
    given = os.environ.get("FLOE_BIN")
    if given:
        path = Path(given)
        if not path.is_absolute():
            path = REPO_ROOT / path
        if not os.access(path, os.X_OK):
            pytest.fail(f"FLOE_BIN={given} is not an executable file")
        return str(path)
    build = subprocess.run(
        ["cargo", "build", "-p", "floe"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=1800,
    )
    if build.returncode != 0:
        pytest.fail("cargo build -p floe failed:\n" + build.stdout.decode(errors="replace")[-4000:])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return str(target / "debug" / "floe")


StartServer = Callable[..., FloeServer]


@pytest.fixture
def start_server(floe_bin: str, tmp_path: Path) -> Iterator[StartServer]:
    """Starts `floe serve` processes (stopped with SIGTERM at teardown, killed after 10 s).

    Keyword arguments go to :class:`support.FloeServer`; each server gets its own data dir.
    """
    servers: list[FloeServer] = []

    def start(**kwargs: object) -> FloeServer:
        server = FloeServer(floe_bin, tmp_path / f"server{len(servers)}", **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(floe_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FloeServer]:
    """One server with identity zone=1, dc=2, machine=3, shared by a module's tests."""
    s = FloeServer(floe_bin, tmp_path_factory.mktemp("floe"), identity=f"zone={ZONE},dc={DC},machine={MACHINE}")
    s.start()
    yield s
    code = s.stop()
    assert code == 0, f"floe serve exited with {code} after SIGTERM; stderr:\n{s.stderr()}"
