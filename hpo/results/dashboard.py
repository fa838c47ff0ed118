"""optuna-dashboard on the study database: study notes with the study file, and the server.

The dashboard shows what Optuna stores; hpo adds a note per study (its study file and a summary)
and serves the app read-side, without heartbeats, beside workers that keep writing.
"""

from __future__ import annotations

import errno
import importlib.util
import json
from typing import TYPE_CHECKING, Any

from hpo.errors import DependencyError, HpoError
from hpo.search.study import BASELINE_ATTR, FILE_ATTR, SPEC_ATTR

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    import optuna

INSTALL_HINT = "pip install 'hpo[dashboard]'"
STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


class ServerError(HpoError):
    """The dashboard cannot listen on the host and port it was given."""


def require_dashboard() -> None:
    """Fail with an install hint when optuna-dashboard is missing."""
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise DependencyError(f"`hpo dashboard` needs the package optuna-dashboard: {INSTALL_HINT}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _best(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> Any:
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from hpo.results.report import infeasible

    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and not infeasible(t)
    ]
    if not done or len(study.directions) != 1:
        return None
    sign = 1 if study.direction == StudyDirection.MAXIMIZE else -1
    return max(done, key=lambda t: (sign * float(t.value or 0.0), -t.number))


def note_markdown(study: optuna.Study) -> str:
    """The study's note: its study file and a summary of its trials, in Markdown."""
    attrs = study.user_attrs
    spec = attrs.get(SPEC_ATTR) or {}
    metric = str(spec.get("study", {}).get("metric", "value"))
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    order = [s for s in STATE_ORDER if s in counts] + sorted(set(counts) - set(STATE_ORDER))
    lines = [f"## hpo study `{study.study_name}`", "", "### Summary", ""]
    lines += ["| state | trials |", "| --- | ---: |"]
    lines += [f"| {s} | {counts[s]} |" for s in order]
    lines.append(f"| all | {len(trials)} |")
    lines.append("")
    best = _best(study, trials)
    if best is None:
        lines.append(f"No trial has completed yet, so there is no best {metric}.")
    else:
        lines.append(f"**Best {metric}: {_fmt(best.value)}** (trial #{best.number})")
        lines += ["", "| parameter | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(best.params.items())]
    baseline = attrs.get(BASELINE_ATTR)
    if isinstance(baseline, dict) and "accuracy" in baseline:
        lines += [
            "",
            f"Baseline: always answering the majority class {baseline.get('label')!r} scores "
            f"accuracy {_fmt(float(baseline['accuracy']))} on validation.",
        ]
    text = str(attrs.get(FILE_ATTR) or "").strip("\n")
    if not text:  # created by the library, not from a file: show the stored spec instead
        text = "# no study file stored; the validated spec:\n" + json.dumps(spec, indent=2)
    fence = "````" if "```" in text else "```"
    lines += ["", "### Study file", "", f"{fence}toml", text, fence, ""]
    return "\n".join(lines)


def write_study_note(study: optuna.Study) -> bool:
    """Save the study's note for optuna-dashboard; True when it changed, False when unchanged.

    Without optuna-dashboard installed there is nothing to show a note in, so nothing is written.
    """
    try:
        require_dashboard()
    except DependencyError:
        return False
    from optuna_dashboard import get_note, save_note

    text = note_markdown(study)
    if get_note(study) == text:
        return False
    save_note(study, text)
    return True


def hpo_studies(storage: optuna.storages.BaseStorage) -> list[optuna.Study]:
    """The studies in the storage that hpo created (those that store their spec)."""
    import optuna

    return [
        optuna.load_study(study_name=s.study_name, storage=storage)
        for s in storage.get_all_studies()
        if SPEC_ATTR in s.user_attrs
    ]


def refresh_notes(storage: optuna.storages.BaseStorage) -> int:
    """Rewrite the note of every hpo study in the storage; returns how many studies there are."""
    studies = hpo_studies(storage)
    for study in studies:
        write_study_note(study)
    return len(studies)


def open_dashboard_storage(url: str) -> optuna.storages.BaseStorage:
    """Open an existing study database read-side (no heartbeats); never creates a new file."""
    from hpo.execution.storage import open_existing

    return open_existing(url)


def exposure_warning(host: str, port: int) -> str | None:
    """The warning to print before serving on a host other than this machine's loopback; None
    for a loopback one. optuna-dashboard has no login, so listening anywhere else hands the
    study database (study files, data paths, every trial) to whoever can connect."""
    from hpo.execution.proxy import is_loopback

    if is_loopback(host):
        return None
    return (
        "warning: optuna-dashboard has no authentication, so anyone who can reach "
        f"{host}:{port} can read every study and trial in the database"
    )


def bind(app: Any, host: str, port: int) -> WSGIServer:
    """A threaded WSGI server for ``app`` listening on host:port, quiet about each request."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        return make_server(host, port, app, server_class=Server, handler_class=QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServerError(
                f"port {port} on {host} is already in use; pick another with --port"
            ) from None
        why = exc.strerror or str(exc)
        raise ServerError(f"cannot listen on {host}:{port}: {why}") from None


def prepare(url: str, host: str, port: int) -> tuple[WSGIServer, int]:
    """Bind the dashboard to host:port and refresh the study notes; returns (server, studies)."""
    require_dashboard()
    import optuna_dashboard

    storage = open_dashboard_storage(url)
    server = bind(optuna_dashboard.wsgi(storage), host, port)
    try:
        count = refresh_notes(storage)
    except Exception:
        server.server_close()
        raise
    return server, count
