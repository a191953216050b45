"""The `pmg-aft` command. Every subcommand parses snake_case flags with `HfArgumentParser`, as `pmg-aft train` does;
bad input ([`InputError`]) is answered with one line and an exit status, a bug keeps its traceback."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields, make_dataclass

from accelerate import PartialState

from .attack_settings import AttackGrid
from .checkpoint_info import write_checkpoint_card
from .checkpoints import load_clip
from .data import BENCHMARKS
from .data.download import download_benchmarks
from .domains import BATCH, SEED, WORKERS, field
from .errors import (
    InputError,
    InputExit,
    machine_condition,
    scrubbed_output,
    show_traceback,
    tokens,
)
from .evaluation import PROTOCOL_RECORDS, EvalLoader, evaluate_robustness, get_protocol
from .evaluation.leaderboard import model_folders
from .evaluation.protocols import OVERRIDABLE, Protocol
from .evaluation.suite import benchmark_names
from .finetune import main as finetune
from .hub import push
from .outputs import check_output_dir, refuse_foreign
from .parsing import ArgumentParser, UnknownFlagsError, check_fields, optional_fields
from .trainers import TRAINERS
from .zoo import FORMATS, export_open_clip, get_zoo_entry, import_checkpoint, zoo_table

# The flags that override the chosen protocol's fields: the attack grid's and the protocol's own, each declared once
# on its record (`None`: the protocol's value).
ProtocolOverrides = make_dataclass(
    "ProtocolOverrides", optional_fields(AttackGrid) + optional_fields(Protocol, OVERRIDABLE), kw_only=True
)


@dataclass(kw_only=True)
class EvalRunArguments:
    """How an evaluation runs and where it writes, shared by `pmg-aft eval` and `pmg-aft leaderboard`: the
    benchmarks, the data loading, the seed and the output folder. `loader` is what they make, checked."""

    output_dir: str = field(metadata={"help": "Report folder; a rerun resumes finished datasets."})
    benchmarks: str = field(
        default="all", metadata={"help": "`all` or comma-separated names (pmg-aft datasets list)."}
    )
    per_device_eval_batch_size: int = field(default=64, domain=BATCH, metadata={"help": "Batch size per process."})
    dataloader_num_workers: int = field(
        default=0, domain=WORKERS, metadata={"help": "Data-loader worker processes (decoding and resizing)."}
    )
    benchmark_data_dir: str | None = field(default=None, metadata={"help": "Local copies, one sub-folder each."})
    seed: int = field(default=0, domain=SEED, metadata={"help": "Seeds random starts and AutoAttack."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace another run's or model's results in output_dir (else refused)."}
    )

    def __post_init__(self) -> None:
        # Every value checked here, naming its flag, rather than after the model has loaded.
        check_fields(self)
        self.benchmark_names = benchmark_names(self.benchmarks)  # an unknown name lists the valid ones
        self.loader = EvalLoader(batch_size=self.per_device_eval_batch_size, num_workers=self.dataloader_num_workers)
        if self.benchmark_data_dir is not None and not os.path.isdir(self.benchmark_data_dir):
            raise InputError(f"--benchmark_data_dir {self.benchmark_data_dir}: no such folder.")

    def overrides(self) -> dict:
        """The protocol fields given as flags (the rest are `None`: the protocol's own)."""
        return {f.name: getattr(self, f.name) for f in fields(ProtocolOverrides)} if isinstance(
            self, ProtocolOverrides) else {}  # fmt: skip

    def suite_kwargs(self) -> dict:
        """`evaluate_robustness` keyword arguments, but the protocol."""
        return dict(benchmarks=self.benchmark_names, loader=self.loader, benchmark_data_dir=self.benchmark_data_dir,
                    seed=self.seed, overwrite_output_dir=self.overwrite_output_dir)  # fmt: skip


@dataclass(kw_only=True)
class SuiteArguments(ProtocolOverrides, EvalRunArguments):
    """`pmg-aft eval`'s options: the protocol, any of its fields to override, and the shared evaluation options.
    `effective_protocol` is what they make, checked."""

    protocol: str = field(
        default="pmg_aft",
        metadata={
            "help": "The evaluation protocol: every option above defaults to its value (`pmg-aft protocols` lists "
            "them); a flag overrides one field and the report says so.",
            "choices": PROTOCOL_RECORDS.keys(),
        },
    )

    def __post_init__(self) -> None:
        EvalRunArguments.__post_init__(self)
        self.effective_protocol = get_protocol(self.protocol).override(**self.overrides())

    def suite_kwargs(self) -> dict:
        """`evaluate_robustness` keyword arguments."""
        return {"protocol": self.effective_protocol, **super().suite_kwargs()}


@dataclass
class EvalModelArguments:
    model_name_or_path: str = field(metadata={"help": "A Hub id or a local checkpoint folder."})
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of the model."})

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class PushArguments:
    model_dir: str = field(metadata={"help": "Checkpoint folder (save_model / save_pretrained output)."})
    hub_model_id: str = field(metadata={"help": "Target repository, org/name."})
    report_dir: str | None = field(default=None, metadata={"help": "A `pmg-aft eval` report folder for the card."})
    base_model: str | None = field(
        default=None, metadata={"help": "Hub id it was fine-tuned from (default: recorded)."}
    )
    license: str | None = field(
        default=None,
        metadata={
            "help": "Licence of the weights, only where their provenance records none (a recorded licence is kept; "
            "a different one is refused). Default: the recorded one."
        },
    )
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the repository as private."})

    def __post_init__(self) -> None:
        check_fields(self)
        check_repo_id(self.hub_model_id)


def check_repo_id(repo_id: str) -> None:
    """Refuse, before anything loads, a Hub repository id that cannot be one."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise InputError(f"--hub_model_id {repo_id!r} is not a Hub repository id (org/name): {error}") from None


@dataclass
class ZooImportArguments:
    output_dir: str = field(metadata={"help": "Folder for the CLIPModel, its processor, card and provenance."})
    file: str | None = field(
        default=None, metadata={"help": "The downloaded file (or open_clip folder); default: download a Hub release."}
    )
    format: str | None = field(
        default=None, metadata={"help": "The layout, for a file without a zoo record.", "choices": list(FORMATS)}
    )
    base_model: str | None = field(
        default=None, metadata={"help": "The CLIP an image tower is merged into (default: the zoo record's)."}
    )
    tokenizer_from: str | None = field(
        default=None, metadata={"help": "Where a whole open_clip CLIP takes its tokenizer (default: the base)."}
    )
    normalization: str | None = field(
        default=None,
        metadata={
            "help": "The training mean/std, over the record's: CLIP's, ImageNet's, or the base model's processor's.",
            "choices": ["clip", "imagenet", "base"],
        },
    )

    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace another run's or model's results in output_dir (else refused)."}
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class DownloadArguments:
    revision: str | None = field(default=None, metadata={"help": "A Hub revision instead of the registry's pin."})
    lock: str | None = field(
        default=None,
        metadata={"help": "JSON file for the resolved commits (default: $PMG_AFT_REVISIONS or ~/.cache/pmg_aft/)."},
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class ExportArguments:
    model_name_or_path: str = field(metadata={"help": "A CLIPModel folder or Hub id."})
    output_dir: str = field(metadata={"help": "Folder for open_clip_config.json and open_clip_model.safetensors."})
    format: str = field(default="open_clip", metadata={"help": "The target layout.", "choices": ["open_clip"]})

    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace another run's or model's results in output_dir (else refused)."}
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(kw_only=True)
class LeaderboardArguments(ProtocolOverrides, EvalRunArguments):
    """`pmg-aft leaderboard`'s options: the models, the protocols (each field flag overrides it in every protocol,
    and every report says so) and the shared evaluation options."""

    models: str | None = field(
        default=None,
        metadata={"help": "Comma-separated zoo names (imported into OUTPUT_DIR/zoo/), folders, Hub ids or name=path."},
    )
    protocols: str = field(default="pmg_aft,tga_zsr,clip_benchmark", metadata={"help": "Comma-separated protocols."})
    from_hub: str | None = field(
        default=None,
        metadata={"help": "Build the table from model cards instead (comma-separated Hub ids or local card files / "
                  "folders): only results whose protocol record matches are kept; nothing is run."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        EvalRunArguments.__post_init__(self)
        names = [p.strip() for p in self.protocols.split(",") if p.strip()]
        unknown = [p for p in names if p not in PROTOCOL_RECORDS]
        if unknown or not names:
            known = ", ".join(PROTOCOL_RECORDS)
            raise InputError(f"--protocols: unknown {unknown or 'none given'}; the protocols are {known}.")
        self.effective_protocols = [get_protocol(p).override(**self.overrides()) for p in names]


def parse_command(prog: str, groups: tuple, argv: list[str], description: str) -> tuple:
    """Parse `argv` into the dataclasses `groups`; an unknown flag (with a close spelling, if any) is an argparse
    error, with the usage."""
    parser = ArgumentParser(groups, prog=prog, description=description)
    try:
        return parser.parse(argv)
    except UnknownFlagsError as error:
        parser.error(str(error))


def _local(path: str | None) -> str | None:
    """`path` if it names something on this machine (else it is a Hub id, or nothing)."""
    return path if path and os.path.exists(os.path.expanduser(path)) else None


def eval_command(argv: list[str]) -> int:
    """`pmg-aft eval`: run the evaluation suite and write the report (JSON, Markdown, plots)."""
    model_args, suite = parse_command("pmg-aft eval", (EvalModelArguments, SuiteArguments), argv,
                                      "Robust zero-shot evaluation of a CLIPModel.")  # fmt: skip
    path = model_args.model_name_or_path
    check_output_dir(suite.output_dir, [_local(path), suite.benchmark_data_dir])
    model, processor = load_clip(path, revision=model_args.model_revision)
    report = evaluate_robustness(model, processor, output_dir=suite.output_dir, model_id=path, **suite.suite_kwargs())
    print(report.to_markdown())
    for warning in report.warnings:
        print(f"warning: {warning}")
    if not PartialState().is_main_process:
        return 0
    if os.path.isdir(path):  # a local checkpoint: the card `pmg-aft push` would upload with this report
        write_checkpoint_card(path, report, suite.output_dir)
        print(f"report and model card written to {suite.output_dir}")
    else:
        print(f"report written to {suite.output_dir}")
    return 0


def _renamed(argv: list[str], names: dict[str, str]) -> list[str]:
    """`argv` with the flags `names` maps renamed, `--flag=value` forms too."""
    renamed = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        renamed.append(arg if flag not in names else f"{names[flag]}={value}" if eq else names[flag])
    return renamed


def compare_command(argv: list[str]) -> int:
    """`pmg-aft compare`, now `pmg-aft leaderboard` under one protocol (`--protocol` is `--protocols`, default
    `pmg_aft`), plus the comparison table of its reports in `comparison.md`, as `pmg_aft.evaluation.compare` writes."""
    from .evaluation import Report
    from .evaluation.compare import comparison_table
    from .outputs import write_text

    given = {a.partition("=")[0] for a in argv}
    translated = _renamed(argv, {"--protocol": "--protocols"})
    if not given & {"--protocol", "--protocols", "-h", "--help"}:
        translated += ["--protocols", "pmg_aft"]  # compare's default protocol
    print(f"pmg-aft: compare is now `pmg-aft leaderboard` (running pmg-aft leaderboard {' '.join(translated)})",
          file=sys.stderr)  # fmt: skip
    if given & {"-h", "--help"}:
        return leaderboard_command(translated)
    (args,) = parse_command("pmg-aft compare", (LeaderboardArguments,), translated, compare_command.__doc__)
    if len(args.effective_protocols) != 1 or not args.models:
        raise InputError("pmg-aft compare compares --models under one --protocol; for several protocols run "
                         "pmg-aft leaderboard.")  # fmt: skip
    status = run_leaderboard_command(args)
    names = [name for name, _ in model_specs(args.models)]
    folders, protocol = model_folders(names), args.effective_protocols[0].name
    reports = {n: Report.load(os.path.join(args.output_dir, folders[n], protocol)) for n in names}
    table = comparison_table(reports)
    write_text(os.path.join(args.output_dir, "comparison.md"), table)
    print(table)
    return status


def convert_command(argv: list[str]) -> int:
    """`pmg-aft convert`, now `pmg-aft zoo import --file CHECKPOINT --format openai_state_dict --base_model BASE`: an
    OpenAI-layout checkpoint file merged onto its base `CLIPModel` through the strict, checked import path
    (`--checkpoint` is `--file`; the normalisation defaults to the base model's processor's, as convert's did)."""
    given = {a.partition("=")[0] for a in argv}
    if "--format" in given:
        raise InputError("pmg-aft convert reads the OpenAI layout only; for another format run "
                         "`pmg-aft zoo import --file FILE --format NAME`.")  # fmt: skip
    translated = _renamed(argv, {"--checkpoint": "--file"})
    if not given & {"-h", "--help"}:
        translated += ["--format", "openai_state_dict"]
        translated += [] if "--normalization" in given else ["--normalization", "base"]
    print(f"pmg-aft: convert is now `pmg-aft zoo import` (running pmg-aft zoo import {' '.join(translated)})",
          file=sys.stderr)  # fmt: skip
    return zoo_command(["import", *translated])


def _checked(provenance) -> str:
    check = provenance.image_embedding_check
    said = f"image embeddings checked (largest relative difference {check['max_relative_difference']:.1e})"
    return (said if check else "loaded as a CLIPModel") + f"; licence {provenance.licence.describe()}"


def _asks_help(argv: list[str], *actions: str) -> bool:
    """`--help` alone, or after an action that takes no flags (`zoo list --help`)."""
    return argv[:1] in (["-h"], ["--help"]) or (
        argv[:1] in [[a] for a in actions] and bool({"-h", "--help"} & set(argv))
    )


def zoo_command(argv: list[str]) -> int:
    """`pmg-aft zoo list` and `pmg-aft zoo import NAME [--file PATH] --output_dir DIR`."""
    if _asks_help(argv, "list"):
        print(command_usage("zoo") + "\n(pmg-aft zoo import --help: its flags)")
        return 0
    if not argv or argv[0] not in ("list", "import"):
        raise InputError("pmg-aft zoo takes `list` or `import NAME --output_dir DIR [--file PATH]`.")
    if argv[0] == "list":
        if argv[1:]:
            raise InputError(f"pmg-aft zoo list takes no arguments (got {argv[1:]}).")
        print(zoo_table())
        return 0
    name = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else None
    (args,) = parse_command("pmg-aft zoo import", (ZooImportArguments,), argv[2 if name else 1 :],
                            "Import a published checkpoint as a CLIPModel folder.")  # fmt: skip
    entry = get_zoo_entry(name) if name else None
    if entry is None and not (args.file and args.format):
        raise InputError("pmg-aft zoo import: name a zoo checkpoint (pmg-aft zoo list), or pass --file and --format.")
    _, _, provenance = import_checkpoint(args.output_dir, entry, file=args.file, layout=args.format,
                                         base_model=args.base_model, tokenizer_from=args.tokenizer_from,
                                         normalization=args.normalization,
                                         overwrite=args.overwrite_output_dir)  # fmt: skip
    print(f"imported {name or args.file} ({provenance.source_format}, sha256 {provenance.source_sha256}) to "
          f"{args.output_dir}; {_checked(provenance)}; load it with CLIPModel.from_pretrained")  # fmt: skip
    return 0


def export_command(argv: list[str]) -> int:
    """`pmg-aft export --format open_clip`: a CLIPModel checkpoint as an open_clip folder, read back and checked."""
    (args,) = parse_command("pmg-aft export", (ExportArguments,), argv, export_command.__doc__)
    check_output_dir(args.output_dir, [_local(args.model_name_or_path)])
    model, processor = load_clip(args.model_name_or_path)
    checks = export_open_clip(model, processor, args.output_dir, source=args.model_name_or_path,
                              overwrite=args.overwrite_output_dir)  # fmt: skip
    said = ", ".join(f"{k} {v:.1e}" for k, v in checks.items())
    print(f"exported {args.model_name_or_path} to {args.output_dir} (open_clip); embeddings read back equal "
          f"(largest relative difference: {said})")  # fmt: skip
    if "open_clip" not in checks:
        print("open_clip is not installed here, so the folder was read back with pmg_aft's reader only "
              "(pip install -e '.[interop]' to check with open_clip itself).")  # fmt: skip
    return 0


def model_specs(spec: str | None) -> list[tuple[str, str]]:
    """`(name, where)` of each comma-separated `--models` item: `name=path`, or a zoo name, folder or Hub id that
    names itself."""
    items = [m.strip() for m in (spec or "").split(",") if m.strip()]
    return [tuple(p.strip() for p in i.split("=", 1)) if "=" in i else (i, i) for i in items]


def leaderboard_models(spec: str, output_dir: str, overwrite: bool = False) -> tuple[dict, dict]:
    """`{name: loader}` and `{name: reported figures}` for `--models`: zoo names (imported once into
    OUTPUT_DIR/zoo/NAME), checkpoint folders (their zoo provenance, if imported), Hub ids, or name=path."""
    from .zoo import ReportedFigure, read_provenance, zoo_entries

    loaders, reported = {}, {}
    for name, path in model_specs(spec):
        if path in zoo_entries():
            folder = os.path.join(output_dir, "zoo", path)
            if read_provenance(folder) is None:
                import_checkpoint(folder, get_zoo_entry(path), overwrite=overwrite)
            path = folder
        record = read_provenance(path) if os.path.isdir(path) else None
        entry = (record.zoo_entry if record else None) or {}
        reported[name] = [ReportedFigure(**f) for f in entry.get("reported", [])]
        loaders[name] = lambda path=path: load_clip(path)
    if not loaders:
        raise InputError("--models names no model: give comma-separated zoo names, folders, Hub ids or name=path.")
    return loaders, reported


def leaderboard_command(argv: list[str]) -> int:
    """`pmg-aft leaderboard`: models x protocols through the suite (or read from model cards), one table per
    protocol beside the papers' figures."""
    (args,) = parse_command("pmg-aft leaderboard", (LeaderboardArguments,), argv, leaderboard_command.__doc__)
    return run_leaderboard_command(args)


def run_leaderboard_command(args: LeaderboardArguments) -> int:
    """`pmg-aft leaderboard` on its parsed arguments (`pmg-aft compare` runs it too)."""
    from .evaluation.leaderboard import (
        LEADERBOARD_FILES,
        Leaderboard,
        card_sources,
        rows_from_cards,
        run_leaderboard,
    )

    inputs = [_local(path) for _, path in model_specs(args.models)] + [args.benchmark_data_dir]
    check_output_dir(args.output_dir, inputs)
    if not os.path.isfile(os.path.join(args.output_dir, LEADERBOARD_FILES[0])):  # else it is ours, rebuilt
        found = [n for n in LEADERBOARD_FILES if os.path.exists(os.path.join(args.output_dir, n))]
        refuse_foreign(args.output_dir, found, "files pmg_aft did not write", args.overwrite_output_dir)
    if args.from_hub:
        given = sorted(k for k, v in args.overrides().items() if v is not None)
        given += ["models"] if args.models else []
        given += ["benchmarks"] if args.benchmarks != "all" else []
        if given:
            raise InputError(
                f"--from_hub reads published results under each protocol as recorded and runs nothing, so {given} "
                "cannot apply; leave them out, or evaluate with --models (without --from_hub)."
            )
        protocols = [p.name for p in args.effective_protocols]
        board = Leaderboard(rows_from_cards(card_sources(args.from_hub), protocols))
        board.save(args.output_dir)
    elif args.models:
        model_folders([name for name, _ in model_specs(args.models)])  # names sharing a folder: refused first
        loaders, reported = leaderboard_models(args.models, args.output_dir, args.overwrite_output_dir)
        board = run_leaderboard(loaders, args.effective_protocols, args.output_dir, reported=reported,
                                **args.suite_kwargs())  # fmt: skip
    else:
        raise InputError("pmg-aft leaderboard: pass --models (to evaluate) or --from_hub (to read model cards).")
    print(board.to_markdown())
    print(f"leaderboard written to {args.output_dir} (leaderboard.json, leaderboard.md, plots)")
    return 0


def push_command(argv: list[str]) -> int:
    """`pmg-aft push`: upload weights, processor, model card and plots, each checked against the others."""
    (args,) = parse_command("pmg-aft push", (PushArguments,), argv, "Publish a checkpoint to the Hugging Face Hub.")
    url = push(args.model_dir, args.hub_model_id, args.report_dir, private=args.hub_private_repo,
               base_model=args.base_model, license=args.license)  # fmt: skip
    print(f"uploaded to {url}")
    return 0


def datasets_list(out=None) -> None:
    out = out or sys.stdout
    print(f"{'name':15s} {'hub id':32s} {'split':10s} {'columns':18s} {'classes':>7s}  revision", file=out)
    for b in BENCHMARKS.values():
        count = str(len(b.class_names)) if b.class_names else "data"
        columns = f"{b.image_column},{b.label_column}"
        revision = (b.revision or "not pinned")[:12] + (" (gated)" if b.gated else "")
        hub = b.hub_id or "generated"
        print(f"{b.name:15s} {hub:32s} {b.split:10s} {columns:18s} {count:>7s}  {revision}", file=out)


def protocols_command(argv: list[str]) -> int:
    """`pmg-aft protocols [NAME ...]`: every field of each evaluation protocol and where it comes from."""
    if {"-h", "--help"} & set(argv):
        print(command_usage("protocols") + f"\n(NAME: one of {', '.join(PROTOCOL_RECORDS)}; default: all)")
        return 0
    names = argv or list(PROTOCOL_RECORDS)
    if flags := [n for n in names if n.startswith("-")]:
        raise InputError(f"protocols takes protocol names, not flags (got {flags}).")
    if unknown := [n for n in names if n not in PROTOCOL_RECORDS]:
        raise InputError(f"protocols: unknown {unknown}; the protocols are {', '.join(PROTOCOL_RECORDS)}.")
    for record in (PROTOCOL_RECORDS[name] for name in names):
        print(f"{record.name}: {record.description}")
        for key, value in record.to_dict().items():
            if key not in ("name", "description", "evidence", "overridden"):
                print(f"  {key:18s} {value}")
        print(f"  evidence           {record.evidence}\n")
    return 0


def datasets_command(argv: list[str]) -> int:
    """`pmg-aft datasets list` and `pmg-aft datasets download NAME [NAME ...]|all [--revision R] [--lock FILE]`: the
    same shape as `pmg-aft zoo` (an action, its names, then the flags of its record)."""
    if _asks_help(argv, "list"):
        print(command_usage("datasets") + "\n(pmg-aft datasets download --help: its flags)")
        return 0
    if not argv or argv[0] not in ("list", "download"):
        raise InputError(
            "pmg-aft datasets takes `list` or `download NAME [NAME ...]|all [--revision R] [--lock FILE]`."
        )
    if argv[0] == "list":
        if argv[1:]:
            raise InputError(f"pmg-aft datasets list takes no arguments (got {argv[1:]}).")
        datasets_list()
        return 0
    rest = argv[1:]
    count = next((i for i, a in enumerate(rest) if a.startswith("-")), len(rest))
    names, flags = rest[:count], rest[count:]
    (args,) = parse_command("pmg-aft datasets download", (DownloadArguments,), flags,
                            "Pre-fetch benchmarks into the Hugging Face cache.")  # fmt: skip
    if not names:
        raise InputError("pmg-aft datasets download: name the benchmarks (pmg-aft datasets list), or `all`.")
    download_benchmarks(names, args.revision, args.lock)
    return 0


def train_command(argv: list[str]) -> int:
    """`pmg-aft train`: the fine-tuning job of examples/finetune.py."""
    finetune(argv)
    return 0


@dataclass(frozen=True)
class Command:
    """A `pmg-aft` subcommand: its usage lines (`(synopsis, what it does)`), the function that runs it on its argv,
    and the argument records whose fields are its flags (each checked by [`check_fields`] when parsed)."""

    name: str
    lines: tuple[tuple[str, str], ...]
    run: Callable[[list[str]], int]
    records: tuple[type, ...] | Callable[[], tuple[type, ...]] = ()
    # The words between the command and the flags of `records` (`pmg-aft zoo import NAME --output_dir ...`).
    record_words: tuple[str, ...] = ()
    # A former command name: the command it became (it runs that one, saying so).
    alias_of: str | None = None

    def argument_records(self) -> tuple[type, ...]:
        """The records whose fields are this command's flags."""
        return self.records() if callable(self.records) else self.records


def train_records() -> tuple[type, ...]:
    """The records `pmg-aft train` parses: the job's, and each registered method's config."""
    from .finetune import DataArguments, ScriptArguments

    return (ScriptArguments, DataArguments, *(trainer.config_class for trainer in TRAINERS.values()))


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("train", (("train", "robust fine-tuning of a CLIP model (--method METHOD; the flags of "
                           "examples/finetune.py; --config FILE.yaml)"),), train_command, train_records),
        Command("datasets", (("datasets list", "the registered benchmarks: Hub ids, splits, pinned revisions, "
                              "columns, class counts"),
                             ("datasets download NAME|all", "pre-fetch benchmarks into the Hugging Face cache (for "
                              "offline compute nodes)")), datasets_command, (DownloadArguments,), ("download",)),
        Command("protocols", (("protocols [NAME]", "the evaluation protocols: every field and its source"),),
                protocols_command),
        Command("eval", (("eval", "clean and robust zero-shot accuracy of any CLIP checkpoint"),), eval_command,
                (EvalModelArguments, SuiteArguments)),
        Command("push", (("push", "upload a checkpoint with its model card and plots to the Hub"),), push_command,
                (PushArguments,)),
        Command("compare", (("compare", "now `pmg-aft leaderboard` under one protocol (--protocol is --protocols, "
                             "default pmg_aft), plus comparison.md"),), compare_command, alias_of="leaderboard"),
        Command("convert", (("convert", "now `pmg-aft zoo import --format openai_state_dict` (--checkpoint is --file; "
                             "the base model's normalisation unless --normalization)"),),
                convert_command, alias_of="zoo"),
        Command("zoo", (("zoo list", "the published robust CLIP checkpoints: format, licence, where, downloadable "
                         "or not"),
                        ("zoo import NAME", "one of them as a checked CLIPModel folder with a card crediting its "
                         "authors"),
                        ("zoo import --file FILE --format F", "any checkpoint file of a known layout, checked the "
                         "same way")), zoo_command, (ZooImportArguments,), ("import",)),
        Command("export", (("export", "a CLIPModel checkpoint as an open_clip folder"),), export_command,
                (ExportArguments,)),
        Command("leaderboard", (("leaderboard", "models x protocols through one suite, one table per protocol, "
                                 "beside the papers' figures"),), leaderboard_command, (LeaderboardArguments,)),
    )
}  # fmt: skip


