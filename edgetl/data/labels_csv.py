"""Labelled images listed in a CSV: ``path,label`` rows, or ``path,label,split`` with split train, val or test.

Paths are relative to the CSV. Every bad row is an error naming its line, so a typo never trains an empty
class, puts one photo in two splits, or drops a test row in silence.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from edgetl.data.images import IMAGE_EXTENSIONS
from edgetl.errors import EdgetlError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Row:
    path: Path
    label: str
    split: str | None  # None in a two-column CSV: edgetl splits it
    line: int  # where the row starts, for errors


def read_csv(path: Path) -> list[Row]:
    """The rows of ``path``; all two columns (``path,label``) or all three (``path,label,split``)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise EdgetlError(f"{path}: not a UTF-8 text CSV; save it as UTF-8 lines of 'path,label'") from None
    rows: list[Row] = []
    first_line: dict[Path, int] = {}
    reader = csv.reader(text.splitlines(keepends=True))
    line, width = 1, 0  # where the row starts (a stray quote makes one row span many lines); its columns
    for cells in reader:
        where, line, start = f"{path}:{line}", reader.line_num + 1, line
        if not cells:
            continue
        if start == 1 and _is_header(cells, path):
            width = len(cells)
            continue
        width = width or len(cells)
        row = _row(cells, where, path.parent, width, start)
        if row.path in first_line:
            raise EdgetlError(f"{where}: {row.path.name} is listed again (first on line {first_line[row.path]}); list "
                              "each image once, or it could land in two splits")
        first_line[row.path] = start
        rows.append(row)
    if not rows:
        raise EdgetlError(f"{path}: CSV has no rows; expected lines of 'path,label'")
    missing = [r.path for r in rows if not r.path.exists()]
    if missing:
        raise EdgetlError(f"{path}: {len(missing)} listed file(s) do not exist (first: {missing[0]}); fix the paths")
    return rows


def _row(cells: list[str], where: str, base: Path, width: int, line: int) -> Row:
    expected = "'path,label,split'" if width == 3 else "'path,label'"
    if len(cells) != width or width not in (2, 3) or any("\n" in cell for cell in cells):
        shown = ",".join(cells).replace("\n", " ")
        why = "a stray quote?" if any("\n" in cell for cell in cells) else f"{len(cells)} columns"
        raise EdgetlError(f"{where}: expected {expected}; got "
                          f"{shown[:60] + '…' if len(shown) > 60 else shown!r} ({why})")
    img, label = Path(cells[0].strip()), cells[1].strip()
    if not label:
        raise EdgetlError(f"{where}: {img.name} has an empty label; give every row its class")
    split = cells[2].strip().lower() if width == 3 else None
    if split is not None and split not in SPLITS:
        raise EdgetlError(f"{where}: split {cells[2].strip()!r} of {img.name} is not one of train, val, test; "
                          "fix that row")
    return Row(img if img.is_absolute() else base / img, label, split, line)


def _is_header(cells: list[str], csv_path: Path) -> bool:
    """The first row is a header when it names no image; ``path,label`` and ``path,label,split`` are the two
    edgetl reads."""
    names = [c.strip().lower() for c in cells]
    if names in (["path", "label"], ["path", "label", "split"]):
        return True
    named = Path(cells[0].strip())
    if named.suffix.lower() in IMAGE_EXTENSIONS or (csv_path.parent / named).exists():
        return False
    raise EdgetlError(f"{csv_path}:1: {','.join(cells)[:60]!r} is neither an image row nor a header edgetl reads; "
                      "the header, if any, is 'path,label' or 'path,label,split'")
