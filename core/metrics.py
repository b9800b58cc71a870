"""Classification metrics from a confusion matrix, in plain Python (no torch, no
scikit-learn), so the CLI, the worker and the dashboard compute them the same way.

The matrix is a list of rows: ``confusion[t][p]`` counts the images of true class ``t``
predicted as ``p``. Definitions and edge cases follow scikit-learn's
``precision_recall_fscore_support`` / ``classification_report`` and
``balanced_accuracy_score``.
"""

from __future__ import annotations


def class_metrics(confusion: list[list[int]], classes: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class, from a confusion matrix whose rows
    are the true class and columns the predicted class.

    For class ``i``: precision = C[i][i] / (column i's sum), recall = C[i][i] / (row i's
    sum), F1 = 2 * precision * recall / (precision + recall), support = row i's sum (its
    true images). A quotient with nothing to divide by is 0, scikit-learn's
    ``zero_division=0`` convention: a class the model never predicts has precision 0, a
    class with no true images has recall 0, and F1 is 0 when precision and recall are.
    As in scikit-learn's ``classification_report``, only classes that occur (as a true
    or a predicted class) are listed, in class order.
    """
    n = len(classes)
    predicted = [sum(confusion[r][c] for r in range(n)) for c in range(n)]
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(classes):
        support, hits = sum(confusion[i]), confusion[i][i]
        if support == 0 and predicted[i] == 0:
            continue
        precision = hits / predicted[i] if predicted[i] else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return out


def balanced_accuracy(confusion: list[list[int]]) -> float | None:
    """The mean of the per-class recalls over the classes that have true images.

    scikit-learn's ``balanced_accuracy_score`` (with ``adjusted=False``): "the average of
    recall obtained on each class" (Brodersen et al. 2010, and Kelleher, Mac Namee and
    D'Arcy 2015); classes with no true images are left out of the mean, as scikit-learn
    leaves them out. ``None`` for an empty matrix.
    """
    recalls = [row[i] / sum(row) for i, row in enumerate(confusion) if sum(row) > 0]
    return sum(recalls) / len(recalls) if recalls else None


def most_confused(confusion: list[list[int]], classes: list[str], min_count: int = 1) -> list[tuple[str, str, int]]:
    """The off-diagonal cells of ``confusion`` (rows: true class, columns: predicted) with
    at least ``min_count`` images, as (true, predicted, count), most first: fastai's
    ``ClassificationInterpretation.most_confused``."""
    cells = [(classes[i], classes[j], int(n)) for i, row in enumerate(confusion) for j, n in enumerate(row)
             if i != j and n >= min_count]
    return sorted(cells, key=lambda cell: (-cell[2], cell[0], cell[1]))
