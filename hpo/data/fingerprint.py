"""What data a study's trials ran on, stored on the study so a later run can tell it changed.

A study's trials are comparable only when they trained and were scored on the same rows: a
trial scored on 60 validation rows ranked against one scored on 31 (or on other labels) is a
different experiment, and the majority-class baseline stored with the study no longer holds.
The study file names the data, not its content, so the content itself is fingerprinted: the
train and validation rows (texts, labels) and the label names, as loaded, capped and split.
Test rows are left out: no trial reads them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from hpo.errors import DataError


def fingerprint(task: Any) -> dict[str, Any]:
    """Row counts and a content hash of ``task``'s train and validation splits and labels."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(task.label_names), ensure_ascii=False).encode())
    for split in (task.train, task.validation):
        for field in dataclasses.fields(split):
            value = getattr(split, field.name)
            digest.update(json.dumps(value, ensure_ascii=False, default=list).encode())
    return {
        "train": len(task.train),
        "validation": len(task.validation),
        "sha256": digest.hexdigest(),
    }


def data_change(stored: Any, now: dict[str, Any]) -> str | None:
    """How the data loaded ``now`` differs from what the study's trials ran on (``stored``);
    None when it is the same, or when the study was stored before fingerprints."""
    if not isinstance(stored, dict) or stored.get("sha256") == now["sha256"]:
        return None
    counts = [
        f"{split} {now[split]:,} rows (was {stored[split]:,})"
        for split in ("train", "validation")
        if stored.get(split) is not None and stored[split] != now[split]
    ]
    return ", ".join(counts) if counts else "the rows' texts or labels changed"


def check_same_data(study_name: str, stored: Any, now: dict[str, Any]) -> None:
    """Raise ``DataError`` when the data loaded ``now`` is not what the study's trials ran on."""
    if (what := data_change(stored, now)) is not None:
        raise DataError(
            f"the data differ from what the trials of study {study_name!r} ran on: {what}; "
            "put the data back as it was, or start a new study on it (--set study.name=...)"
        )
