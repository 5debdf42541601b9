"""Which images a model trained on, from its run's ``config.yaml`` (the val fraction, the seed, ``--init``) and
``split.json`` (the data's absolute path; each split's count and digest, written when the run trained).

A model scores the photos it learnt from higher than new ones. So the commands that judge a model (eval,
parity, calibrate, export's ``--val-data``) warn when those photos are among the ones they score, and they
find the val images edgetl split off a folder or a CSV by redoing training's seeded split, by file name;
``split.json`` tells them when the data has changed since, so the split redone is not training's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from edgetl.data.splits import Found, find_splits, split_digest
from edgetl.errors import EdgetlError

SPLIT_FILE = "split.json"  # in a run directory: how many files each split listed when it trained, and their digest


@dataclass(frozen=True)
class TrainedOn:
    """A run's training data (``--data``, resolved), how edgetl split it, and the runs it started from."""

    run: Path
    data: Path
    val_split: float | None
    seed: int
    parents: tuple[TrainedOn, ...] = ()  # --init / --weights runs: their training images are learnt too
    others: tuple[Path, ...] = ()  # where else split.json places the data (a copy beside a copied run)

    def for_data(self, data: Path) -> TrainedOn:
        """This run, taking ``data`` as its data when it is one of the places ``split.json`` records (a run
        copied with its data, judged on that copy, even after the copy changed)."""
        here = data.resolve()
        if here not in self.others:
            return self
        return dataclasses.replace(self, data=here, others=tuple(o for o in (self.data, *self.others) if o != here))

    @cached_property
    def splits(self) -> Found | None:
        """Training's split, redone; None when the data no longer reads as it did (moved, emptied)."""
        try:
            return find_splits(self.data, self.val_split, self.seed)
        except EdgetlError:
            return None

    def made_split_of(self, data: Path) -> bool:
        """True when ``data`` is this run's data and edgetl, not the data, chose its val images."""
        return data.resolve() == self.data and self.splits is not None and self.splits.asked is not None

    @cached_property
    def changed_splits(self) -> dict[str, str]:
        """Split → how it differs from when the run trained (its ``split.json``), for the changes that can put a
        training image among held-out ones; empty when none, or for a run that predates the record."""
        recorded = recorded_split(self.run)
        if recorded is None or self.splits is None:
            return {}
        return split_changes(recorded, split_digest(self.splits, self.data), self.splits.asked is not None)

    @property
    def changed(self) -> str | None:
        return "; ".join(self.changed_splits.values()) or None

    @cached_property
    def training_files(self) -> set[Path]:
        return {s.path.resolve() for s in self.splits.train} if self.splits else set()

    def overlap(self, paths: list[Path]) -> str | None:
        """A warning when some of ``paths`` are training images (or byte-for-byte copies of one) of this run or
        of a run it started from, or may be (its data changed since in a way that reaches them); else None."""
        resolved = [Path(p).resolve() for p in paths]
        out = [self._changed_note()] if self.changed and self._reaches(resolved) else []
        learnt = learnt_by(self.lineage, resolved)
        if learnt.count:
            out.append(f"{learnt.count} of these {len(paths)} images are training images{learnt.copies_note} of "
                       f"{learnt.runs_text(self)}: the model has learnt them, so its accuracy and probabilities there "
                       "read higher than on new photos; use images it has not trained on")
        return "; ".join(out) or None

    def _reaches(self, resolved: list[Path]) -> bool:
        """Whether a change can have reached these images: any in the data, where edgetl split it (the split
        reshuffles); else those in a held-out split that changed (photos moved in from train); and, either way,
        copies of the held-out files that may have been training's."""
        from edgetl.data.folder import Sample
        from edgetl.data.overlap import copies_of

        assert self.splits is not None  # changed implies it
        if self.splits.asked is not None:
            root = self.data if self.data.is_dir() else self.data.parent
            if any(p.is_relative_to(root) for p in resolved):
                return True
            held = self.splits.val
        else:
            held = [s for n in self.changed_splits if n != "train" for s in getattr(self.splits, n)]
            if any(p in {s.path.resolve() for s in held} for p in resolved):
                return True
        return bool(copies_of([Sample(p, 0) for p in resolved], [Sample(s.path.resolve(), 0) for s in held]))

    def _changed_note(self) -> str:
        assert self.splits is not None
        why = ("the val split redone here is not training's, so some of these images may be ones it trained on; "
               "put the data back as it was, or judge on images it never saw") if self.splits.asked is not None \
            else ("photos moved between its splits may be among these, and it trained on them; judge on images it "
                  "never saw")
        return f"{self.data} changed since {self.run} trained ({self.changed}): {why}"

    def describe(self) -> dict[str, Any]:
        """For ``edgetl info``: the data, how it was split, each split's count when the run trained, whether it
        changed since, and the runs it started from."""
        made = self.splits is not None and self.splits.asked is not None
        recorded = recorded_split(self.run) or {}
        counts = {n: recorded[n].get("images") for n in ("train", "val", "test") if isinstance(recorded.get(n), dict)}
        return {"run": str(self.run), "data": str(self.data), "images": counts or None,
                "split": (f"edgetl's {self.splits.asked:g} val split, seed {self.seed}" if made and self.splits
                          else "split as the data names it"),
                "changed": self.changed, "started_from": [str(t.run) for t in self.lineage[1:]]}

    @property
    def lineage(self) -> list[TrainedOn]:
        """This run, then the runs it started from, each once."""
        out: list[TrainedOn] = [self]
        for parent in self.parents:
            out += [t for t in parent.lineage if t.run not in {o.run for o in out}]
        return out


