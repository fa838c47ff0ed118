"""The study driver and objective on the tiny BERT: stored attributes, pruning, failures, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.sampling import Hyperparameters
from hpo.config.spec import StudySpec
from hpo.data.batches import collate
from hpo.errors import SpecError
from hpo.execution.storage import open_storage
from hpo.execution.workers import work
from hpo.search import objective as objective_module
from hpo.search.objective import Objective
from hpo.search.pruners import HyperbandPruner, SuccessiveHalvingPruner, TolerantMedianPruner
from hpo.search.study import (
    FILE_ATTR,
    SPEC_ATTR,
    build_pruner,
    build_sampler,
    create_or_resume,
    load_stored,
)
from tests.conftest import spec_dict


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


def make_spec(tiny_model_dir: Path, sentiment_csv: Path, **sections: dict[str, Any]) -> StudySpec:
    return StudySpec.from_dict(spec_dict(tiny_model_dir, sentiment_csv, **sections))


def run(spec: StudySpec, url: str, objective: Objective | None = None) -> optuna.Study:
    study, _ = create_or_resume(spec, open_storage(url), "# the study file\n")
    work(study, objective or Objective(spec), spec.study.n_trials)
    return study


def test_trials_store_params_attributes_and_the_spec(
    tiny_model_dir, sentiment_csv, storage_url
) -> None:
    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 2})
    run(spec, storage_url)
    study, stored = load_stored("tiny", open_storage(storage_url))
    assert stored == spec
    assert study.user_attrs[FILE_ATTR] == "# the study file\n"
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        assert set(t.params) == {
            "learning_rate", "warmup_ratio", "lr_schedule", "frozen_layers",
            "augmentation_strength", "batch_size", "weight_decay", "seed",
        }  # fmt: skip
        attrs = t.user_attrs
        assert attrs["device"] == "cpu"
        assert attrs["steps"] == attrs["max_steps"] == 30
        # real rows: a short last batch of an epoch counts its rows, not a full batch
        assert 29 * 16 < attrs["train_samples"] <= 30 * 16
        assert attrs["samples_per_second"] > 0
        assert attrs["wall_seconds"] >= attrs["train_seconds"] > 0
        assert attrs["peak_memory_mb"] > 0
        assert t.value == attrs["metrics"]["accuracy"]
        assert sorted(t.intermediate_values) == [10, 20, 30]
    assert "setup_seconds" in trials[0].user_attrs and "setup_seconds" not in trials[1].user_attrs


def test_a_hopeless_trial_is_pruned(tiny_model_dir, sentiment_csv, storage_url) -> None:
    spec = make_spec(
        tiny_model_dir,
        sentiment_csv,
        study={"n_trials": 3},
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
        train={"max_steps": 40, "eval_every": 10},
        space={"learning_rate": {"low": 1e-7, "high": 1e-2, "log": True}},
    )
    study, _ = create_or_resume(spec, open_storage(storage_url))
    study.enqueue_trial({"learning_rate": 4e-3, "frozen_layers": 0})
    study.enqueue_trial({"learning_rate": 5e-3, "frozen_layers": 0})
    study.enqueue_trial({"learning_rate": 1e-7, "frozen_layers": 1})  # cannot learn in 40 steps
    work(study, Objective(spec), 3)
    # enqueued configurations run before the empty budget slots, which stay queued
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 3
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
    ]
    assert trials[2].user_attrs["steps"] < trials[2].user_attrs["max_steps"] == 40
    assert trials[2].params["learning_rate"] == 1e-7
    # the pruners' noise and "learned nothing yet" level: the majority class's validation share
    task = Objective(spec).prepare().task
    assert trials[0].user_attrs["eval_rows"] == len(task.validation)
    assert trials[0].user_attrs["constant_score"] == task.majority_baseline()[1]


def test_a_failing_trial_is_recorded_and_the_study_goes_on(
    tiny_model_dir, sentiment_csv, storage_url, monkeypatch
) -> None:
    real_train = objective_module.train
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA error: an illegal memory access\nwith a long driver trace")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(objective_module, "train", flaky)
    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 3})
    study = run(spec, storage_url)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert (
        trials[1].user_attrs["fail_reason"] == "RuntimeError: CUDA error: an illegal memory access"
    )


def test_resume_runs_only_the_missing_trials(tiny_model_dir, sentiment_csv, storage_url) -> None:
    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 2})
    run(spec, storage_url)
    again = run(spec, storage_url)
    assert len(again.get_trials()) == 2  # nothing left to do
    more = spec.replace("study", n_trials=3)
    study = run(more, storage_url)
    trials = study.get_trials()
    assert len(trials) == 3
    assert trials[2].params != trials[0].params  # the sampler went on, it did not restart
    _, stored = load_stored("tiny", open_storage(storage_url))
    assert stored.study.n_trials == 3


def test_a_new_study_can_start_from_the_trainer_recipe(
    tiny_model_dir, sentiment_csv, storage_url
) -> None:
    wide = {"learning_rate": {"low": 1e-5, "high": 1e-2, "log": True}}
    spec = make_spec(
        tiny_model_dir,
        sentiment_csv,
        study={"n_trials": 2},
        sampler={"start_from_recipe": True},
        space=wide,
    )
    study = run(spec, storage_url)
    # warmup, schedule and augmentation are fixed in this space: the recipe leaves them be
    first, second = study.get_trials()
    assert (first.params["learning_rate"], first.params["frozen_layers"]) == (5e-5, 0)
    assert first.user_attrs["first_trial"] == "trainer recipe"
    assert first.state == TrialState.COMPLETE and second.params["learning_rate"] != 5e-5
    assert "first_trial" not in second.user_attrs
    # Resuming with a larger budget samples the new trial; the recipe is not queued again.
    study = run(spec.replace("study", n_trials=3), storage_url)
    assert [t.params["learning_rate"] == 5e-5 for t in study.get_trials()] == [True, False, False]
    # The study file's own first trials follow it, at most the study's budget of them.
    own = spec.replace("study", name="own", n_trials=2).replace(
        "sampler", first_trials=[{"learning_rate": 2e-3}, {"learning_rate": 3e-3}]
    )
    study = run(own, storage_url)
    assert [t.params["learning_rate"] for t in study.get_trials()] == [5e-5, 2e-3]
    assert study.get_trials()[1].user_attrs["first_trial"] == "study file"


def test_resume_with_another_search_space_is_refused(
    tiny_model_dir, sentiment_csv, storage_url
) -> None:
    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 1})
    run(spec, storage_url)
    changed = spec.replace("space", warmup_ratio=0.2)
    with pytest.raises(SpecError, match=r"space\.warmup_ratio \(stored 0\.1, now 0\.2\)"):
        create_or_resume(changed, open_storage(storage_url))
    study, _ = load_stored("tiny", open_storage(storage_url))
    assert len(study.get_trials()) == 1  # nothing stored was lost


def test_a_study_stored_before_a_key_existed_resumes(tiny_model_dir, sentiment_csv, storage_url):
    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 1})
    study, _ = create_or_resume(spec, open_storage(storage_url))
    older = spec.to_dict()
    del older["sampler"]["start_from_recipe"]  # as an hpo without the option stored it
    study.set_user_attr("hpo_spec", older)
    study, resumed = create_or_resume(spec.replace("study", n_trials=2), open_storage(storage_url))
    assert resumed and len(study.get_trials()) == 2
    # A real change is still refused.
    with pytest.raises(SpecError, match=r"sampler\.n_startup_trials \(stored 5, now 2\)"):
        create_or_resume(spec.replace("sampler", n_startup_trials=2), open_storage(storage_url))


def test_a_study_stored_before_strategies_and_tasks_resumes_and_reports(
    tiny_model_dir, sentiment_csv, storage_url
) -> None:
    """A database written by the eight-dimension, one-task version: its spec lacks `task` and
    `[augment]`, its trials hold exactly the eight parameters; it resumes, samples the same
    names, and its report and `hpo best` read the old trials."""
    from hpo.final.best import hyperparameters
    from hpo.results.report import summarize

    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 1})
    study = run(spec, storage_url)
    older = spec.to_dict()
    del older["study"]["task"], older["augment"]  # as the earlier version stored it
    study.set_user_attr("hpo_spec", older)
    study, resumed = create_or_resume(spec.replace("study", n_trials=2), open_storage(storage_url))
    work(study, Objective(spec), 2)
    first, second = study.get_trials()
    assert resumed and first.params.keys() == second.params.keys()
    assert set(first.params) == {
        "learning_rate", "warmup_ratio", "lr_schedule", "frozen_layers",
        "augmentation_strength", "batch_size", "weight_decay", "seed",
    }  # fmt: skip
    summary = summarize("tiny", "accuracy", "maximize", study.get_trials())
    assert summary.best_number in (0, 1)
    hp = hyperparameters(first.params, seed=3)
    assert hp["learning_rate"] == first.params["learning_rate"] and hp["seed"] == 3
    assert hp["num_layers"] is None and hp["lora_rank"] == 0  # new strategies stay off


def test_frozen_range_beyond_the_model_is_refused_before_any_trial(
    tiny_model_dir, sentiment_csv
) -> None:
    spec = make_spec(tiny_model_dir, sentiment_csv, space={"frozen_layers": {"low": 0, "high": 5}})
    with pytest.raises(SpecError, match="goes up to 5 but the model has 2 layers"):
        Objective(spec).prepare()


def test_f1_on_three_classes_is_refused(tiny_model_dir, tmp_path) -> None:
    from tests.conftest import write_csv

    rows = [(f"text number {i}", "abc"[i % 3]) for i in range(60)]
    spec = make_spec(
        tiny_model_dir, write_csv(tmp_path / "three.csv", rows), study={"metric": "f1"}
    )
    with pytest.raises(SpecError, match="use 'macro_f1'"):
        Objective(spec).prepare()


def test_augmentation_perturbs_training_batches_only(tiny_model_dir, sentiment_csv) -> None:
    spec = make_spec(tiny_model_dir, sentiment_csv)
    objective = Objective(spec)
    prep = objective.prepare()
    hp = Hyperparameters(learning_rate=1e-3, augmentation_strength=0.0, batch_size=16, seed=0)
    assert objective.batch_maker(prep, hp) is None  # strength 0: the cached tokens are used
    make_batch = objective.batch_maker(prep, hp.replace(augmentation_strength=0.5))
    indices = list(range(32))
    augmented = make_batch(indices)
    plain = collate(prep.train, indices, prep.tokenizer.pad_token_id)
    assert augmented["labels"].tolist() == plain["labels"].tolist()
    rows = lambda b: [[t for t in row if t != 0] for row in b["input_ids"].tolist()]  # noqa: E731
    assert sum(a != p for a, p in zip(rows(augmented), rows(plain), strict=True)) > 8
    # validation is tokenized once from the untouched text, whatever the trial samples
    assert prep.validation.input_ids == Objective(spec).prepare().validation.input_ids


def test_augment_copies_add_perturbed_copies_beside_the_originals(
    tiny_model_dir, sentiment_csv
) -> None:
    raw = spec_dict(tiny_model_dir, sentiment_csv, augment={"copies": 2})
    del raw["train"]["max_steps"]
    raw["train"]["epochs"] = 1.0
    objective = Objective(StudySpec.from_dict(raw))
    prep = objective.prepare()
    n = len(prep.train)
    plain, none = objective.training_rows(prep, Hyperparameters(augmentation_strength=0.0))
    assert len(plain) == n and none is None  # nothing to copy at strength 0
    hp = Hyperparameters(augmentation_strength=0.8, seed=1)
    rows, make_batch = objective.training_rows(prep, hp)
    assert len(rows) == 3 * n and rows.label[2 * n + 5] == prep.train.label[5]
    # epochs count the copies: one epoch is three passes' worth of steps
    assert objective.plan(hp, n).max_steps == -(-n // 16)
    assert objective.plan(hp, len(rows)).max_steps == -(-3 * n // 16)
    originals = make_batch(list(range(8)))
    assert (
        originals["input_ids"].tolist()
        == collate(prep.train, list(range(8)), 0)["input_ids"].tolist()
    )
    copies = make_batch([2 * n + i for i in range(8)])
    assert copies["labels"].tolist() == originals["labels"].tolist()
    ids = lambda b: [[t for t in row if t != 0] for row in b["input_ids"].tolist()]  # noqa: E731
    assert sum(a != b for a, b in zip(ids(copies), ids(originals), strict=True)) >= 4


@pytest.mark.parametrize("name", ["tpe", "random", "gp", "cmaes", "qmc"])
def test_every_sampler_builds(tiny_model_dir, sentiment_csv, name: str) -> None:
    spec = make_spec(tiny_model_dir, sentiment_csv, sampler={"name": name, "seed": 1})
    assert isinstance(build_sampler(spec), optuna.samplers.BaseSampler)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("median", TolerantMedianPruner),
        ("successive_halving", SuccessiveHalvingPruner),
        ("hyperband", HyperbandPruner),
        ("patient", optuna.pruners.PatientPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_every_pruner_builds(tiny_model_dir, sentiment_csv, name: str, cls: type) -> None:
    spec = make_spec(tiny_model_dir, sentiment_csv, pruner={"name": name})
    assert isinstance(build_pruner(spec), cls)


def _oom_when(limit: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the loop run out of memory for batches above ``limit`` rows (a CPU cannot, here)."""
    from hpo.errors import OutOfMemory

    real_train = objective_module.train
    seen: list[int] = []

    def train(model: Any, tr: Any, va: Any, plan: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(plan.batch_size)
        if plan.batch_size > limit:
            raise OutOfMemory(f"out of memory at step 1 with batch size {plan.batch_size}")
        return real_train(model, tr, va, plan, *args, **kwargs)

    monkeypatch.setattr(objective_module, "train", train)
    return seen


def test_out_of_memory_retries_with_half_the_batch(
    tiny_model_dir, sentiment_csv, storage_url, monkeypatch
) -> None:
    seen = _oom_when(8, monkeypatch)
    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 1})
    trial = run(spec, storage_url).get_trials()[0]
    assert seen == [16, 8]
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["oom_retry"]["gradient_accumulation"] == 2
    assert trial.user_attrs["train_samples"] == 30 * 16  # the same effective batch


