"""The study driver: sampler and pruner from the spec, create or resume a stored study, run it.

The study stores its own study file (``hpo_study_file``) and the validated spec (``hpo_spec``),
so the database alone is enough to report on it or to join it as a worker.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from typing import TYPE_CHECKING, Any

from hpo import keys
from hpo.config.spec import StudySpec
from hpo.errors import DependencyError, SpecError, StorageError
from hpo.execution.workers import ensure_budget

if TYPE_CHECKING:
    import optuna

SPEC_ATTR = keys.SPEC
FILE_ATTR = keys.STUDY_FILE
BASELINE_ATTR = keys.BASELINE
# Keys that may change between runs of one study without making it a different study.
_RERUN_KEYS = {
    ("study", "n_trials"),
    ("study", "timeout"),
    ("study", "budget"),
    ("study", "race_trials"),
    # how the startup trials not yet run are drawn (the default changed from random draws to a
    # Latin hypercube; a study stored before resumes under either)
    ("sampler", "startup"),
    # where and in what batches validation runs: a smaller evaluation batch after running out
    # of memory, or resuming on a GPU, scores the same rows with the same weights
    ("train", "eval_batch_size"),
    ("train", "device"),
}
# Keys that decide whether a model may load, not what is learned: a rerun may turn them on.
_LOAD_KEYS = {("model", "allow_pickle"), ("model", "trust_remote_code")}


def build_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler named in ``[sampler]``, seeded when a seed is given, its startup trials
    spread by a Latin hypercube unless ``sampler.startup`` is random; with ``study.screen``,
    wrapped to re-run the best screened configurations in full; with ``study.race_trials``,
    wrapped to re-run the leading configurations at the end.

    ``seed_offset`` (the number of trials already stored) keeps a resumed study from replaying
    the random draws of its first run, which would propose the same configurations again.
    """
    sampler = _search_sampler(spec, seed_offset)
    if spec.sampler.hypercube and spec.sampler.n_startup_trials > 0:
        _require("scipy", "startup trials from a Latin hypercube (`sampler.startup`)")
        from hpo.search.startup import StratifiedStartSampler, design_seed

        sampler = StratifiedStartSampler(
            sampler,
            rows=spec.sampler.n_startup_trials,
            first=len(_enqueued_first(spec)),  # the design's rows follow them
            seed=design_seed(spec.sampler.seed, spec.study.name),
            names=spec.space.order(),
        )
    if spec.study.screen:
        from hpo.search.screening import ScreeningSampler

        return ScreeningSampler(
            sampler,
            trials=spec.study.screen["trials"],
            keep=spec.study.screen["keep"],
            maximize=spec.direction == "maximize",
        )
    if not spec.study.race_trials:
        return sampler
    from hpo.search.racing import RacingSampler

    return RacingSampler(
        sampler,
        spec.study.n_trials,
        spec.study.race_trials,
        maximize=spec.direction == "maximize",
        budget=spec.study.budget,
    )


def _search_sampler(spec: StudySpec, seed_offset: int) -> optuna.samplers.BaseSampler:
    import optuna

    s = dataclasses.replace(
        spec.sampler, seed=None if spec.sampler.seed is None else spec.sampler.seed + seed_offset
    )
    if s.name == "tpe" and s.fit_on == "largest_rung":
        from hpo.search.fidelity import BudgetTPESampler

        return BudgetTPESampler(seed=s.seed, multivariate=s.multivariate)
    if s.name == "tpe":
        return optuna.samplers.TPESampler(
            seed=s.seed,
            n_startup_trials=s.n_startup_trials,
            multivariate=s.multivariate,
            # conditional dimensions (`when`, LoRA's) are modelled per group of trials that
            # sampled the same dimensions; Optuna's group decomposition needs multivariate
            group=s.multivariate and spec.space.conditional,
            constant_liar=s.constant_liar,
        )
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    needs = {"gp": "scipy", "cmaes": "cmaes"}.get(s.name)
    if needs is not None:
        _require(needs, f"`sampler.name` {s.name!r}")
    if s.name == "gp":
        return optuna.samplers.GPSampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    if s.name == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=s.seed, n_startup_trials=s.n_startup_trials, warn_independent_sampling=False
        )
    return optuna.samplers.QMCSampler(seed=s.seed, warn_independent_sampling=False)


def _require(package: str, what: str) -> None:
    """Raise DependencyError when ``package`` (an optional extra) is not installed."""
    if importlib.util.find_spec(package) is None:
        raise DependencyError(f"{what} needs the package {package}: pip install {package}")


