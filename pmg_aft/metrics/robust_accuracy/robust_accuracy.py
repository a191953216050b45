"""Robust accuracy: clean, per-attack and per-sample worst-case top-1 accuracy, as an `evaluate` metric.

Load it offline from the installed package (`pmg_aft.metrics.robust_accuracy_metric()`, or
`evaluate.load(<path of this folder>)`) and compute the numbers pmg_aft reports for predictions made by any tool.
"""

import datasets
import evaluate

_DESCRIPTION = """Top-1 accuracy of a classifier on clean images and under each attack, and the per-sample worst case:
a sample counts as robust only if it is classified correctly on the clean image, on every attack's final iterate and,
where `survived` is given, at every iterate each attack evaluated (the way AutoAttack scores its ensemble)."""

_INPUTS = """
Args:
    predictions (`list[int]`): the predicted class of each clean image.
    references (`list[int]`): the true classes.
    adversarial_predictions (`list[list[int]]`): per sample, the predicted class under each attack (final iterate),
        in the same attack order for every sample.
    survived (`list[list[bool]]`, *optional*): per sample and attack, whether every iterate before the final one was
        still classified correctly (pmg_aft's `pgd(..., return_survivors=True)`); default: all true.
Returns:
    `clean_accuracy` (`float`), `robust_accuracy` (`list[float]`, one per attack), `worst_case_accuracy` (`float`)
    and `samples` (`int`).
Example:
    >>> metric = evaluate.load("pmg_aft/metrics/robust_accuracy")
    >>> metric.compute(predictions=[0, 1], references=[0, 1], adversarial_predictions=[[0, 1], [1, 1]])
    {'clean_accuracy': 1.0, 'robust_accuracy': [1.0, 0.5], 'worst_case_accuracy': 0.5, 'samples': 2}
"""


class RobustAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                    "adversarial_predictions": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references, adversarial_predictions, survived=None):
        count = len(references)
        if count == 0:
            raise ValueError("robust_accuracy needs at least one sample.")
        attacks = {len(row) for row in adversarial_predictions}
        if len(attacks) > 1:
            raise ValueError(f"Every sample needs one prediction per attack; got rows of lengths {sorted(attacks)}.")
        width = attacks.pop() if attacks else 0
        survived = survived if survived is not None else [[True] * width] * count
        if len(survived) != count or any(len(row) != width for row in survived):
            raise ValueError("survived needs one row per sample with one flag per attack.")
        clean = [p == r for p, r in zip(predictions, references)]
        robust = [[a == r for a in row] for row, r in zip(adversarial_predictions, references)]
        worst = [c and all(row) and all(alive) for c, row, alive in zip(clean, robust, survived)]
        return {
            "clean_accuracy": sum(clean) / count,
            "robust_accuracy": [sum(row[i] for row in robust) / count for i in range(width)],
            "worst_case_accuracy": sum(worst) / count,
            "samples": count,
        }
