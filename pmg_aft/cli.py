"""The `pmg-aft` command."""

from __future__ import annotations

import sys

USAGE = """usage: pmg-aft <command> [options]

commands:
  train    adversarially fine-tune a CLIP model (same flags as examples/finetune.py; --config FILE.yaml)
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pmg-aft` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        from .finetune import main as finetune

        finetune(rest)
        return 0
    print(f"pmg-aft: unknown command {command!r}.\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
