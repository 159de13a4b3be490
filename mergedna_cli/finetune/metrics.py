"""Evaluation metrics (scikit-learn / SciPy implementations).

Classification: accuracy, MCC, F1 (the positive class for binary tasks, macro-averaged for
multi-class), AUROC (binary; one-vs-rest macro for multi-class; null when a class is absent).
Regression: Pearson r, Spearman rho, MSE and R^2, on the original scale.
"""

from __future__ import annotations

import math

import numpy as np

from .task import TaskSpec, decode_regression


def _clean(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def classification_metrics(truth: np.ndarray, probs: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

    n_classes = probs.shape[1]
    pred = probs.argmax(1)
    binary = n_classes == 2
    f1 = f1_score(truth, pred, average="binary" if binary else "macro",
                  labels=None if binary else list(range(n_classes)), zero_division=0)
    auroc = None
    if len(np.unique(truth)) == n_classes:
        auroc = roc_auc_score(truth, probs[:, 1]) if binary else roc_auc_score(
            truth, probs, multi_class="ovr", average="macro", labels=list(range(n_classes)))
    return {"n": int(len(truth)), "accuracy": float(accuracy_score(truth, pred)),
            "mcc": _clean(matthews_corrcoef(truth, pred)), "f1": float(f1),
            "auroc": _clean(auroc) if auroc is not None else None}


def regression_metrics(task: TaskSpec, truth_std: np.ndarray, pred_std: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr

    truth, pred = decode_regression(task, truth_std), decode_regression(task, pred_std)
    constant = np.ptp(truth) == 0 or np.ptp(pred) == 0
    mse = float(np.mean((truth - pred) ** 2))
    var = float(np.var(truth))
    return {"n": int(len(truth)),
            "pearson": None if constant else _clean(pearsonr(truth, pred)[0]),
            "spearman": None if constant else _clean(spearmanr(truth, pred)[0]),
            "mse": mse, "r2": 1.0 - mse / var if var > 0 else None}


def task_metrics(task: TaskSpec, truth: np.ndarray, outputs: np.ndarray) -> dict:
    """outputs: class probabilities (n, C) or standardised predictions (n,)."""
    if task.kind == "classification":
        return classification_metrics(truth, outputs)
    return regression_metrics(task, truth, outputs)


def headline(task: TaskSpec) -> str:
    """The metric used for early stopping and model selection."""
    return "mcc" if task.kind == "classification" else "pearson"
