"""`DatasetResult`: what the engine measured on one eval set, and how the data was obtained."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..errors import InputError


class ReportError(InputError):
    """A report that cannot be trusted: unreadable, changed after it was written, or holding impossible values."""


# The column of the per-sample worst case over every attack and iterate, beside the per-attack ones.
WORST_CASE = "worst case"


@dataclass(kw_only=True)
class DatasetResult:
    r"""Clean and robust zero-shot accuracy on one eval set, with the provenance of its data.

    Written by the evaluation engine, read by [`Report`], model cards, sanity checks, `pmg-aft compare` and the
    fine-tuning job; saved in `report.json` and `results/<dataset>.json` as its plain fields.

    Args:
        dataset (`str`): the eval set's name.
        samples (`int`): how many samples were evaluated (each counted once over all processes).
        clean_accuracy (`float`): top-1 accuracy on the clean images.
        robust_accuracy (`dict[str, float]`): top-1 accuracy under each attack, keyed by `AttackSetting.key`.
        worst_case_accuracy (`float`, *optional*): the share of samples that survive every attack and every iterate.
        num_classes (`int`, *optional*): the classes of the zero-shot head.
        logit_scale (`float`, *optional*): this dataset's logit scale where it is not the report's (FARE's ImageNet
            uses the model's own).
        hub_id (`str`, *optional*): the Hub dataset the data comes from.
        split (`str`, *optional*): its split.
        revision (`str`, *optional*): its commit.
        protocol (`str`, *optional*): the protocol of the class texts (`custom` for an eval set's own).
        templates (`list[str]`): the prompt templates.
        max_eval_samples (`int`, *optional*), sample_seed (`int`, *optional*): the cap the data was cut to, and the
            seed of its random sample (`None`: the first rows).
        sample_list (`str`, *optional*): the published sample list the rows are (`robustbench`), if any.
        official_difference (`str`, *optional*): how the data differs from the official evaluation's.
        data_digest (`str`, *optional*): a hash of the data ([`EvalSet.digest`]): a result is reused only for it.
        autoattack_attacks (`dict[str, list[str]]`): per AutoAttack setting, the attacks that ran.
        gradient_health (`dict`, *optional*): the shares of zero and non-finite input gradients.
        first_step_zero_gradient (`dict[str, float]`): per PGD/CW setting, the fraction of input-gradient entries
            that are exactly 0 at the attack's first step over every sample: near 1 means a blind attack (an fp16
            gradient that underflowed) and an overstated robust accuracy.
        seconds (`float`): the time the evaluation took.
    """

    # In the order of the saved files' keys.
    dataset: str
    hub_id: str | None = None
    split: str | None = None
    revision: str | None = None
    protocol: str | None = None
    templates: list[str] = field(default_factory=list)
    max_eval_samples: int | None = None
    sample_seed: int | None = None
    sample_list: str | None = None
    official_difference: str | None = None
    data_digest: str | None = None
    samples: int
    num_classes: int | None = None
    logit_scale: float | None = None
    clean_accuracy: float
    robust_accuracy: dict[str, float]
    worst_case_accuracy: float | None = None
    autoattack_attacks: dict[str, list[str]] = field(default_factory=dict)
    gradient_health: dict | None = None
    first_step_zero_gradient: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def check_values(self, where: str, attack_keys: list[str]) -> None:
        """Raise `ReportError` for values no evaluation produces: an accuracy outside [0, 1] or not finite, a
        sample count that is not a whole number >= 1, a missing attack column."""
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ReportError(f"{where}: samples={self.samples!r} is not a whole number >= 1.")
        missing = [k for k in attack_keys if k not in self.robust_accuracy]
        if missing:
            raise ReportError(f"{where}: no result for {missing}.")
        values = {"clean": self.clean_accuracy, **self.robust_accuracy}
        if self.worst_case_accuracy is not None:
            values[WORST_CASE] = self.worst_case_accuracy
        for column, value in values.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or not 0 <= value <= 1:
                raise ReportError(
                    f"{where}: the {column} accuracy is {value!r}, which no evaluation gives (a fraction in [0, 1])."
                )

    def accuracy(self, column: str) -> float:
        """The accuracy in a report column: an attack setting's key, or [`WORST_CASE`]."""
        return self.worst_case_accuracy if column == WORST_CASE else self.robust_accuracy[column]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, dataset: str | None = None) -> DatasetResult:
        """A result from its saved form (`dataset` names it where the saved form does not)."""
        known = {f.name for f in fields(cls)}
        return cls(**{"dataset": dataset, **{k: v for k, v in values.items() if k in known}})
