"""pyproject says Python >= 3.10 (JetPack 6 ships 3.10), but CI runs 3.11: catch 3.11-only code here.

The parser is asked for 3.10's grammar (``except*`` and the like fail), and the standard-library names that
arrived in 3.11 are looked for by import. A helper ran the whole suite on 3.10 and 3.12 once; this keeps it true.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SOURCES = sorted(p for folder in ("edgetl", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py"))
# Standard-library names that do not exist in Python 3.10.
NEWER_STDLIB = {"tomllib": None, "typing": {"Self", "Never", "LiteralString", "assert_never", "reveal_type",
                                            "Required", "NotRequired", "TypeVarTuple", "Unpack", "dataclass_transform"},
                "enum": {"StrEnum", "verify", "ReprEnum"}, "datetime": {"UTC"}, "asyncio": {"TaskGroup", "timeout"},
                "hashlib": {"file_digest"}, "operator": {"call"}}


def test_minimum_python_is_the_one_pyproject_declares() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^requires-python = ">=3\.10"$', text, re.M)  # the version the checks below hold to


def newer_than_3_10(source: str, filename: str = "<source>") -> list[str]:
    """What ``source`` uses that Python 3.10 lacks; 3.11+ grammar raises SyntaxError."""
    tree = ast.parse(source, filename=filename, feature_version=(3, 10))
    newer = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            newer += [a.name for a in node.names if a.name in NEWER_STDLIB and NEWER_STDLIB[a.name] is None]
        elif isinstance(node, ast.ImportFrom) and node.module in NEWER_STDLIB:
            names = NEWER_STDLIB[node.module]
            newer += [f"{node.module}.{a.name}" for a in node.names if names is None or a.name in names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.attr in (NEWER_STDLIB.get(node.value.id) or ()):
            newer.append(f"{node.value.id}.{node.attr}")
    return sorted(set(newer))


def test_every_source_parses_and_imports_as_python_3_10() -> None:
    assert len(SOURCES) > 80  # edgetl/, benchmarks/ and tests/ were found
    found = {str(p.relative_to(ROOT)): newer_than_3_10(p.read_text(), str(p)) for p in SOURCES}
    assert {name: uses for name, uses in found.items() if uses} == {}


def test_the_check_finds_what_3_10_lacks() -> None:
    assert newer_than_3_10("import datetime, tomllib\nfrom typing import Self, Any\nnow = datetime.UTC\n") == [
        "datetime.UTC", "tomllib", "typing.Self"]
    with pytest.raises(SyntaxError):
        newer_than_3_10("try:\n    pass\nexcept* ValueError:\n    pass\n")