def _enqueued_first(spec: StudySpec) -> list[tuple[str, dict[str, Any]]]:
    """The first trials a new study enqueues, as many as its trial budget holds."""
    return spec.first_trials()[: spec.study.n_trials]


def default_warmup_steps(spec: StudySpec) -> int:
    """Steps before the median pruner may act: past the first evaluation and a third of a trial.

    Early evaluations fall inside the learning-rate warmup, where a good configuration still
    looks bad; pruning there throws good learning rates away.
    """
    third = math.ceil(spec.train.max_steps / 3) if spec.train.max_steps else 0
    return max(spec.train.eval_every + 1, third)


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The pruner named in ``[pruner]``; by default it never prunes on the first evaluation, nor
    for a shortfall within the noise of one evaluation."""
    import optuna

    p = spec.pruner
    first_eval = spec.train.eval_every
    name = p.wrapped if p.name == "patient" else p.name
    inner: optuna.pruners.BasePruner
    if name == "median":
        from hpo.search.pruners import TolerantMedianPruner

        inner = TolerantMedianPruner(
            n_startup_trials=p.n_startup_trials,
            n_warmup_steps=p.n_warmup_steps
            if p.n_warmup_steps is not None
            else default_warmup_steps(spec),
            margin=p.margin,
            proportion=spec.study.proportion,
            learn_rung=p.learn_rung,
        )
    elif name == "successive_halving":
        from hpo.search.pruners import SuccessiveHalvingPruner

        inner = SuccessiveHalvingPruner(
            min_resource=p.min_resource,  # None: each trial's first evaluation past a fifth
            reduction_factor=p.reduction_factor,
            proportion=spec.study.proportion,
            margin=p.margin or 0.0,
            eval_every=first_eval,
            learn_rung=p.learn_rung,
        )
    elif name == "hyperband":
        from hpo.search.pruners import HyperbandPruner

        inner = HyperbandPruner(
            min_resource=p.min_resource or first_eval,
            max_resource=spec.train.max_steps,  # None: each trial's own max_steps
            reduction_factor=p.reduction_factor,
            proportion=spec.study.proportion,
            margin=p.margin or 0.0,
        )
    else:
        return optuna.pruners.NopPruner()
    if p.name == "patient":
        return optuna.pruners.PatientPruner(inner, patience=p.patience, min_delta=p.min_delta)
    return inner


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            if (path.strip("."), key) in _RERUN_KEYS | _LOAD_KEYS:
                continue
            out += _differences(old.get(key), new.get(key), f"{path}{key}.")
        return out
    return [] if old == new else [f"{path.rstrip('.')} (stored {old!r}, now {new!r})"]


def _with_defaults(stored: Any) -> Any:
    """A stored spec with every key this version has, so that a key added since it was stored,
    at its default, is not taken for a change; as stored when this version cannot read it."""
    try:
        return _as_stored(StudySpec.from_dict(stored))
    except (SpecError, TypeError, ValueError):
        return stored


def _as_stored(spec: StudySpec) -> Any:
    """The spec as the study stores it: plain JSON data."""
    return json.loads(json.dumps(spec.to_dict()))


def create_or_resume(
    spec: StudySpec,
    storage: optuna.storages.BaseStorage,
    study_file: str = "",
    extra_attrs: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study with its spec stored, or load it; returns (study, resumed).

    Resuming with a study file that differs in anything but the budget is refused, because the
    stored trials would then describe another experiment; so is resuming on other ``data``
    (its ``fingerprint``).
    """
    import optuna

    from hpo.data.fingerprint import check_same_data

    new = _as_stored(spec)
    try:
        existing = optuna.load_study(study_name=spec.study.name, storage=storage)
    except KeyError:
        existing = None
    if existing is None:
        created = _create(spec, storage, new, study_file, extra_attrs, data)
        if created is not None:
            return created, False
        # another process (a second `hpo run` or `hpo worker` started at the same moment)
        # created it between our look and our create: join it as any resume would
        existing = optuna.load_study(study_name=spec.study.name, storage=storage)
    stored = await_spec(existing, storage)
    if stored is None:
        raise SpecError(f"study {spec.study.name!r} exists but was not created by hpo")
    diff = _differences(_with_defaults(stored), new)
    moved = diff and all(d.startswith("data.files.") for d in diff)
    if moved and data is not None and keys.DATA in existing.user_attrs:
        # the same data files at other paths (a checkout on another machine, a moved
        # folder): the study goes on when their rows are the ones its trials ran on. The
        # stored paths stay, for the workers that read them.
        check_same_data(spec.study.name, existing.user_attrs[keys.DATA], data)
        diff = []
        new["data"]["files"] = stored["data"]["files"]
    if diff:
        raise SpecError(
            f"study {spec.study.name!r} already exists with other settings: {diff[0]}; "
            "use another study.name (--set study.name=...) to start a new study"
        )
    if data is not None:
        check_same_data(spec.study.name, existing.user_attrs.get(keys.DATA), data)
    study = optuna.load_study(
        study_name=spec.study.name,
        storage=storage,
        sampler=build_sampler(spec, seed_offset=len(existing.get_trials(deepcopy=False))),
        pruner=build_pruner(spec),
    )
    study.set_user_attr(SPEC_ATTR, new)  # the budget may have changed
    if data is not None and keys.DATA not in existing.user_attrs:  # stored before hpo kept it
        study.set_user_attr(keys.DATA, data)
    ensure_budget(study, spec.study.n_trials, _ahead(spec))
    return study, True


