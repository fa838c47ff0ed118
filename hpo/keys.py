"""Every name hpo stores on a study or a trial, defined once.

These names are part of the database format: studies stored by earlier versions use them, so a
name here never changes. Keep this module free of imports so every layer can read it.
"""

from __future__ import annotations

# ----------------------------------------------------------------- study attributes
SPEC = "hpo_spec"  # the validated spec, as plain data
STUDY_FILE = "hpo_study_file"  # the study file's text, as written
BASELINE = "hpo_baseline"  # the constant-answer baseline of the validation split
BEST = "hpo_best"  # the retraining summary written by `hpo best`
DEADLINE = "hpo_deadline"  # epoch seconds after which no worker starts a trial
# row counts and a content hash of the data the trials ran on (hpo.data.fingerprint)
DATA = "hpo_data"

# ----------------------------------------------------------------- trial attributes
DEVICE = "device"
WORKER = "worker"
STEPS = "steps"
MAX_STEPS = "max_steps"
TRAIN_SAMPLES = "train_samples"
FLOPS = "flops"  # model FLOPs the trial spent (hpo.search.budget)
FULL_TRIAL = "full_trial_cost"  # {samples, flops} of one unpruned trial with nothing frozen
# rows the frozen layers computed, and rows whose states the cache served (hpo.training.frozen)
FROZEN_COMPUTED = "frozen_rows_computed"
FROZEN_SERVED = "frozen_rows_served"
SAMPLES_PER_SECOND = "samples_per_second"
TRAIN_SECONDS = "train_seconds"
EVAL_SECONDS = "eval_seconds"
WALL_SECONDS = "wall_seconds"
SETUP_SECONDS = "setup_seconds"
PEAK_MEMORY_MB = "peak_memory_mb"
TRAINABLE_PARAMETERS = "trainable_parameters"
METRICS = "metrics"  # the final evaluation's metrics
FAIL_REASON = "fail_reason"
OOM_RETRY = "oom_retry"  # the first out-of-memory error and the halved batch that followed
INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM: gives its budget slot back
FIRST_TRIAL = "first_trial"  # on a study's first trials: RECIPE or GIVEN
EVAL_ROWS = "eval_rows"  # units one evaluation scores: the pruners' noise margin
WINDOWED = "windowed_sentences"  # {split: sentences split into windows} (token classification)
EVAL_NOISE = "eval_noise"  # standard error of the last evaluation, where the task measures it
CONSTANT_SCORE = "constant_score"  # the metric of the best constant answer
INFEASIBLE = "infeasible"  # why a trial's configuration cannot run (out of memory twice)
DP_EPSILON = "dp_epsilon"  # the privacy a DP-SGD trial spent: the accountant's epsilon at delta
DP_DELTA = "dp_delta"  # the delta that epsilon is stated at
DP_FROZEN = "dp_frozen_layers"  # layers DP-SGD froze because opacus cannot train them privately
RACE_OF = "race_of"  # a racing trial: the number of the first trial of the configuration it re-runs
RACE_SEED = "race_seed"  # the seed a racing trial trained with
SCREENED = "screened"  # a screen trial (study.screen): the steps it trained, its whole run
SCREEN_OF = "screen_of"  # a kept trial: the number of the screen trial whose configuration it runs

# Constraint names (``Trial.set_constraint``); a value above 0 marks the trial infeasible.
FITS_IN_MEMORY = "fits_in_memory"
WITHIN_EPSILON = "within_target_epsilon"  # epsilon spent minus `privacy.target_epsilon`

# Values of FIRST_TRIAL.
RECIPE, GIVEN = "trainer recipe", "study file"
