"""Write ``docs/api.md`` from the docstrings of ``members.api``: ``python -m members.api_doc [--check]``.

The page is generated, never edited by hand, so it cannot drift from the code: ``tests/test_api.py``
fails when the committed page differs from what this writes (rerun ``python -m members.api_doc``)
or when a name the page documents is gone from ``members.api``.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path
from typing import Sequence

PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"
INTRO = """# Python API

Generated from the docstrings of `members/api.py` by `python -m members.api_doc`; do not edit by hand.
Import from `members` (`from members import Recognizer`) or from `members.api`. The commands
(`python -m members.predict`, `python -m ensemble.combine`) are built on the same objects and give the
same results.
"""


def _doc(obj) -> str:
    return inspect.cleandoc(inspect.getdoc(obj) or "")


SECTIONS = ("Args:", "Returns:", "Raises:", "Attributes:", "Example:")


def _markdown(body: list[str]) -> list[str]:
    """Google-style sections as Markdown: a bold title, ``name: text`` entries as bullets, examples as code."""
    out: list[str] = []
    for line in body:
        stripped = line.strip()
        if stripped in SECTIONS:
            out += ["", f"**{stripped[:-1]}**", ""]
        elif line.startswith("        ") and out and out[-1]:
            out[-1] += " " + stripped
        elif line.startswith("    ") and not stripped.startswith(">>>") and ": " in stripped and \
                stripped.split(": ", 1)[0].replace("_", "").isalnum():
            name, text = stripped.split(": ", 1)
            out.append(f"- `{name}`: {text}")
        elif line.startswith("    ") and out and out[-1] and not stripped.startswith(">>>") and \
                not out[-1].startswith("```") and not out[-1].lstrip().startswith((">>>", "(", "[", "'")):
            out[-1] += " " + stripped
        else:
            out.append(line[4:] if line.startswith("    ") else line)
    return out


def _section(title: str, obj, level: int = 2, signature: bool = True) -> list[str]:
    """A heading, the signature in a code block and the docstring (its examples as Python code)."""
    lines = [f"{'#' * level} `{title}`", ""]
    if callable(obj) and signature:
        try:
            lines += ["```python", f"{title}{inspect.signature(obj)}", "```", ""]
        except (TypeError, ValueError):
            pass
    out, example = [], []
    for line in _doc(obj).splitlines() + [""]:
        if line.strip().startswith(">>>") or (example and line.strip()):
            example.append(line.strip() if line.strip().startswith(">>>") else line[4:] if line.startswith("    ") else line)
            continue
        if example:
            out += ["```python", *example, "```"]
            example = []
        out.append(line)
    return lines + _markdown(out) + [""]


def page() -> str:
    """The text of ``docs/api.md``."""
    from members import api

    lines = [INTRO]
    for name in api.__all__:
        obj = getattr(api, name)
        if inspect.isclass(obj):
            lines += _section(name, obj)
            if issubclass(obj, BaseException):
                continue
            for member, value in vars(obj).items():
                if member.startswith("_"):
                    continue
                if isinstance(value, property):
                    lines += _section(f"{name}.{member}", value.fget, level=3, signature=False)
                elif callable(value):
                    lines += _section(f"{name}.{member}", value, level=3)
        elif callable(obj):
            lines += _section(name, obj)
        else:
            lines += [f"## `{name}`", "", f"`{obj!r}`", ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the page (or, with ``--check``, exit 1 when the committed page differs)."""
    p = argparse.ArgumentParser(prog="python -m members.api_doc", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/api.md differs from the docstrings")
    args = p.parse_args(argv)
    text = page()
    if args.check:
        same = PAGE.is_file() and PAGE.read_text(encoding="utf-8") == text
        print(f"{PAGE}: {'up to date' if same else 'differs from the docstrings; run python -m members.api_doc'}")
        return 0 if same else 1
    from ensemble.artifacts import atomic_write_bytes

    atomic_write_bytes(PAGE, text.encode("utf-8"))
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
