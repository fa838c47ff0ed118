"""PNG plots of a stored study: history, learning curves, importances, one slice per parameter."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from hpo.errors import DependencyError
from hpo.results.export import probe_folder, write_folder
from hpo.results.insights import _quiet_optuna, study_copy, varying_params
from hpo.results.report import infeasible

if TYPE_CHECKING:
    import optuna


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or a DependencyError."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise DependencyError("hpo plot needs matplotlib: pip install 'hpo[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(
    study: optuna.Study, metric: str, out: Path, overwrite: bool = False
) -> tuple[list[Path], list[str]]:
    """PNG plots of a study in the folder out; returns (files written, notes on skipped plots).
    The folder is written whole (``write_folder``): one that holds files is refused unless
    ``overwrite``, which replaces it.

    Plots draw on the stored study so trials keep their numbers; Optuna's plots never show
    WAITING slots, and infeasible trials are left out of slices and importances.
    """
    from optuna.visualization import matplotlib as ov

    plt = pyplot()
    probe_folder(out)
    trials = study.get_trials(deepcopy=False)
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and not infeasible(t)]
    varying, fixed = varying_params(feasible)

    def target(t: FrozenTrial) -> float:
        return float("nan") if infeasible(t) or t.value is None else float(t.value)

    jobs: list[tuple[str, Any]] = []
    notes: list[str] = []
    if feasible:
        jobs.append(("history", lambda: ov.plot_optimization_history(study, target_name=metric)))
    else:
        notes.append("no optimisation history: no complete trial yet")
    if any(t.intermediate_values for t in trials if t.state != TrialState.WAITING):
        jobs.append(("intermediate_values", lambda: ov.plot_intermediate_values(study)))
    else:
        notes.append("no intermediate values: no trial has reported an evaluation")
    if len(feasible) < 2 or not varying:
        why = "fewer than 2 complete trials" if len(feasible) < 2 else "no parameter varied"
        notes.append(f"no parameter importances: {why}")
    else:
        good = study_copy(feasible, study.direction.name.lower())
        jobs.append(("importances", lambda: ov.plot_param_importances(good, params=varying)))
    for name in varying:
        slice_plot = partial(ov.plot_slice, study, [name], target=target, target_name=metric)
        jobs.append((f"slice_{name}", slice_plot))
    if fixed:
        notes.append(f"no slice plot for parameters that never varied: {', '.join(fixed)}")
    files: list[Path] = []

    def write(folder: Path) -> None:
        for stem, draw in jobs:
            with _quiet_optuna():
                axes = draw()
            fig = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            try:
                fig.savefig(folder / f"{stem}.png", dpi=110, bbox_inches="tight")
            finally:
                plt.close(fig)
            files.append(out / f"{stem}.png")

    write_folder(out, write, "the plots", overwrite)
    return files, notes
