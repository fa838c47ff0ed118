"""Which pretrained model: ``space.model = ["bundled:all-MiniLM-L6-v2", "org/model", "/dir"]``.

Out of the space it is ``model.name``. The objective loads each model the first time a trial
asks for it and tokenizes the data once per model; layer dimensions are clipped to each model's
depth.
"""

from __future__ import annotations

from hpo.strategies.base import Dim, Strategy


class ModelChoice(Strategy):
    name = "model"
    dims = (Dim("model", "str", lambda v: bool(v.strip()), "must be a model name or folder"),)
