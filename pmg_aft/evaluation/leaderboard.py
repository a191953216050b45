"""`pmg-aft leaderboard`: several models under several protocols, one table per protocol, each measured average
beside the figure the model's paper reports for the same protocol (and the gap), with plots."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field

from ..errors import DownloadError, InputError
from ..outputs import atomic_path, write_json, write_text
from .protocols import PROTOCOL_RECORDS, Protocol, get_protocol, protocol_digest
from .report import Report
from .results import WORST_CASE
from .suite import evaluate_robustness

LEADERBOARD_FILES = ("leaderboard.json", "leaderboard.md")


@dataclass
class Row:
    """One model under one protocol: per-dataset accuracies (fractions) by column (`clean`, each attack key,
    `worst case`), where they come from (`measured` or a model card), and the paper's figures for this protocol."""

    model: str
    protocol: str
    columns: list[str]
    per_dataset: dict[str, dict[str, float]]
    source: str = "measured"
    overrides: list[str] = field(default_factory=list)
    reported: list[dict] = field(default_factory=list)

    @classmethod
    def from_report(cls, model: str, report: Report, reported=()) -> Row:
        per_dataset = {
            name: {"clean": r.clean_accuracy, **{k: r.accuracy(k) for k in report.columns}}
            for name, r in report.results.items()
        }
        figures = [asdict(f) for f in reported if f.protocol == report.protocol]
        return cls(model, report.protocol, ["clean", *report.columns], per_dataset, overrides=list(report.overrides),
                   reported=figures)  # fmt: skip

    def mean(self, column: str, datasets: list[str] | None = None) -> float | None:
        names = datasets or list(self.per_dataset)
        values = [self.per_dataset[d].get(column) for d in names if d in self.per_dataset]
        if len(values) != len(names) or any(v is None for v in values):
            return None
        return sum(values) / len(values)

    def gaps(self) -> list[dict]:
        """Each reported figure with the measured mean over the paper's datasets and the difference (measured -
        reported, points), or why there is none."""
        out = []
        for figure in self.reported:
            column = "clean" if figure["metric"] == "clean" else figure["attack"]
            datasets = figure["datasets"] if isinstance(figure["datasets"], list) else None
            missing = [d for d in datasets or [] if d not in self.per_dataset]
            measured = None if self.overrides or missing or datasets is None else self.mean(column, datasets)
            why = (f"overridden: {', '.join(self.overrides)}" if self.overrides
                   else f"not evaluated: {', '.join(missing)}" if missing
                   else "the paper's datasets are not listed" if datasets is None
                   else f"no `{column}` column" if measured is None else "")  # fmt: skip
            gap = None if measured is None else round(100 * measured - figure["value"], 2)
            out.append({**figure, "column": column, "measured": measured, "gap": gap, "no_gap_because": why})
        return out


