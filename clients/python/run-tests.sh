#!/usr/bin/env bash
# Runs the Python client's tests against a real `floe serve`.
#
# Creates (or reuses) a venv at target/pyvenv in the repository root, installs pytest, ruff,
# mypy and this package in editable mode, runs `ruff check`, `ruff format --check` and
# `mypy --strict` (pyproject.toml), then pytest -q. FLOE_BIN names the server binary; without it the
# tests build one with `cargo build -p floe`. Extra arguments go to pytest.
# Exits with pytest's code, except that "no tests collected" (5) is a failure too.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/pyvenv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "run-tests: creating $venv" >&2
  "$python" -m venv "$venv" || {
    echo "run-tests: '$python -m venv' failed; on Debian: apt-get install python3-venv" >&2
    exit 1
  }
fi
# Quiet, and skipped when already installed: reruns start at once.
if ! "$venv/bin/python" -c 'import pytest, pytest_timeout, floe_client, mypy, ruff' 2>/dev/null \
   || [ "$("$venv/bin/python" -c 'import floe_client, os; print(os.path.realpath(floe_client.__file__))')" \
        != "$(realpath "$here/src/floe_client/__init__.py")" ]; then
  echo "run-tests: installing pytest, ruff, mypy and floe-client (editable) into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here[test,lint]"
fi

if [ -n "${FLOE_BIN:-}" ] && [ "${FLOE_BIN#/}" = "$FLOE_BIN" ]; then
  # A relative FLOE_BIN is relative to the repository root (as ./scripts/test sets it).
  FLOE_BIN="$root/$FLOE_BIN"
  export FLOE_BIN
fi

cd "$here"
# Lints first: the package is typed (py.typed), so its types are part of its interface.
"$venv/bin/ruff" check src tests
"$venv/bin/ruff" format --check src tests
"$venv/bin/mypy" src
set +e
"$venv/bin/python" -m pytest -q "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "run-tests: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$code"
