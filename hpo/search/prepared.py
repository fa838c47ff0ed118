"""What every trial of a worker shares for one model, loaded once: the data and its tokenized
splits, the tokenizer, the pretrained weights, the augmentation pool and the device."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpo.search.preflight import check_fits, check_max_length, check_vocabulary, sample_texts
from hpo.training.loop import Device, pick_device

if TYPE_CHECKING:
    from hpo.config.spec import StudySpec
    from hpo.data.batches import Encoded
    from hpo.data.dataset import TaskData
    from hpo.models.pretrained import PretrainedModel
    from hpo.tasks.base import Task


@dataclass
class Prepared:
    """What every trial of a process shares for one model: data, its tokenized splits, the
    tokenizer and the pretrained weights."""

    task: TaskData
    tokenizer: Any
    train: Encoded
    validation: Encoded
    pretrained: PretrainedModel
    pool: Any  # what augmentation draws replacements from (the task's augment_pool)
    device: Device
    setup_seconds: float
    kind: Task | None = None  # the task's code (None: sequence classification)
    model_name: str = ""
    row_lengths: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def lengths(self, split: str) -> list[int]:
        """Tokens per row of a tokenized split ("train" or "validation"), read once."""
        if split not in self.row_lengths:
            self.row_lengths[split] = [len(ids) for ids in getattr(self, split).input_ids]
        return self.row_lengths[split]

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)


def load_prepared(
    spec: StudySpec,
    kind: Task,
    name: str,
    first: Prepared | None = None,
    pretrained: PretrainedModel | None = None,
) -> Prepared:
    """Load the tokenizer and weights of model ``name`` and tokenize the splits with it, and
    check the study against them; the data, pool and device come from ``first`` (the worker's
    first model) when there is one."""
    from hpo.models.pretrained import PretrainedModel, load_config, load_tokenizer

    start = time.perf_counter()
    task = first.task if first is not None else kind.load(spec.data)
    section = dataclasses.replace(spec.model, name=name)
    tokenizer = load_tokenizer(section)
    check_max_length(spec, name, tokenizer)  # before the weights load
    device = first.device if first else pick_device(spec.train.device, spec.train.precision)
    if pretrained is None:
        pretrained = PretrainedModel(
            section,
            task.num_labels,
            kind.model_class(),
            tokenizer=tokenizer,
            trains_on_host=device.type == "cpu",
        )
    check_fits(spec, task, pretrained.num_layers, name, pretrained.anatomy, pretrained.class_name)
    # after the model is known to have the task's head: that is the error to give first
    check_vocabulary(name, tokenizer, load_config(section), sample_texts(task))
    max_length = spec.train.max_length
    prep = Prepared(
        task=task,
        tokenizer=tokenizer,
        train=kind.encode(task.train, tokenizer, max_length, "train"),
        validation=kind.encode(task.validation, tokenizer, max_length, "validation"),
        pretrained=pretrained,
        pool=first.pool if first else kind.augment_pool(task.train, spec.augment.language),
        device=device,
        setup_seconds=0.0,
        kind=kind,
        model_name=name,
    )
    prep.setup_seconds = time.perf_counter() - start
    return prep
