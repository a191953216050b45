"""The docs cannot drift: the reference pages equal what the registries give now, every relative link resolves, and
the README is what a newcomer reads first (the two commands, then at most 150 lines)."""

from __future__ import annotations

import os
import re

import pytest

from pmg_aft.reference import PAGES, main, stale_pages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def markdown_files() -> list[str]:
    found = [os.path.join(ROOT, "README.md")]
    for root, _, files in os.walk(DOCS):
        found += [os.path.join(root, f) for f in files if f.endswith(".md")]
    return sorted(found)


def test_the_generated_reference_pages_are_up_to_date():
    stale = stale_pages(DOCS)
    assert not stale, f"{stale} are out of date: run python -m pmg_aft.reference docs"
    assert main([DOCS, "--check"]) == 0


def test_the_check_fails_on_a_page_that_drifted(tmp_path, capsys):
    main([str(tmp_path)])
    page = tmp_path / next(iter(PAGES))
    page.write_text(page.read_text().replace("| `tecoa` |", "| `tecoa_old` |"))
    assert main([str(tmp_path), "--check"]) == 1
    assert f"{page} is out of date" in capsys.readouterr().out


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(path):
    text = re.sub(r"```.*?```", "", open(path, encoding="utf-8").read(), flags=re.S)  # not inside code blocks
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t and t[0] != "#"]
    missing = [t for t in targets if not os.path.exists(os.path.join(os.path.dirname(path), t))]
    assert not missing, missing


def test_the_readme_starts_with_the_two_commands_and_stays_short():
    lines = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()
    assert len(lines) <= 150
    commands = [line for line in lines[:8] if line and not line.startswith(("#", "```"))]
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . && .venv/bin/python examples/finetune.py "
        "--config examples/configs/tiny_offline.yaml",
        "bash .ci/run",
    ]


def test_the_docs_speak_of_the_project_only():
    said = {os.path.relpath(p, ROOT): open(p, encoding="utf-8").read().lower() for p in markdown_files()}
    for phrase in ("no gpu was lent", "the session", "sessions that built", "was built by"):
        assert not [p for p, text in said.items() if phrase in text], phrase
