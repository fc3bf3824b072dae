"""Every test file and test that RELIABILITY.md and docs/*.md name exists.

A reference is a code span: a path under ``tests/`` (``it/`` and ``unit/`` abbreviate ``tests/integration/`` and
``tests/unit/``), optionally ``::test_name`` (``test_prefix_*`` names several), or ``::test_name`` alone for the
file named last before it. Paths under ``tests/`` in code blocks count too, with ``{a,b}`` expanded.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "RELIABILITY.md", *sorted((ROOT / "docs").glob("*.md"))]
ABBREVIATIONS = {"it/": "tests/integration/", "unit/": "tests/unit/"}
REFERENCE = re.compile(r"^(?P<path>(?:tests|it|unit)/(?:[\w/.]|\{[\w,]*\})+)?(?:::(?P<name>[\w*]+))?$")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
PATH_IN_CODE = re.compile(r"(?<![\w/])tests/(?:[\w/.]|\{[\w,]*\})+")


def expanded(path: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    return [
        p for part in match.group(1).split(",") for p in expanded(path[: match.start()] + part + path[match.end() :])
    ]


def full(path: str) -> str:
    for short, long in ABBREVIATIONS.items():
        if path.startswith(short):
            return long + path[len(short) :]
    return path


@cache
def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}


def references(document: Path) -> list[tuple[str, str | None]]:
    """(path, test name or None) for each reference, in the order of the document."""
    text = document.read_text(encoding="utf-8")
    found: list[tuple[str, str | None]] = []
    for block in FENCE.findall(text):
        found += [(path.rstrip("."), None) for token in PATH_IN_CODE.findall(block) for path in expanded(token)]
    last = None
    for span in re.findall(r"`([^`\n]+)`", FENCE.sub("", text)):
        match = REFERENCE.match(span.strip())
        if not match or not (match.group("path") or match.group("name")):
            continue
        if match.group("path"):
            last = full(match.group("path").rstrip("/"))
        assert last is not None, f"{document.name}: `{span}` names a test before any file"
        found += [(path, match.group("name")) for path in expanded(last)]
    return found


CASES = [
    pytest.param(path, name, id=f"{document.name}:{path}{'::' + name if name else ''}")
    for document in DOCUMENTS
    for path, name in dict.fromkeys(references(document))
]


def test_the_documents_name_tests() -> None:
    assert len([case for case in CASES if "RELIABILITY.md" in case.id]) > 50


@pytest.mark.parametrize(("path", "name"), CASES)
def test_each_named_test_file_and_test_exists(path: str, name: str | None) -> None:
    target = ROOT / path
    assert target.exists(), f"{path} does not exist"
    if name is not None:
        assert target.suffix == ".py", f"{path}::{name}: not a test file"
        assert fnmatch.filter(sorted(defined_tests(target)), name), f"{path} has no test {name}"
