#!/usr/bin/env bash
# SLURM array job: one hpo worker per array task, each on its own GPU, all sharing one study.
#
#   1. once, from any machine that reaches the database:
#        hpo create studies/mystudy.toml --storage "$HPO_STORAGE"
#   2. submit the workers (8 here; each runs trials until the study-wide budget is used):
#        sbatch --array=0-7 deploy/slurm.sh mystudy
#
# HPO_STORAGE must name a server every node reaches, e.g.
#   export HPO_STORAGE=postgresql+psycopg://hpo:secret@db.internal:5432/hpo
#SBATCH --job-name=hpo-worker
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=12:00:00
#SBATCH --output=hpo-worker-%A_%a.log
set -euo pipefail
study=${1:?usage: sbatch --array=0-N deploy/slurm.sh STUDY_NAME}
: "${HPO_STORAGE:?set HPO_STORAGE to the shared database URL}"
# SLURM sets CUDA_VISIBLE_DEVICES to the task's GPU; the task id keeps samplers apart.
exec hpo worker "$study" --storage "$HPO_STORAGE" \
  --worker-index "${SLURM_ARRAY_TASK_ID:-0}" --threads "${SLURM_CPUS_PER_TASK:-4}" --quiet
