"""One table for several models (methods, published checkpoints) evaluated with the same suite and settings."""

from __future__ import annotations

import os

from ..errors import InputError
from ..outputs import write_text
from .protocols import Protocol, get_protocol
from .report import Report


def comparison_table(reports: dict[str, Report]) -> str:
    """A Markdown table: one row per model, the mean over datasets of clean and each robust accuracy (in %),
    then one column per dataset for the first attack. All reports must share protocol and attack settings."""
    if not reports:
        raise InputError("Nothing to compare: no reports.")
    first = next(iter(reports.values()))
    for name, report in reports.items():
        if _setup(report) != _setup(first):
            different = sorted(k for k in _setup(report) if _setup(report)[k] != _setup(first).get(k))
            raise InputError(
                f"{name} was evaluated otherwise than {next(iter(reports))} (they differ in {different}); compare "
                "like with like."
            )
    keys = first.columns
    datasets = list(first.results)
    lead = keys[0] if keys else None
    header = ["model", "clean (mean)"] + [f"{k} (mean)" for k in keys]
    header += [f"{d} {lead}" for d in datasets] if lead and len(datasets) > 1 else []
    attacks = "; ".join(f"`{s.key}` {s.describe()}" for s in first.settings)
    overridden = f" with {', '.join(first.overrides)} overridden" if first.overrides else ""
    lines = [f"Protocol `{first.protocol}`{overridden} (logit scale {first.logit_scale:g}), datasets: "
             f"{', '.join(datasets)}. "
             f"Attacks: {attacks}.", "",
             "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]  # fmt: skip
    for name, report in reports.items():
        mean = report.summary()
        cells = [f"{100 * mean['clean']:.2f}"] + [f"{100 * mean[k]:.2f}" for k in keys]
        if lead and len(datasets) > 1:
            cells += [f"{100 * report.value(d, lead):.2f}" for d in datasets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _setup(report: Report) -> dict:
    """Everything that must match for two reports' figures to be compared: the effective protocol's fields (a
    per-model logit scale is the model's own, so it may differ), the attack settings and the datasets."""
    protocol = report.protocol_record
    record = {k: v for k, v in protocol.to_dict().items() if k not in ("description", "evidence")} if protocol else {}
    scale = None if protocol is not None and protocol.logit_scale is None else report.logit_scale
    return {**record, "protocol": report.protocol, "logit_scale": scale, "attacks": report.attack_keys,
            "datasets": sorted(report.results), "image_mean": report.image_mean}  # fmt: skip


def compare(models: dict, output_dir: str, protocol: str | Protocol = "pmg_aft", **suite_kwargs) -> str:
    """One protocol's leaderboard of `models` (`{name: (model, processor)}` or loaders; [`run_leaderboard`]: each
    report in `output_dir/<model>/<protocol>/`, so an interrupted comparison resumes per model and dataset) as one
    table of means and per-dataset figures, written to `comparison.md`. `suite_kwargs` are [`evaluate_robustness`]'s
    arguments. Returns the table."""
    from .leaderboard import model_folders, run_leaderboard

    record = get_protocol(protocol)
    run_leaderboard(models, [record], output_dir, **suite_kwargs)
    folders = model_folders(models)
    reports = {name: Report.load(os.path.join(output_dir, folders[name], record.name)) for name in models}
    table = comparison_table(reports)
    write_text(os.path.join(output_dir, "comparison.md"), table)
    return table
