"""The search: the objective Optuna calls, the study driver (sampler, pruner), the pruners."""
