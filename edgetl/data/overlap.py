"""Files that sit in two splits at once: a photo copied into val/ or test/ as well as train/.

A model scores such a photo as one it has trained on, so the held-out figure reads high by however many
there are; scraped and hand-sorted data sets often hold a few. Only files of equal size are read and hashed,
so on photos the check costs a directory listing.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from edgetl.data.folder import DataSplit, Sample

CHUNK = 1 << 20


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _sizes(samples: Iterable[Sample]) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = defaultdict(list)
    for s in samples:
        try:
            out[s.path.stat().st_size].append(s.path)
        except OSError:  # gone since the scan: nothing to compare
            continue
    return out


def copies_of(held_out: list[Sample], seen: list[Sample]) -> list[tuple[Path, Path]]:
    """(held-out file, a file of ``seen`` with the same bytes) for each held-out file that has one."""
    mine, theirs = _sizes(held_out), _sizes(seen)
    pairs = []
    for size in sorted(set(mine) & set(theirs)):
        known = {_digest(p): p for p in theirs[size]}
        pairs += [(p, known[d]) for p in mine[size] if (d := _digest(p)) in known]
    return pairs


def overlap_warnings(split: DataSplit) -> list[str]:
    """One warning per held-out split holding copies of images that training (or, for test, validation) saw."""
    out = []
    for name, samples, seen, what in (("val", split.val, split.train, "training"),
                                      ("test", split.test, split.train + split.val, "training or validation")):
        pairs = copies_of(samples, seen) if samples else []
        if pairs:
            a, b = pairs[0]
            out.append(f"{len(pairs)} {name} image(s) are byte-for-byte copies of {what} images (e.g. {a} = {b}): "
                       f"{name} top-1 reads high on them; delete one copy of each")
    return out
