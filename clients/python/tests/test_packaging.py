"""The package installs from source into a fresh venv (hatchling from PyPI) and works there;
the example program runs against a real server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

from support import FloeServer

PACKAGE = Path(__file__).resolve().parents[1]
EXAMPLE = PACKAGE.parents[1] / "examples" / "python" / "get_ids.py"


@pytest.mark.packaging
@pytest.mark.timeout(600)
def test_fresh_venv_install_and_fetch(server: FloeServer, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(PACKAGE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=540,
    )
    assert install.returncode == 0, install.stdout.decode(errors="replace")[-4000:]
    script = textwrap.dedent(
        f"""
        import pathlib, floe_client
        installed = pathlib.Path(floe_client.__file__).resolve()
        assert installed.is_relative_to(pathlib.Path({str(env_dir)!r}).resolve()), installed
        assert (pathlib.Path(floe_client.__file__).parent / "py.typed").exists()
        with floe_client.Client([{server.tcp!r}]) as c:
            ids = c.get_ids(1000)
        with floe_client.HttpClient([{server.http_url!r}]) as h:
            ids += h.get_ids(10)
        assert len(set(ids)) == 1010
        print("ok", floe_client.__version__)
        """
    )
    run = subprocess.run(
        [str(python), "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout.decode(errors="replace")
    assert run.stdout.decode().startswith("ok ")


@pytest.mark.parametrize("http", [False, True])
def test_example_program(server: FloeServer, http: bool) -> None:
    args = ["--http", server.http_url] if http else [server.tcp]
    run = subprocess.run([sys.executable, str(EXAMPLE), "-n", "3", *args], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    lines = run.stdout.decode().splitlines()
    assert len(lines) == 3 and all("zone=1 dc=2 machine=3" in line for line in lines), lines
    assert "3 IDs from" in run.stderr.decode()


def test_example_program_reports_unavailable() -> None:
    run = subprocess.run([sys.executable, str(EXAMPLE), "127.0.0.1:9"], capture_output=True, timeout=60)
    assert run.returncode == 1
    assert "no Floe server could serve the request" in run.stderr.decode()