@dataclass
class Learnt:
    """Which of some images runs trained on: by path, or as byte-for-byte copies of a training file."""

    by_run: dict[Path, int]  # run → images of its training set (paths or copies)
    copies: int

    @property
    def count(self) -> int:
        return sum(self.by_run.values())

    @property
    def copies_note(self) -> str:
        return f" ({self.copies} of them byte-for-byte copies)" if self.copies else ""

    def runs_text(self, own: TrainedOn | None = None) -> str:
        """The runs, those ``own`` (the run judged) started from marked so."""
        return " and ".join(f"{run}" + ("" if own is None or run == own.run else " (a run it started from)")
                            for run in self.by_run)


def learnt_by(lineage: list[TrainedOn], resolved: list[Path]) -> Learnt:
    """The images of ``resolved`` (absolute) that the runs of ``lineage`` trained on: the same files, or copies
    (only files whose size matches a training file's are read, as training's own check does)."""
    from edgetl.data.folder import Sample
    from edgetl.data.overlap import copies_of

    owner = {f: t.run for t in reversed(lineage) for f in t.training_files}  # the run itself wins a tie
    by_run: dict[Path, int] = {}
    rest = []
    for p in resolved:
        if p in owner:
            by_run[owner[p]] = by_run.get(owner[p], 0) + 1
        else:
            rest.append(Sample(p, 0))
    pairs = copies_of(rest, [Sample(f, 0) for f in owner]) if rest and owner else []
    for _, seen in pairs:
        by_run[owner[seen.path]] = by_run.get(owner[seen.path], 0) + 1
    order = [t.run for t in lineage]
    return Learnt(dict(sorted(by_run.items(), key=lambda kv: order.index(kv[0]))), len(pairs))


INHERITED_EFFECT = {"val": "val top-1, the best epoch and the temperature read high on them",
                    "test": "test top-1 reads high on them"}


def inherited_overlap(sources: list[str | None], held: dict[str, list[Path]]) -> list[str]:
    """At training's start, per held-out split (val, test): its images that the ``--init``/``--weights`` run (or
    the runs it started from) trained on, which make that split's figures read high."""
    lineage = [t for src in sources if src and (found := trained_on(src)) is not None for t in found.lineage]
    out = []
    for name, paths in held.items():
        learnt = learnt_by(lineage, [p.resolve() for p in paths]) if lineage and paths else None
        if learnt is not None and learnt.count:
            out.append(f"{learnt.count} of the {len(paths)} {name} images are training images{learnt.copies_note} "
                       f"of {learnt.runs_text()}, whose weights this run starts from: {INHERITED_EFFECT[name]}; "
                       f"hold out images none of these runs trained on")
    return out


MAX_PARENTS = 8  # --init chains followed this deep: far past any real one, short of a loop


def trained_on(artifact: str | Path, depth: int = 0) -> TrainedOn | None:
    """What the run behind ``artifact`` trained on: a run directory's, a checkpoint's in one, or, for an export
    folder's artifacts, the run its source checkpoint came from. None when no run is recorded."""
    from edgetl.config import read_yaml_config

    path = Path(artifact)
    if not path.exists():  # a timm weights name (--weights efficientnet_lite0), or gone
        return None
    run = (path if path.is_dir() else path.parent).resolve()
    if not (run / "config.yaml").is_file():
        run = _source_run(run) or run
    if not (run / "config.yaml").is_file():
        return None
    try:
        config = locate_paths(run, read_yaml_config(run / "config.yaml"))
    except EdgetlError:
        return None
    data = config.get("data")
    if not data or not Path(str(data)).exists():
        return None
    others = tuple(Path(p) for p in _places(run, recorded_split(run) or {}, "data") if p != str(data))
    parents = tuple(t for key in ("init", "weights") if config.get(key) and depth < MAX_PARENTS
                    and (t := trained_on(str(config[key]), depth + 1)) is not None and t.run != run)
    val_split, seed = config.get("val_split"), config.get("seed", 0)
    return TrainedOn(run, Path(str(data)).resolve(), float(val_split) if val_split is not None else None,
                     int(seed) if isinstance(seed, int) else 0, parents, others)