@dataclass
class Leaderboard:
    """Rows of models x protocols; `to_markdown` gives one table per protocol, `save` the JSON, Markdown and plots."""

    rows: list[Row]

    def protocols(self) -> list[str]:
        return list(dict.fromkeys(r.protocol for r in self.rows))

    def to_markdown(self) -> str:
        lines = []
        for protocol in self.protocols():
            rows = [r for r in self.rows if r.protocol == protocol]
            columns = list(dict.fromkeys(c for r in rows for c in r.columns))
            datasets = sorted({d for r in rows for d in r.per_dataset})
            record = get_protocol(protocol) if protocol in PROTOCOL_RECORDS else None
            lines += [f"## Protocol `{protocol}`", "",
                      (record.description + " " + record.comparable_with) if record else "", "",
                      f"Means over {len(datasets)} dataset(s): {', '.join(datasets)}.", "",
                      "| model | source | " + " | ".join(columns) + " | paper (its datasets) | measured | gap |",
                      "|---|---|" + "---:|" * (len(columns) + 3)]  # fmt: skip
            for row in rows:
                means = [row.mean(c) for c in columns]
                cells = [f"{100 * m:.2f}" if m is not None else "" for m in means]
                gaps = row.gaps() or [None]
                for i, gap in enumerate(gaps):
                    head = [
                        row.model,
                        row.source + (f" (overridden: {', '.join(row.overrides)})" if row.overrides else ""),
                    ]
                    head += cells if i == 0 else [""] * len(columns)
                    if gap is None:
                        tail = ["", "", ""]
                    else:
                        tail = [f"{gap['value']:.2f} {gap['column']}", "" if gap["measured"] is None
                                else f"{100 * gap['measured']:.2f}",
                                _gap_text(gap)]  # fmt: skip
                    lines.append("| " + " | ".join(head + tail) + " |")
            lines.append("")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "rows": [asdict(r) | {"means": {c: r.mean(c) for c in r.columns}, "gaps": r.gaps()} for r in self.rows]
        }

    def save(self, output_dir: str) -> list[str]:
        """Write `leaderboard.json`, `leaderboard.md` and the plots, each whole or not at all."""
        paths = [os.path.join(output_dir, n) for n in LEADERBOARD_FILES]
        write_json(paths[0], self.to_dict(), indent=2)
        write_text(paths[1], self.to_markdown())
        return paths + self.plot(output_dir)

    def plot(self, output_dir: str) -> list[str]:
        """Per protocol: the clean-vs-robust trade-off (one point per model, robust = the worst case, else the
        first attack) and a heat map of that robust accuracy per model and dataset."""
        from matplotlib.figure import Figure

        paths = []
        for protocol in self.protocols():
            rows = [r for r in self.rows if r.protocol == protocol]
            robust = [_robust_column(r) for r in rows]
            if not any(robust):
                continue
            fig = Figure(figsize=(5.5, 4.5))
            ax = fig.add_subplot()
            for row, column in zip(rows, robust):
                x, y = 100 * row.mean("clean"), 100 * (row.mean(column) or 0)
                ax.scatter([x], [y])
                ax.annotate(row.model, (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
            ax.set_xlabel("mean clean accuracy (%)")
            ax.set_ylabel(f"mean robust accuracy (%): {robust[0]}")
            ax.set_title(f"clean vs robust, {protocol} protocol", fontsize="medium")
            fig.tight_layout()
            paths.append(os.path.join(output_dir, f"tradeoff_{protocol}.png"))
            with atomic_path(paths[-1]) as temporary:
                fig.savefig(temporary, dpi=120, format="png")
            datasets = sorted({d for r in rows for d in r.per_dataset})
            grid = [
                [100 * r.per_dataset.get(d, {}).get(c, float("nan")) for d in datasets] for r, c in zip(rows, robust)
            ]
            fig = Figure(figsize=(max(4.0, 0.6 * len(datasets) + 3), max(2.5, 0.5 * len(rows) + 1.5)))
            ax = fig.add_subplot()
            image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
            for i, values in enumerate(grid):
                for j, v in enumerate(values):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize="x-small", color="white")
            ax.set_xticks(range(len(datasets)), datasets, rotation=45, ha="right")
            ax.set_yticks(range(len(rows)), [r.model for r in rows])
            fig.colorbar(image, ax=ax, label="robust accuracy (%)")
            ax.set_title(f"robust accuracy per dataset, {protocol} protocol", fontsize="medium")
            fig.tight_layout()
            paths.append(os.path.join(output_dir, f"heatmap_{protocol}.png"))
            with atomic_path(paths[-1]) as temporary:
                fig.savefig(temporary, dpi=120, format="png")
        return paths


def _gap_text(gap: dict) -> str:
    return f"{gap['gap']:+.2f}" if gap["gap"] is not None else f"n/a ({gap['no_gap_because']})"


def _robust_column(row: Row) -> str | None:
    attacks = [c for c in row.columns if c != "clean"]
    return WORST_CASE if WORST_CASE in attacks else (attacks[0] if attacks else None)


def slug(name: str) -> str:
    """A folder name for a model name, a path or a Hub id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/")).strip("_") or "model"


def model_folders(names) -> dict[str, str]:
    """`{name: folder name}` for the models of a leaderboard or comparison, refusing names that would share a folder
    (`org/a` and `org_a`; `a` and `A` on a case-insensitive disk), whose results would overwrite each other."""
    folders: dict[str, str] = {}
    for name in names:
        folder = slug(name)
        other = next((n for n, f in folders.items() if f.lower() == folder.lower()), None)
        if other is not None:
            raise InputError(
                f"the models {other!r} and {name!r} would share the results folder {folder!r}: name them apart "
                "(--models NAME=PATH,...)."
            )
        folders[name] = folder
    return folders


def run_leaderboard(
    models: dict,
    protocols: list[str | Protocol],
    output_dir: str,
    reported: dict | None = None,
    progress: bool = True,
    **suite_kwargs,
) -> Leaderboard:
    r"""Evaluate each model under each protocol through the suite and write the leaderboard.

    Args:
        models (`dict`): `{name: (model, processor)}` or `{name: loader}`, a callable returning the pair (so only
            one model is in memory at a time).
        protocols (`list`): protocol names or [`Protocol`]s.
        output_dir (`str`): each report goes to `output_dir/<model>/<protocol>/`, so a rerun resumes per model,
            protocol and dataset; `leaderboard.json`, `leaderboard.md` and the plots go here.
        reported (`dict`, *optional*): `{name: [ReportedFigure, ...]}`, the papers' figures.
        suite_kwargs: [`evaluate_robustness`]'s arguments (benchmarks, loader, accelerator, ...).
    """
    from tqdm.auto import tqdm

    if not models or not protocols:
        raise InputError("A leaderboard needs at least one model and one protocol.")
    folders = model_folders(models)
    rows = []
    for name, source in models.items():
        model, processor = source() if callable(source) else source
        for protocol in tqdm(protocols, desc=name, disable=not progress):
            record = get_protocol(protocol)
            folder = os.path.join(output_dir, folders[name], record.name)
            report = evaluate_robustness(model, processor, record, model_id=name, output_dir=folder, **suite_kwargs)
            rows.append(Row.from_report(name, report, (reported or {}).get(name, ())))
        del model
    board = Leaderboard(rows)
    board.save(output_dir)
    return board


def card_value(where: str, result) -> float:
    """A `model-index` value as a leaderboard takes it: a finite accuracy in [0, 100] (%), else refused naming the
    card and the entry."""
    value = result.metric_value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 <= value <= 100:
        raise InputError(
            f"{where}: its card gives {result.dataset_name} {result.metric_name!r} = {value!r}, which is no "
            "accuracy in [0, 100] %: the card is broken or hand-edited, so its figures are not taken."
        )
    return float(value)


def card_sources(spec: str) -> dict[str, str]:
    """`{name: Hub id or local card}` for `--from_hub`: comma-separated Hub ids, local card files or folders, or an
    organisation (every model it publishes)."""
    cards = {}
    for item in [c.strip() for c in spec.split(",") if c.strip()]:
        if "/" not in item and not os.path.exists(item):
            from huggingface_hub import HfApi

            cards.update({m.id: m.id for m in HfApi().list_models(author=item)})
        else:
            cards[os.path.basename(os.path.normpath(item))] = item
    return cards


def rows_from_cards(cards: dict[str, str], protocols: list[str]) -> list[Row]:
    """Rows from the `model-index` of model cards (`{model: card path or Hub id}`), without running anything: only
    results whose protocol record equals the named protocol's (no overrides) are kept."""
    from huggingface_hub import ModelCard

    rows = []
    for model, where in cards.items():
        path = os.path.join(where, "README.md") if os.path.isdir(where) else where
        try:
            card = ModelCard.load(path)
        except Exception as error:  # no such file, offline, a private repo: the user can act on each
            raise DownloadError(
                f"{where}: no model card can be read ({type(error).__name__}: {str(error)[:200]})."
            ) from error
        per_protocol: dict[str, dict[str, dict[str, float]]] = {}
        for result in card.data.eval_results or []:
            args = result.metric_args or {}
            name = args.get("protocol") if isinstance(args, dict) else None
            if name not in protocols or args.get("overrides") or args.get("protocol_digest") != protocol_digest(name):
                continue
            column = {None: "clean", "worst-case": WORST_CASE}.get(result.metric_config, result.metric_config)
            value = card_value(where, result)
            per_protocol.setdefault(name, {}).setdefault(result.dataset_name, {})[column] = value / 100
        for name, per_dataset in per_protocol.items():
            columns = list(dict.fromkeys(c for d in per_dataset.values() for c in d))
            rows.append(Row(model, name, columns, per_dataset, source="model card"))
    if not rows:
        raise InputError(
            f"none of the cards ({', '.join(cards)}) has results of {', '.join(protocols)} as the protocol runs them "
            "unaltered (a result is kept only with its protocol's name and digest, and no overrides): nothing to "
            "tabulate."
        )
    return rows
