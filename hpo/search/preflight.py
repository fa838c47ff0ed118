"""Checks of a study against its data and models, before any trial: one line for each problem."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from hpo.config.space import check_depths
from hpo.strategies import REGISTRY
from hpo.tasks import get_task

if TYPE_CHECKING:
    from hpo.config.spec import StudySpec
    from hpo.data.dataset import TaskData
    from hpo.models.anatomy import Anatomy


def check_fits(
    spec: StudySpec,
    task: TaskData,
    num_layers: int,
    model: str = "",
    found: Anatomy | None = None,
    model_class: str = "",
    layers_read: bool = True,
) -> None:
    """Refuse, before any trial starts, a study that cannot fit its data or model (whose layers
    are ``found``, None where it has none; ``layers_read`` False: not read yet)."""
    get_task(spec.study.task).check(spec.study.metric, task)
    shown = f" {model!r}" if model and "model" in spec.space else ""
    check_depths(spec.space, num_layers, shown)
    if not layers_read:
        return
    for strategy in REGISTRY:
        strategy.check_model(spec.space, found, model_class or model)


def preflight(spec: StudySpec) -> TaskData:
    """Load the data and each model's configuration (not its weights) and check the study."""
    from hpo.models.anatomy import anatomy_from_config
    from hpo.models.pretrained import load_config, num_layers
    from hpo.search.objective import Objective

    objective = Objective(spec)
    task = objective.task.load(spec.data)
    for name in objective.model_names():
        config = load_config(dataclasses.replace(spec.model, name=name))
        built = anatomy_from_config(config, objective.task.model_class(), name)
        # a model not buildable without its weights has its layers checked when they load
        model_class, found = built or ("", None)
        check_fits(spec, task, num_layers(config), name, found, model_class, built is not None)
    return task
