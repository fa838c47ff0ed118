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
pip install -q -e ".[quickstart,dev,lora,postgres,mysql,dashboard,samplers,plots,bench,zh]"
ruff check hpo tests
ruff format --check hpo tests
mypy hpo
# pytest exits 5 when it collects no test: that fails this script, as it should.
pytest "$@"
