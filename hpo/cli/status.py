"""What `hpo run` and `hpo worker` say about a study's state: its budget and progress, the
line after a stop, a timeout that stopped a worker, and the exit when no trial finished."""

from __future__ import annotations

import sys
from typing import Any

import click

from hpo import keys


def exit_if_nothing_finished(console: Any, study: Any) -> None:
    """Exit 1 when every trial of the study failed: a script or scheduler that runs ``hpo run``
    must not read a study with no result as a success. One finished or pruned trial is a
    result."""
    from optuna.trial import TrialState
    from rich.markup import escape

    trials = study.get_trials(deepcopy=False)
    if not trials or any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        return
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if not failed:
        return
    reason = failed[0].user_attrs.get(keys.FAIL_REASON, "no reason stored")
    console.print(
        f"[red]no trial finished[/]: all {len(failed)} failed; the first (#{failed[0].number}): "
        f"{escape(str(reason))}",
        highlight=False,
    )
    sys.exit(1)


def budget_text(spec: Any) -> str:
    """The study's budget as the user set it: "20 trials" or "20,000 samples"."""
    from hpo.search.budget import describe

    if spec.study.budget:
        ((unit, amount),) = spec.study.budget.items()
        return describe(amount, unit)
    return f"{spec.study.n_trials} trials"


def progress(trials: Any, used: int, spec: Any) -> str:
    """ "3 of 20 trials done", or the spend of a study with a ``study.budget``; ", 1 running"
    for trials still RUNNING (on another worker, or on a dead one that a heartbeat sweep will
    fail and retry): ``used`` counts them against the budget, but none is done."""
    from optuna.trial import TrialState

    from hpo.search import budget

    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    also = f", {running} running" if running else ""
    if spec.study.budget:
        return budget.progress(trials, spec.study.budget) + also
    done = used - running
    if done > spec.study.n_trials:  # an earlier run raised the count with --n-trials
        return (
            f"{done} trials done{also}, past n_trials {spec.study.n_trials}: raise it to run more"
        )
    return f"{done} of {spec.study.n_trials} trials done{also}"


def stopped_line(console: Any, study: Any) -> None:
    """The line after Ctrl-C or SIGTERM, read from the database once the workers recorded their
    trials' ends (the live view's last frame was drawn before): what the study holds."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s: sum(1 for t in trials if t.state == s) for s in TrialState}
    interrupted = sum(
        1 for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(keys.INTERRUPTED)
    )
    given_back = f" ({interrupted} interrupted, to run again)" if interrupted else ""
    console.print(
        f"[yellow]stopped[/]: {count[TrialState.COMPLETE]} complete · "
        f"{count[TrialState.PRUNED]} pruned · {count[TrialState.FAIL]} failed{given_back} "
        "stored; run again to resume",
        highlight=False,
    )


def say_deadline(study: Any, spec: Any) -> None:
    """One line on standard error, even with --quiet (a Slurm or Kubernetes log), when the
    study's timeout stopped this worker before the budget was used: it exits 0 and would
    otherwise leave no word of why it ran nothing."""
    from datetime import datetime, timezone

    from hpo.execution.workers import budget_used, deadline_passed, spend_reached

    deadline = deadline_passed(study)
    used = budget_used(study)
    if deadline is None or used >= spec.study.n_trials or spend_reached(study, spec.study.budget):
        return
    when = datetime.fromtimestamp(deadline, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    limit = f" ({spec.study.timeout:g} s)" if spec.study.timeout is not None else ""
    done = progress(study.get_trials(deepcopy=False), used, spec)
    click.echo(
        f"stopped: study.timeout{limit} passed at {when} with {done}; this worker starts no "
        "more trials (`hpo create` or `hpo run` with the study file starts a new timeout)",
        err=True,
    )
