"""A study's settings as a frozen, validated ``StudySpec`` (hpo/config/studyfile.py reads the file).

The sections and their rules are hpo/config/sections.py; here they are put together, each
TOML value is checked against its field's type, and the study is checked as a whole.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from hpo.config.privacy import PrivacySection, check_private_study
from hpo.config.sampling import first_trials
from hpo.config.sections import (
    AUGMENT_OPS,
    BUNDLED_MINILM,
    BUNDLED_SMOLLM2,
    METRICS,
    NO_CAP,
    AugmentSection,
    DataSection,
    ModelSection,
    PrunerSection,
    SamplerSection,
    StudySection,
    TrainSection,
)
from hpo.config.space import SearchSpace
from hpo.errors import SpecError, shown
from hpo.tasks import get_task

# The sections are defined in hpo/config/sections.py; importers read them from here too.
__all__ = [
    "AUGMENT_OPS",
    "BUNDLED_MINILM",
    "BUNDLED_SMOLLM2",
    "METRICS",
    "AugmentSection",
    "DataSection",
    "ModelSection",
    "PrivacySection",
    "PrunerSection",
    "SamplerSection",
    "StudySection",
    "StudySpec",
    "TrainSection",
]


@dataclass(frozen=True)
class StudySpec:
    """A whole study: everything needed to run it, from the database alone."""

    study: StudySection
    data: DataSection
    sampler: SamplerSection = field(default_factory=SamplerSection)
    pruner: PrunerSection = field(default_factory=PrunerSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    privacy: PrivacySection | None = None  # the DP-SGD budget (hpo/config/privacy.py)
    space: SearchSpace = field(default_factory=lambda: SearchSpace.from_dict({}))

    def __post_init__(self) -> None:
        self.first_trials()  # every first trial's values must be ones the space can take
        given = self.privacy is not None
        check_private_study(self.privacy or PrivacySection(), self.space, self.augment, given)
        steps, every = self.train.max_steps, self.train.eval_every
        if self.study.screen and steps and every >= steps:
            raise SpecError(
                f"`study.screen` trains screens to the first evaluation, but `train.eval_every` "
                f"({every}) is not below `train.max_steps` ({steps}): a screen would be a whole "
                "trial; lower eval_every"
            )

    def first_trials(self) -> list[tuple[str, dict[str, Any]]]:
        """(origin, parameters) of the trials a new study runs before sampling any: the
        Trainer's recipe with ``sampler.start_from_recipe``, then ``sampler.first_trials``."""
        return first_trials(self.space, self.sampler.first_trials, self.sampler.start_from_recipe)

    def model_names(self) -> list[str]:
        """Every model a trial may use: ``space.model``'s choices, else ``model.name``."""
        dim = self.space.dimensions.get("model")
        listed = dim.values() if dim is not None else None
        return [str(m) for m in listed] if listed else [self.model.name]

    def local_paths(self) -> list[Path]:
        """The study's own files on this machine: its data files (not those inside a
        package) and its local model folders (the study file made them absolute; a hub id or
        a bundled model is no path). A folder replaced whole must not hold any of them."""
        files = [] if self.data.package else list((self.data.files or {}).values())
        models = [m for m in self.model_names() if Path(m).is_absolute()]
        return [Path(p) for p in files + models]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StudySpec:
        """Build from parsed TOML; unknown sections or keys are errors that name them."""
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(sections)
        if unknown:
            raise SpecError(
                f"unknown section `{shown(sorted(unknown)[0])}`; sections: {', '.join(sections)}"
            )
        _check_integers(raw)
        for name in ("study", "data"):
            if name not in raw:
                raise SpecError(f"the study file needs a [{name}] section")
        parts: dict[str, Any] = {}
        for name, value in raw.items():
            if not isinstance(value, Mapping):
                raise SpecError(f"`{name}` must be a table ([{name}]), got {value!r}")
            if name == "space":
                parts[name] = SearchSpace.from_dict(value)
            elif name == "study" and value.get("budget") is not None and "n_trials" not in value:
                # a spend budget decides how many trials run; n_trials, when given, caps them
                parts[name] = _build_section(name, StudySection, {**value, "n_trials": NO_CAP})
            else:
                parts[name] = _build_section(name, _SECTION_TYPES[name], value)
        return cls(**parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that ``from_dict`` turns back into an equal spec (stored in the study)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            part = getattr(self, f.name)
            if part is None:  # an optional section the study file leaves out
                continue
            if isinstance(part, SearchSpace):
                out[f.name] = part.to_dict()
            else:
                out[f.name] = {k: v for k, v in dataclasses.asdict(part).items() if v is not None}
        return out

    @property
    def direction(self) -> str:
        """The study's direction: as written, else the metric's own (loss down, scores up)."""
        task = get_task(self.study.task)
        return self.study.direction or (
            "minimize" if self.study.metric in task.minimized else "maximize"
        )

    def replace(self, section: str, **changes: Any) -> StudySpec:
        """A copy with some keys of one section changed, validated again."""
        raw = self.to_dict()
        raw[section] = {**raw.get(section, {}), **changes}
        return StudySpec.from_dict(raw)


_SECTION_TYPES: dict[str, type] = {
    "study": StudySection,
    "sampler": SamplerSection,
    "pruner": PrunerSection,
    "model": ModelSection,
    "data": DataSection,
    "train": TrainSection,
    "augment": AugmentSection,
    "privacy": PrivacySection,
}


def _build_section(section: str, cls: type, raw: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in hints]
    if unknown:
        raise SpecError(
            f"unknown key `{section}.{shown(unknown[0])}`; [{section}] has: {', '.join(names)}"
        )
    values = {key: _check_type(f"{section}.{key}", value, hints[key]) for key, value in raw.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a required key is missing
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values]
        raise SpecError(f"[{section}] needs `{missing[0]}`" if missing else str(exc)) from None


def _check_integers(raw: Mapping[str, Any]) -> None:
    """TOML integers are 64-bit; tomllib reads longer ones, which would overflow a float (or a
    message) further on: refused here, naming where (nesting walked without recursion)."""
    todo: list[tuple[str, Any]] = [(shown(str(k)), v) for k, v in raw.items()]
    while todo:
        where, value = todo.pop()
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise SpecError(
                f"`{where}` is an integer of {value.bit_length()} bits; TOML integers go from "
                "-2**63 to 2**63 - 1 (about 9.2e18): write a smaller one"
            )
        if isinstance(value, Mapping):
            todo += [(f"{where}.{shown(str(k))}", v) for k, v in value.items()]
        elif isinstance(value, list):
            todo += [(f"{where}[{i}]", v) for i, v in enumerate(value)]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_type(where: str, value: Any, hint: Any) -> Any:
    """Check a TOML value against a field's annotation; ints are accepted where floats are."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(where, value, inner[0])
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise SpecError(f"`{where}` must be one of {allowed}, got {value!r}")
        return value
    if origin is list and args and args[0] is str:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SpecError(f'`{where}` must be a list of strings, e.g. ["a", "b"], got {value!r}')
        return list(value)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise SpecError(
                f"`{where}` must be a list of tables, e.g. [{{learning_rate = 5e-5}}], "
                f"got {value!r}"
            )
        return [dict(v) for v in value]
    if origin is dict:
        kind = args[1] if len(args) == 2 else str
        ok = (lambda v: isinstance(v, str)) if kind is str else _is_number
        if not isinstance(value, Mapping) or not all(ok(v) for v in value.values()):
            word = "strings" if kind is str else "numbers"
            raise SpecError(f"`{where}` must be a table of {word}, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"`{where}` must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"`{where}` must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"`{where}` must be a number, got {value!r}")
        if not math.isfinite(value):
            raise SpecError(f"`{where}` must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(f"`{where}` must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {hint!r} for {where}")  # a bug in this module
