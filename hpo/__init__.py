"""hpo: hyperparameter search for fine-tuning pretrained transformers, on Optuna."""

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