def _create(
    spec: StudySpec,
    storage: optuna.storages.BaseStorage,
    new: Any,
    study_file: str,
    extra_attrs: dict[str, Any] | None,
    data: dict[str, Any] | None,
) -> optuna.Study | None:
    """Create the study with its attributes and first trials; None when another process
    created one by that name first.

    The spec is stored last: a study that has it is complete (its first trials and slots are
    queued), so a process that joins it never queues slots of its own beside the creator's.
    """
    import optuna
    from optuna.exceptions import DuplicatedStudyError

    try:
        study = optuna.create_study(
            study_name=spec.study.name,
            storage=storage,
            direction="maximize" if spec.direction == "maximize" else "minimize",
            sampler=build_sampler(spec),
            pruner=build_pruner(spec),
        )
    except DuplicatedStudyError:
        return None
    study.set_user_attr(FILE_ATTR, study_file)
    if data is not None:
        study.set_user_attr(keys.DATA, data)
    for key, value in (extra_attrs or {}).items():
        study.set_user_attr(key, value)
    for origin, params in _enqueued_first(spec):
        # claimed before the empty slots; the report compares the best with the recipe
        study.enqueue_trial(params, user_attrs={keys.FIRST_TRIAL: origin}, skip_if_exists=False)
    ensure_budget(study, spec.study.n_trials, _ahead(spec))
    study.set_user_attr(SPEC_ATTR, new)
    return study


# How long a process that finds a study without its spec waits for the creator to store it:
# seconds with nothing new written (the creator queues its trials meanwhile, which may take
# longer on a remote database; each one written restarts the wait).
SPEC_WAIT_SECONDS = 5.0


def await_spec(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    quiet_seconds: float = SPEC_WAIT_SECONDS,
    poll: float = 0.2,
) -> Any:
    """The spec stored in ``study``; when there is none yet, waits while its creator (another
    process that created it a moment ago) is still writing, and None if none comes."""
    import time

    stored = study.user_attrs.get(SPEC_ATTR)
    study_id = storage.get_study_id_from_name(study.study_name)
    last = -1
    quiet_since = time.monotonic()
    while stored is None and time.monotonic() - quiet_since < quiet_seconds:
        time.sleep(poll)
        stored = storage.get_study_user_attrs(study_id).get(SPEC_ATTR)
        written = len(storage.get_all_trials(study_id, deepcopy=False))
        if written != last:
            last, quiet_since = written, time.monotonic()
    return stored


def _ahead(spec: StudySpec) -> int | None:
    """Empty slots a study keeps queued: all of ``n_trials`` up front, or one at a time when a
    ``study.budget`` decides how many trials run."""
    return 1 if spec.study.budget else None


def load_stored(
    name: str, storage: optuna.storages.BaseStorage, worker_index: int = 0
) -> tuple[optuna.Study, StudySpec]:
    """Load a study and the spec stored in it, by name alone.

    ``worker_index`` moves the sampler's seed so parallel workers do not draw the same points.
    """
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        known = ", ".join(names[:20]) if names else "none"
        raise StorageError(
            f"no study named {name!r} in this storage; studies there: {known}"
        ) from None
    raw = await_spec(study, storage)  # `hpo create` may be storing it this moment
    if raw is None:
        raise SpecError(f"study {name!r} was not created by hpo: it stores no study file")
    try:
        spec = StudySpec.from_dict(raw)
    except SpecError as exc:  # its settings, not the user's file: another hpo stored them
        raise SpecError(
            f"study {name!r} stores settings this hpo cannot read ({exc}); it was created by "
            "another version of hpo: use that version, or one that knows these settings"
        ) from None
    offset = len(study.get_trials(deepcopy=False)) + 7919 * worker_index
    sampler = build_sampler(spec, seed_offset=offset)
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=sampler, pruner=build_pruner(spec)
    )
    return study, spec
