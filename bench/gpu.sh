#!/usr/bin/env bash
# Scaling on a GPU: hpo's search on full SST-2 with a bert-base-sized model, or with
# --arch gpt2 a GPT-2-small-sized decoder (bench/gpu.py).
#
#   bash bench/gpu.sh prepare      here, in the project's virtual environment: writes .gpu/ (the
#                                  packages the GPU machine lacks, as wheels; tokenizer; SST-2)
#   bash bench/gpu.sh [ARGS...]    on the GPU machine, with .gpu/ beside the code: installs the
#                                  wheels into a scratch folder and runs bench/gpu.py (< 8 min)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
    rm -rf .gpu && mkdir -p .gpu/wheels
    # What the GPU image lacks (it has torch, transformers, rich, click, pyarrow, pandas, fsspec),
    # at the versions this project is tested with.
    need=()
    for pkg in optuna sqlalchemy alembic colorlog mako datasets dill multiprocess; do
        need+=("$pkg==$(python -c "import importlib.metadata as m; print(m.version('$pkg'))")")
    done
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .gpu/wheels "${need[@]}"
    python bench/gpu.py --prepare .gpu
    du -sh .gpu
    exit 0
fi

if [ -d .gpu/wheels ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/hpo-site .gpu/wheels/*.whl
    export PYTHONPATH="/tmp/hpo-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
data=()
[ -d .gpu/sst2 ] && data=(--train .gpu/sst2/train.tsv --validation .gpu/sst2/dev.tsv \
    --tokenizer .gpu/tokenizer)
exec timeout 470 python3 bench/gpu.py "${data[@]}" "$@"