def command_usage(name: str) -> str:
    """The usage lines of one registered command."""
    return "\n".join(f"  pmg-aft {synopsis:34s} {text}" for synopsis, text in COMMANDS[name].lines)


def usage() -> str:
    """The `pmg-aft` usage text, from the registered commands and methods."""
    lines = [f"  {synopsis:34s} {text}" for command in COMMANDS.values() for synopsis, text in command.lines
             if command.alias_of is None]  # fmt: skip
    lines += [f"  {c.name:34s} {c.lines[0][1]}" for c in COMMANDS.values() if c.alias_of is not None]
    methods = "|".join(TRAINERS)
    return (
        "usage: pmg-aft <command> [options]   (pmg-aft <command> --help: its flags)\n\ncommands:\n"
        + "\n".join(lines).replace("METHOD", methods)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pmg-aft` console script (and of `examples/finetune.py`, as `train`).

    Bad input ([`InputError`]) and conditions of the machine (a full disk, a read-only folder) are one line and an
    exit status; a bug keeps its traceback. No output, a traceback included, ever shows a Hub token."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"pmg-aft: unknown command {argv[0]!r}.\n\n{usage()}", file=sys.stderr)
        return 2
    with scrubbed_output():
        try:
            return command.run(argv[1:])
        except InputError as error:  # bad input: one line naming the cause and the fix
            if show_traceback():
                return _traceback_or_raise(1)
            print(f"pmg-aft: {error}", file=sys.stderr)
            return error.exit_status
        except InputExit as stop:  # the same, from the training job (printed here, scrubbed, not by Python)
            print(stop.code, file=sys.stderr)
            return stop.status
        except SystemExit as stop:  # argparse: a usage error (2) or --help (0); every command returns its status
            if stop.code is None or isinstance(stop.code, int):
                return stop.code or 0
            print(stop.code, file=sys.stderr)
            return 1
        except Exception as error:
            condition = machine_condition(error)
            if condition is not None and not show_traceback():
                print(f"pmg-aft: {condition}", file=sys.stderr)
                return condition.exit_status
            return _traceback_or_raise(1)  # a bug: its traceback


def _traceback_or_raise(status: int) -> int:
    """Re-raise the exception being handled, except where a Hub token is in the environment: then its traceback is
    printed here, through the scrubbed stream (Python's own hook would print it unscrubbed), and `status` returned."""
    if not tokens():
        raise
    traceback.print_exc()
    return status


if __name__ == "__main__":
    sys.exit(main())
