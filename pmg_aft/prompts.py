"""Prompt text: class-name cleaning as the official PMG-AFT/TeCoA code does it."""

from __future__ import annotations

import re

from .errors import InputError


def clean_class_name(name: str) -> str:
    """Clean a class name for a prompt as the official code does: lower case, `_`, `-` and `/` become spaces.

    Example: `"Yorkshire_terrier"` -> `"yorkshire terrier"`.
    """
    return re.sub(r"\s+", " ", re.sub(r"[_\-/]", " ", str(name))).strip().lower()


def check_template(template: str) -> str:
    """Raise unless `template` has exactly one `{}` for the class name; return it."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise InputError(f"Prompt template {template!r} must contain exactly one '{{}}' for the class name.")
    return template
