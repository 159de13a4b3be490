"""What a fine-tuned model predicts: classes (with their names) or one standardised number.

Label names are kept exactly as they appear in the training file and ordered naturally (numbers
by value, then text), so '0'/'1' keep their meaning and the positive class of a binary task is the
second one. Regression targets are standardised with the training set's mean and deviation, and
predictions are mapped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError, UsageError

TASKS = ("classification", "regression")


def _natural_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


@dataclass(frozen=True)
class TaskSpec:
    kind: str
    label_names: tuple[str, ...] = ()
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def n_outputs(self) -> int:
        return len(self.label_names) if self.kind == "classification" else 1

    def to_dict(self) -> dict:
        return asdict(self) | {"label_names": list(self.label_names)}

    @classmethod
    def from_dict(cls, data: dict) -> "TaskSpec":
        return cls(data["kind"], tuple(data.get("label_names", ())), float(data.get("target_mean", 0.0)),
                   float(data.get("target_std", 1.0)))


def make_task(kind: str, labels: list[str], source: str) -> TaskSpec:
    """The task as the training labels define it."""
    if kind not in TASKS:
        raise UsageError(f"--task must be classification or regression, got '{kind}'")
    if kind == "classification":
        names = tuple(sorted(set(labels), key=_natural_key))
        if len(names) < 2:
            raise InputError(f"{source}: classification needs at least two classes, found only "
                             f"'{names[0]}'")
        return TaskSpec(kind, names)
    values = _as_floats(labels, source)
    std = float(values.std())
    return TaskSpec(kind, (), float(values.mean()), std if std > 0 else 1.0)


def _as_floats(labels: list[str], source: str) -> np.ndarray:
    try:
        return np.asarray([float(x) for x in labels], dtype=np.float64)
    except ValueError:
        bad = next(x for x in labels if not _is_float(x))
        raise InputError(f"{source}: regression label '{bad}' is not a number") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def encode_targets(task: TaskSpec, labels: list[str], source: str, where=None) -> np.ndarray:
    """Class indices (int64) or standardised targets (float32). A class the model does not know
    (a typo in a test file) is an error naming the row and the known classes."""
    if task.kind == "regression":
        return ((_as_floats(labels, source) - task.target_mean) / task.target_std).astype(np.float32)
    index = {name: i for i, name in enumerate(task.label_names)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if label not in index:
            place = where(i) if where else source
            raise InputError(f"{place}: label '{label}' is not one of the model's classes "
                             f"({', '.join(task.label_names)})")
        out[i] = index[label]
    return out


def decode_regression(task: TaskSpec, values: np.ndarray) -> np.ndarray:
    return values * task.target_std + task.target_mean