def test_out_of_memory_twice_is_kept_as_infeasible(
    tiny_model_dir, sentiment_csv, storage_url, monkeypatch
) -> None:
    from hpo.results.report import summarize

    seen = _oom_when(4, monkeypatch)
    spec = make_spec(
        tiny_model_dir, sentiment_csv, study={"n_trials": 2}, space={"batch_size": [4, 16]}
    )
    study = run(spec, storage_url)
    big = [t for t in study.get_trials() if t.params["batch_size"] == 16]
    small = [t for t in study.get_trials() if t.params["batch_size"] == 4]
    assert big and small, "the seeded sampler should try both batch sizes"
    assert 8 in seen
    for t in big:
        assert t.state == TrialState.COMPLETE and t.constraints == {"fits_in_memory": 1.0}
        assert "also with half the batch" in t.user_attrs["fail_reason"]
    assert study.best_trial.params["batch_size"] == 4  # the infeasible trial is never the best
    summary = summarize("tiny", "accuracy", "maximize", study.get_trials())
    assert {n for n, _ in summary.failures} == {t.number for t in big}
    assert summary.best_number == small[0].number


def test_an_interrupted_trial_gives_its_slot_back(
    tiny_model_dir, sentiment_csv, storage_url, monkeypatch
) -> None:
    real_train = objective_module.train
    calls = {"n": 0}

    def ctrl_c_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(objective_module, "train", ctrl_c_once)
    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 2})
    with pytest.raises(KeyboardInterrupt):
        run(spec, storage_url)
    study = run(spec, storage_url)  # the rerun resumes
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    interrupted = study.get_trials()[1]
    assert interrupted.user_attrs["interrupted"] is True
    assert "interrupted (Ctrl-C)" in interrupted.user_attrs["fail_reason"]


