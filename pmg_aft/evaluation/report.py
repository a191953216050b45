"""The evaluation report: JSON, a Markdown table and PNG plots."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace

from ..attack_settings import AttackSetting
from ..constants import CUSTOM_PROTOCOL, __version__
from ..data import SAMPLE_LISTS
from ..errors import MissingInputError
from ..outputs import atomic_path, write_json, write_text
from .protocols import Protocol
from .results import WORST_CASE, DatasetResult, ReportError

REPORT_FILE = "report.json"
# The files a saved report consists of (a checkpoint is published with them; its card shows the plots).
PLOTS = ("accuracy.png", "accuracy_vs_eps.png")
REPORT_FILES = (*PLOTS, REPORT_FILE, "report.md")
# Protocol fields that say what its figures compare with, not how they are computed: left out of the fingerprint, so
# a reworded sentence does not recompute results.
NOT_FINGERPRINTED = ("comparable_with",)


@dataclass
class Report:
    """Results of an evaluation ([`evaluate_robustness`] or a trainer's `evaluate()`) and how they were obtained.

    `protocol` names the protocol and `protocol_record` holds every field of the effective one (its
    `description` and `comparable_with` say what it reproduces and which published figures it compares with),
    `overrides` the fields changed from the named protocol; `settings` are the [`AttackSetting`]s that ran.
    `results[dataset]` is that dataset's [`DatasetResult`].
    """

    model: str
    protocol: str
    logit_scale: float
    image_mean: list[float]
    image_std: list[float]
    settings: list[AttackSetting]
    max_eval_samples: int | None = None
    model_digest: str | None = None
    mixed_precision: str = "no"
    seed: int = 0
    results: dict[str, DatasetResult] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    protocol_record: Protocol | None = None
    overrides: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    pmg_aft_version: str = __version__
    # A digest of everything above, set when the report is saved: a report changed afterwards is refused on load.
    report_digest: str | None = None

    def __post_init__(self) -> None:
        self.settings = [s if isinstance(s, AttackSetting) else AttackSetting.from_dict(s) for s in self.settings]
        if isinstance(self.protocol_record, dict):  # its JSON form
            self.protocol_record = Protocol.from_dict(self.protocol_record)
        self.results = {
            name: r if isinstance(r, DatasetResult) else DatasetResult.from_dict(r, name)
            for name, r in self.results.items()
        }

    def to_dict(self) -> dict:
        """JSON-ready form (settings with their keys, the protocol in its flat form)."""
        record = self.protocol_record.to_dict() if self.protocol_record is not None else None
        plain = asdict(replace(self, protocol_record=None))
        return plain | {"settings": [s.to_dict() for s in self.settings], "protocol_record": record}

    def content_digest(self) -> str:
        """A digest of the report's content (all but `report_digest`), as its JSON form holds it."""
        values = json.loads(json.dumps(self.to_dict(), default=str))
        values.pop("report_digest", None)
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def check_values(self, where: str = "the report") -> None:
        """Raise [`ReportError`] for a value no evaluation can produce: an accuracy outside [0, 1] or not finite, a
        sample count that is not a whole number >= 1, a result without its columns."""
        for name, result in self.results.items():
            result.check_values(f"{where}: {name}", self.attack_keys)

    def fingerprint(self) -> str:
        """A hash of everything that determines a dataset's numbers (so a resumed run reuses only matching ones)."""
        keys = ("model", "protocol", "logit_scale", "image_mean", "image_std", "settings", "max_eval_samples",
                "model_digest", "mixed_precision", "seed", "protocol_record")  # fmt: skip
        values = self.to_dict()
        if values["protocol_record"] is not None:
            values["protocol_record"] = {
                k: v for k, v in values["protocol_record"].items() if k not in NOT_FINGERPRINTED
            }
        blob = json.dumps({k: values[k] for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def attack_keys(self) -> list[str]:
        return [s.key for s in self.settings]

    @property
    def description(self) -> str:
        """What the protocol reproduces and which published figures it compares with, in words."""
        record = self.protocol_record
        return " ".join(t for t in (record.description, record.comparable_with) if t) if record else ""

    @property
    def numerics_text(self) -> str:
        """How the attacks computed, after the precision: `exact` (sound) or `official` (the published tables')."""
        record = self.protocol_record
        if record is None:
            return ""
        if record.attack_numerics == "exact":
            return ", exact attack numerics"
        batch = record.official_batch_size
        return (", official attack numerics (batch-mean loss, unscaled fp16 backward, fp16 logits, AutoAttack under "
                f"autocast{f', test batch {batch}' if batch else ''})")  # fmt: skip

    def summary(self) -> dict[str, float]:
        """Unweighted means over datasets (the protocol's summary): `clean`, then one entry per [`columns`] entry."""
        if not self.results:
            return {}
        values = list(self.results.values())
        out = {"clean": sum(r.clean_accuracy for r in values) / len(values)}
        for key in self.columns:
            out[key] = sum(r.accuracy(key) for r in values) / len(values)
        return out

    @property
    def columns(self) -> list[str]:
        """The accuracy columns after `clean`: one per attack setting, then the per-sample worst case."""
        worst = self.settings and all(r.worst_case_accuracy is not None for r in self.results.values())
        return self.attack_keys + ([WORST_CASE] if worst else [])

    def value(self, dataset: str, column: str) -> float:
        """The accuracy of `dataset` in `column` (an attack setting's key or the worst case)."""
        return self.results[dataset].accuracy(column)

    def to_markdown(self) -> str:
        """A Markdown table: one row per dataset plus the mean, accuracy in percent, after how it was obtained."""
        keys = self.columns
        overridden = f" with {', '.join(self.overrides)} overridden" if self.overrides else ""
        record = self.protocol_record
        precision = self.mixed_precision
        if record is not None and record.mixed_precision != precision:
            precision += f" (the protocol's {record.mixed_precision} is CUDA-only; this ran without CUDA)"
        lines = [
            f"Protocol `{self.protocol}`{overridden} (logit scale {self.logit_scale:g}, normalisation mean "
            f"{[round(v, 4) for v in self.image_mean]}, precision {precision}{self.numerics_text}), model "
            f"`{self.model}`. {self.description}",
            "",
            "Attacks:",
            "",
            *[f"- `{s.key}`: {s.describe()}{self._zero_gradient_text(s.key)}" for s in self.settings],
            *(
                [f"- `{WORST_CASE}`: per sample, robust only if it survives every attack and every iterate above"]
                if WORST_CASE in keys
                else []
            ),  # fmt: skip
            "",
            *self._prompt_lines(),
            *self._data_lines(),
            "| dataset | samples | clean | " + " | ".join(keys) + " |",
            "|---|---:|---:|" + "---:|" * len(keys),
        ]
        for name, r in self.results.items():
            cells = " | ".join(f"{100 * self.value(name, k):.2f}" for k in keys)
            lines.append(f"| {name} | {r.samples} | {100 * r.clean_accuracy:.2f} | {cells} |")
        if len(self.results) > 1:
            mean = self.summary()
            cells = " | ".join(f"{100 * mean[k]:.2f}" for k in keys)
            lines.append(f"| **mean** | | **{100 * mean['clean']:.2f}** | {cells} |")
        return "\n".join(lines) + "\n"

    def _zero_gradient_text(self, key: str) -> str:
        """How much of the first attack step was blind (exactly-zero input-gradient entries), worst dataset."""
        fractions = [
            r.first_step_zero_gradient[key] for r in self.results.values() if key in r.first_step_zero_gradient
        ]
        return f"; first-step zero input-gradient entries: {max(fractions):.2%}" if fractions else ""

    def _data_lines(self) -> list[str]:
        """Per dataset, what differs from the header: the data's own departure from the official code, a published
        sample list, a logit scale of its own, which reading of Caltech-256's official names ran."""
        record, lines = self.protocol_record, []
        for name, r in self.results.items():
            notes = [r.official_difference] if r.official_difference else []
            if r.sample_list:
                notes.append(f"the samples are {SAMPLE_LISTS[r.sample_list]}")
            if r.logit_scale is not None:
                notes.append(f"logit scale {r.logit_scale:g} (the checkpoint's own), not the protocol's")
            if name == "caltech256" and record is not None and record.texts == "pmg_aft":
                notes.append(f"the official class names read {record.caltech256_names}")
            lines += [f"Data: {name}: {'; '.join(notes)}."] if notes else []
        return lines + [""] if lines else lines

    def _prompt_lines(self) -> list[str]:
        """The prompts of results that do not come from a named protocol (a trainer's own eval sets)."""
        custom = {tuple(r.templates) for r in self.results.values() if r.protocol == CUSTOM_PROTOCOL}
        if not custom:
            return []
        return ["Prompts of the custom eval sets: " + "; ".join(" / ".join(f"`{t}`" for t in c) for c in custom), ""]

    def save(self, output_dir: str) -> list[str]:
        """Write `report.json` (with its digest), `report.md` and the plots, each whole or not at all; return the
        written paths."""
        self.check_values()
        self.report_digest = self.content_digest()
        paths = [os.path.join(output_dir, REPORT_FILE), os.path.join(output_dir, "report.md")]
        write_json(paths[0], self.to_dict())
        write_text(paths[1], self.to_markdown())
        return paths + self.plot(output_dir)

    @classmethod
    def load(cls, path: str) -> Report:
        """Load a report from its JSON file or the folder holding it, checked: readable, unchanged since it was
        written (its digest), and holding only values an evaluation can produce.

        Raises:
            [`ReportError`]: naming the file and what is wrong with it.
        """
        if os.path.isdir(path):
            path = os.path.join(path, REPORT_FILE)
        if not os.path.isfile(path):
            raise MissingInputError(f"{path}: no such report; pass a `pmg-aft eval` output folder or its report.json.")
        rerun = "rerun `pmg-aft eval` with the same --output_dir to rewrite it (finished datasets are kept)"
        try:
            with open(path, encoding="utf-8") as f:
                report = cls(**json.load(f))
        except json.JSONDecodeError as error:
            raise ReportError(
                f"{path} is not a readable report ({error.msg} at line {error.lineno}); the file may be truncated: "
                f"{rerun}."
            ) from error
        except (TypeError, ValueError, KeyError, AttributeError, UnicodeDecodeError) as error:
            raise ReportError(
                f"{path} is not a pmg_aft report ({type(error).__name__}: {str(error)[:160]})."
            ) from error
        report.check_values(path)
        if report.report_digest is None:
            raise ReportError(f"{path} carries no digest (written before reports had one, or by hand): {rerun}.")
        if report.report_digest != report.content_digest():
            raise ReportError(f"{path} was changed after pmg_aft wrote it (its digest no longer matches): {rerun}.")
        return report

    def plot_files(self) -> list[str]:
        """The plots [`plot`] writes for this report (a card shows them)."""
        if not self.results:
            return []
        return ["accuracy.png"] + (["accuracy_vs_eps.png"] if self._eps_curves() else [])

    def plot(self, output_dir: str) -> list[str]:
        """Per-dataset clean vs robust bars (`accuracy.png`) and, with several budgets, accuracy vs eps; a plot of an
        earlier report that this one does not make is removed (it would show other figures beside these)."""
        for stale in set(PLOTS) - set(self.plot_files()):
            if os.path.exists(os.path.join(output_dir, stale)):
                os.remove(os.path.join(output_dir, stale))
        # The Figure API draws off-screen without touching the user's pyplot backend.
        from matplotlib import colormaps
        from matplotlib.figure import Figure

        names = list(self.results)
        if not names:
            return []
        series = [("clean", [self.results[n].clean_accuracy for n in names])]
        series += [(k, [self.value(n, k) for n in names]) for k in self.columns]
        colours = colormaps["tab10" if len(series) <= 10 else "tab20"].colors
        width = 0.8 / len(series)
        fig = Figure(figsize=(max(7.0, 0.35 * len(names) * len(series) + 3), 4))
        ax = fig.add_subplot()
        for i, (label, values) in enumerate(series):
            ax.bar([j + i * width for j in range(len(names))], [100 * v for v in values], width, label=label,
                   color=colours[i % len(colours)])  # fmt: skip
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=45, ha="right")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 100)
        name = os.path.basename(self.model.rstrip("/")) or self.model
        ax.set_title(f"{name}: zero-shot accuracy, {self.protocol} protocol", fontsize="medium")
        ax.legend(fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
        fig.tight_layout()
        paths = [os.path.join(output_dir, "accuracy.png")]
        with atomic_path(paths[0]) as temporary:
            fig.savefig(temporary, dpi=120, format="png")
        curves = self._eps_curves()
        if curves:
            fig = Figure(figsize=(6, 4))
            ax = fig.add_subplot()
            for label, points in curves.items():
                ax.plot([p[0] * 255 for p in points], [100 * p[1] for p in points], marker="o", label=label)
            ax.set_xlabel("eps (x 1/255)")
            ax.set_ylabel("mean robust accuracy (%)")
            ax.legend(fontsize="small")
            fig.tight_layout()
            paths.append(os.path.join(output_dir, "accuracy_vs_eps.png"))
            with atomic_path(paths[-1]) as temporary:
                fig.savefig(temporary, dpi=120, format="png")
        return paths

    def _eps_curves(self) -> dict[str, list[tuple[float, float]]]:
        mean = self.summary()
        curves: dict[str, list[tuple[float, float]]] = {}
        for setting in self.settings:
            curves.setdefault(setting.label, []).append((setting.eps, mean[setting.key]))
        return {k: sorted(v) for k, v in curves.items() if len(v) > 1}
