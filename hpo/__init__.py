"""hpo: hyperparameter search for fine-tuning pretrained transformers, on Optuna."""

import os

# Nothing about a user's runs is sent anywhere: the Hugging Face libraries' usage telemetry is
# off unless the environment turns it on (HF_HUB_DISABLE_TELEMETRY=0). Set before they load.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from hpo.config.sampling import Hyperparameters, sample
from hpo.config.space import SearchSpace
from hpo.config.spec import StudySpec
from hpo.config.studyfile import load_spec
from hpo.errors import (
    DataError,
    DependencyError,
    HpoError,
    ModelError,
    SpecError,
    StorageError,
    TrialFailure,
    UserError,
)

__version__ = "0.1.0"


def load_model(folder: str) -> object:
    """Load a model saved by ``hpo best``, custom head included (see ``hpo.final.best.load_model``)."""
    from hpo.final.saved import load_model as load

    return load(folder)


__all__ = [
    "DataError",
    "DependencyError",
    "HpoError",
    "Hyperparameters",
    "ModelError",
    "SearchSpace",
    "SpecError",
    "StorageError",
    "StudySpec",
    "TrialFailure",
    "UserError",
    "__version__",
    "load_model",
    "load_spec",
    "sample",
]