def test_no_trial_starts_after_the_study_wide_deadline(
    tiny_model_dir, sentiment_csv, storage_url
) -> None:
    from hpo.execution.workers import DEADLINE_ATTR, set_deadline

    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 3})
    study, _ = create_or_resume(spec, open_storage(storage_url))
    set_deadline(study, 0.001)
    assert study.user_attrs[DEADLINE_ATTR] is not None
    assert work(study, Objective(spec), 3) == 0
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 0
    set_deadline(study, None)  # a rerun without a timeout clears the deadline
    assert work(study, Objective(spec), 3) == 3


HANGING_MODEL = """import time

from transformers import BertForSequenceClassification

from .configuration_hpotest import RemoteConfig

STEPS = [0]


class RemoteModel(BertForSequenceClassification):
    config_class = RemoteConfig

    def forward(self, *args, **kwargs):
        if self.training:
            STEPS[0] += 1
            if STEPS[0] == 3:  # the first trial's third step waits for ever
                time.sleep(3600)
        return super().forward(*args, **kwargs)
"""


def test_a_step_that_never_returns_is_ended_by_the_timeout_and_the_worker_goes_on(
    tmp_path: Path, sentiment_csv: Path, storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's model code that hangs inside a step: the check between steps never runs, so
    the alarm set for the timeout (plus a tenth, at least a second) ends it."""
    import time

    from tests.test_model import remote_model_folder

    folder = remote_model_folder(tmp_path, monkeypatch, HANGING_MODEL)
    spec = make_spec(
        folder,
        sentiment_csv,
        study={"n_trials": 2},
        model={"name": str(folder), "trust_remote_code": True},
        train={"max_steps": 12, "eval_every": 6, "trial_timeout": 20.0},
        space={"frozen_layers": 0},
    )
    study, _ = create_or_resume(spec, open_storage(storage_url))
    started = time.monotonic()
    assert work(study, Objective(spec), 2) == 2
    hung, after = study.get_trials()
    assert hung.state == TrialState.FAIL and after.state == TrialState.COMPLETE
    assert hung.user_attrs["fail_reason"] == (
        "ran past train.trial_timeout (20 s): a step did not return within 2 s more"
    )
    assert time.monotonic() - started < 600  # not the hour the step would have slept


def test_a_trial_past_its_timeout_fails_with_the_reason_and_the_worker_goes_on(
    tiny_model_dir, sentiment_csv, storage_url
) -> None:
    spec = make_spec(
        tiny_model_dir,
        sentiment_csv,
        study={"n_trials": 2},
        train={"max_steps": 100_000, "eval_every": 50, "trial_timeout": 0.5},
    )
    study, _ = create_or_resume(spec, open_storage(storage_url))
    assert work(study, Objective(spec), 2) == 2  # both trials ran: the first did not stop it
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    for t in trials:
        reason = t.user_attrs["fail_reason"]
        assert reason.startswith("ran past train.trial_timeout (0.5 s): ")
        assert int(reason.split("at step ")[1].split()[0]) < 100_000


def _create_or_resume_in_process(url: str, raw: dict[str, Any], barrier: Any, out: Any) -> None:
    """One of several processes started at once on a new study name (a forked child)."""
    spec = StudySpec.from_dict(raw)
    storage = open_storage(url)
    barrier.wait()
    try:
        study, resumed = create_or_resume(spec, storage, "# the study file\n")
        out.put(("ok", study.study_name, resumed, len(study.get_trials(deepcopy=False))))
    except BaseException as exc:  # the parent asserts there was none
        out.put(("error", type(exc).__name__, str(exc).splitlines()[0]))


def _race(url: str, specs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Start one process per spec at the same moment, each creating or resuming its study."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(len(specs)), ctx.Queue()
    procs = [
        ctx.Process(target=_create_or_resume_in_process, args=(url, raw, barrier, out))
        for raw in specs
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return sorted(results)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_started_at_once_on_a_new_name_share_one_study(
    tiny_model_dir, sentiment_csv, tmp_path, backend
) -> None:
    from tests.databases import database

    raw = spec_dict(tiny_model_dir, sentiment_csv, study={"name": "same", "n_trials": 3})
    with database(backend, tmp_path) as url:
        # one creates it, the others resume it: no error, one study, n_trials trials queued
        assert _race(url, [raw] * 3) == [("ok", "same", False, 3)] + [("ok", "same", True, 3)] * 2
        stored = optuna.load_study(study_name="same", storage=open_storage(url))
        assert len(stored.get_trials(deepcopy=False)) == 3

        # different settings: whoever comes second gets the usual one-line refusal
        first = spec_dict(tiny_model_dir, sentiment_csv, study={"name": "diff", "n_trials": 3})
        other = {**first, "train": {**first["train"], "max_steps": 20}}
        results = _race(url, [first, other])
        assert results[1] == ("ok", "diff", False, 3)
        assert results[0][:2] == ("error", "SpecError")
        assert "'diff' already exists with other settings: train.max_steps" in results[0][2]
        stored = optuna.load_study(study_name="diff", storage=open_storage(url))
        assert len(stored.get_trials(deepcopy=False)) == 3


def test_a_study_whose_spec_is_being_stored_is_waited_for(
    tiny_model_dir, sentiment_csv, storage_url
) -> None:
    """A process that loads a study in the moment between its creation and its spec being
    stored (another process creating it) waits for the spec instead of refusing the study."""
    import json
    import threading
    import time

    spec = make_spec(tiny_model_dir, sentiment_csv)
    storage = open_storage(storage_url)
    bare = optuna.create_study(study_name="tiny", storage=storage)  # no spec yet
    # what the creator stores, a second later
    stored_spec = json.loads(json.dumps(spec.to_dict()))
    creator = threading.Timer(1.0, lambda: bare.set_user_attr(SPEC_ATTR, stored_spec))
    creator.start()
    start = time.monotonic()
    study, resumed = create_or_resume(spec, storage)
    creator.join()
    assert resumed and study.study_name == "tiny" and time.monotonic() - start >= 0.9
    _, stored = load_stored("tiny", storage)
    assert stored == spec


class _StopAt:
    """A live view whose user stops the first trial at ``step`` (Ctrl-C, SIGTERM) or whose
    training fails there."""

    def __init__(self, step: int, exc: type[BaseException]) -> None:
        self.at, self.exc, self.trials = step, exc, 0

    def trial_started(self, number: int, params: Any, total_steps: int) -> None:
        self.trials += 1

    def step(self, step: int) -> None:
        if self.trials == 1 and step == self.at:
            raise self.exc("stopped here")

    def evaluated(self, step: int, value: float) -> None:
        pass


@pytest.mark.parametrize("exc", [KeyboardInterrupt, "WorkerStopped", RuntimeError])
def test_a_trial_stopped_in_training_records_what_it_spent(
    tiny_model_dir, sentiment_csv, storage_url, exc
) -> None:
    """Ctrl-C, SIGTERM or a failure at step 15 of 30: the failed trial stores the samples,
    FLOPs and seconds of its 15 steps and one evaluation, which the study's spend (and
    ``study.budget``) counts."""
    from hpo.execution.workers import WorkerStopped
    from hpo.search.budget import spent
    from hpo.training.loop import rows_seen

    exc = WorkerStopped if exc == "WorkerStopped" else exc
    spec = make_spec(tiny_model_dir, sentiment_csv, study={"n_trials": 2})
    study, _ = create_or_resume(spec, open_storage(storage_url))
    objective = Objective(spec, listener=_StopAt(15, exc))
    if exc is RuntimeError:  # a failure: recorded, and the worker goes on
        work(study, objective, 2)
    else:
        with pytest.raises(exc):
            work(study, objective, 2)
        work(study, Objective(spec), 2)  # the rerun
    stopped, done = study.get_trials()[:2]
    assert (stopped.state, done.state) == (TrialState.FAIL, TrialState.COMPLETE)
    n_train = len(objective.prepare().train)
    assert stopped.user_attrs["steps"] == 15
    assert stopped.user_attrs["train_samples"] == rows_seen(n_train, 16, 1, 15) == 15 * 16
    assert done.user_attrs["train_samples"] == rows_seen(n_train, 16, 1, 30)
    # 15 steps and one evaluation: more than nothing, less than 30 steps and three
    assert 0 < stopped.user_attrs["flops"] < done.user_attrs["flops"]
    assert stopped.user_attrs["wall_seconds"] > 0
    trials = study.get_trials()  # an interrupted trial's slot runs again: one trial more
    assert len(trials) == (2 if exc is RuntimeError else 3)
    full = rows_seen(n_train, 16, 1, 30)
    assert spent(trials, "samples") == 15 * 16 + full * (len(trials) - 1)
