#!/usr/bin/env bash
# Set up a virtual environment (first run only) and run lint, type checks and the test suite.
# Usage: bash tests/run.sh [pytest args]. HPO_VENV picks another environment folder.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HPO_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
# A CPU build of torch keeps the install small where there is no GPU; an installed torch is kept.
python -c "import torch" 2>/dev/null || pip install -q "torch==2.13.0"
pip install -q -e ".[quickstart,dev,lora,privacy,postgres,mysql,proxy,dashboard,samplers,plots,bench,zh]"
ruff check hpo tests
ruff format --check hpo tests
mypy hpo
# One pytest process per core (pytest-xdist), each with one torch thread: the suite waits on
# worker subprocesses and database servers as much as it computes, and two-thread torch in every
# process oversubscribes a small machine. HPO_TEST_PROCESSES picks another count (0: no xdist).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# pytest exits 5 when it collects no test (with or without xdist): that fails this script.
pytest -n "${HPO_TEST_PROCESSES:-auto}" "$@"
