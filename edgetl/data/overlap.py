"""Files that sit in two splits at once: a photo copied into val/ or test/ as well as train/.

A model scores such a photo as one it has trained on, so the held-out figure reads high by however many
there are; scraped and hand-sorted data sets often hold a few. Only files whose size matches one in the
other split are read and hashed, each once: on photos, whose sizes rarely match, that is few.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from edgetl.data.folder import Sample
from edgetl.data.splits import DataSplit

CHUNK = 1 << 20


class Digests:
    """sha256 of files, each read once however many splits compare it."""

    def __init__(self) -> None:
        self.known: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        if path not in self.known:
            h = hashlib.sha256()
            with path.open("rb") as fh:
                while block := fh.read(CHUNK):
                    h.update(block)
            self.known[path] = h.hexdigest()
        return self.known[path]


def _sizes(samples: Iterable[Sample]) -> dict[int, list[Sample]]:
    out: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        try:
            out[s.path.stat().st_size].append(s)
        except OSError:  # gone since the scan: nothing to compare
            continue
    return out


def copies_of(held_out: list[Sample], seen: list[Sample], digest: Digests | None = None) -> list[tuple[Sample, Sample]]:
    """(held-out sample, a sample of ``seen`` with the same bytes) for each held-out file that has one."""
    digest = digest or Digests()
    mine, theirs = _sizes(held_out), _sizes(seen)
    pairs = []
    for size in sorted(set(mine) & set(theirs)):
        known = {digest(s.path): s for s in theirs[size]}
        pairs += [(s, known[d]) for s in mine[size] if (d := digest(s.path)) in known]
    return pairs


def overlap_warnings(split: DataSplit) -> list[str]:
    """Per held-out split, its copies of images training (or, for test, validation) saw: under the same class
    (the figure reads high) and under another (the labels disagree)."""
    out, digest = [], Digests()
    for name, samples, seen, what in (("val", split.val, split.train, "training"),
                                      ("test", split.test, split.train + split.val, "training or validation")):
        pairs = copies_of(samples, seen, digest) if samples else []
        same = [(a, b) for a, b in pairs if a.label == b.label]
        other = [(a, b) for a, b in pairs if a.label != b.label]
        if same:
            a, b = same[0]
            out.append(f"{len(same)} {name} image(s) are byte-for-byte copies of {what} images (e.g. {a.path} = "
                       f"{b.path}): {name} top-1 reads high on them; delete one copy of each")
        if other:
            a, b = other[0]
            out.append(f"{len(other)} {name} image(s) are byte-for-byte copies of {what} images filed under another "
                       f"class (e.g. {a.path} = {b.path}): the labels disagree; keep the copy with the right label and "
                       "delete the other")
    return out