PATH_KEYS = ("data", "init", "weights")  # config.yaml keeps them as typed: relative to where training ran


def locate_paths(run: Path, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its paths as ``split.json`` recorded them: from the run (so a run copied or moved with its
    data finds that data), else where they were (the run alone moved); as typed for a run without the record."""
    recorded = recorded_split(run) or {}
    out = dict(config)
    for key in PATH_KEYS:
        there = _places(run, recorded, key) if isinstance(config.get(key), str) else []
        if len(there) > 1 and key == "data":  # a copied run: the data whose files are the ones it trained on
            there = [d for d in there if _same_data(d, config, recorded)] or there[-1:]
        if there:
            out[key] = there[0]
    return out


def _places(run: Path, recorded: dict[str, Any], key: str) -> list[str]:
    """The existing places ``split.json`` records for ``key``, resolved: data from the run first (moved with it),
    a parent run where it was first."""
    where = recorded.get("paths")
    found = where.get(key) if isinstance(where, dict) else None
    if not isinstance(found, dict):
        return []
    order = ("from_run", "absolute") if key == "data" else ("absolute", "from_run")
    return list(dict.fromkeys(str((run / c).resolve()) for c in map(found.get, order)
                              if isinstance(c, str) and (run / c).exists()))  # run / an absolute path: itself


def _same_data(data: str, config: dict[str, Any], recorded: dict[str, Any]) -> bool:
    """Whether ``data`` lists the files ``split.json`` recorded, split the same way."""
    try:
        now = split_digest(find_splits(data, config.get("val_split"), int(config.get("seed") or 0)), Path(data))
    except (EdgetlError, TypeError, ValueError):
        return False
    return all(isinstance(recorded.get(n), dict) and recorded[n].get("sha256") == now[n]["sha256"] for n in now)


def _source_run(folder: Path) -> Path | None:
    """The run directory of the checkpoint an export folder was made from (its ``manifest.json``; an older
    export's relative path is tried from the folder above, where ``RUN/export`` puts the run)."""
    from edgetl.io import read_json

    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        doc = read_json(manifest)
    except (EdgetlError, OSError, ValueError):
        return None
    source = doc.get("source") if isinstance(doc, dict) else None
    if not (isinstance(source, dict) and source.get("kind") == "checkpoint" and source.get("path")):
        return None
    run = Path(str(source["path"])).parent
    if not (run / "config.yaml").is_file() and (folder.parent / "config.yaml").is_file():
        return folder.parent
    return run


def record_split(run: Path, paths: dict[str, str | None], digest: dict[str, dict[str, int | str]],
                 made: bool) -> str | None:
    """Write ``run/split.json`` as a run starts: where its data (and ``--init``/``--weights`` run) are, absolute
    and from the run, and each split's digest. A resume keeps the record (the epochs before trained on that
    split) and gets what changed since, else None; ``made``: edgetl split val off train."""
    import os

    from edgetl.io import atomic_write_json

    before = recorded_split(run)
    if before is not None and isinstance(before.get("train"), dict):
        return "; ".join(split_changes(before, digest, made).values()) or None
    here = run.resolve()
    where = {key: {"absolute": str(Path(p).resolve()), "from_run": os.path.relpath(Path(p).resolve(), here)}
             for key, p in paths.items() if p and Path(p).exists()}
    atomic_write_json(run / SPLIT_FILE, {"paths": where, **digest})
    return None


def split_changes(recorded: dict[str, Any], now: dict[str, dict[str, int | str]], made: bool) -> dict[str, str]:
    """{"train": "train: 112 files then, 118 now", …}, empty when no change can have put a training image among
    the held-out ones: where edgetl split val off train (``made``), any change to either reshuffles both; where
    the data names its splits, train and val (or test) changing together (files moved between them) can."""
    changed = {}
    for name in ("train", "val", "test"):
        old, new = recorded.get(name), now[name]
        if isinstance(old, dict) and old.get("sha256") != new["sha256"]:
            then = old.get("images")
            changed[name] = (f"{name}: {then} files then, {new['images']} now" if then != new["images"]
                             else f"{name}: as many files, not the same ones")
    mixed = [n for n in ("train", "val") if n in changed] if made else \
        list(changed) if "train" in changed and len(changed) > 1 else []
    return {n: changed[n] for n in mixed}


def recorded_split(run: Path) -> dict[str, Any] | None:
    """The run's ``split.json``; None for a run without one (older) or a broken one."""
    from edgetl.io import read_json

    try:
        doc = read_json(run / SPLIT_FILE) if (run / SPLIT_FILE).is_file() else None
    except EdgetlError:
        return None
    return doc if isinstance(doc, dict) else None
