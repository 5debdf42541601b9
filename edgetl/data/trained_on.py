"""Which images a model trained on, from its run's ``config.yaml`` (the val fraction, the seed, ``--init``) and
``split.json`` (the data's absolute path; each split's count and digest, written when the run trained).

A model scores the photos it learnt from higher than new ones. So the commands that judge a model (eval,
parity, calibrate, export's ``--val-data``) warn when those photos are among the ones they score, and they
find the val images edgetl split off a folder or a CSV by redoing training's seeded split, by file name;
``split.json`` tells them when the data has changed since, so the split redone is not training's.
"""

from __future__ import annotations

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
    def changed(self) -> str | None:
        """How the data differs from when the run trained (its ``split.json``); None when it does not, or
        when the run predates the record."""
        recorded = recorded_split(self.run)
        if recorded is None or self.splits is None:
            return None
        return split_changes(recorded, split_digest(self.splits, self.data), self.splits.asked is not None)

    @cached_property
    def training_files(self) -> set[Path]:
        return {s.path.resolve() for s in self.splits.train} if self.splits else set()

    def overlap(self, paths: list[Path]) -> str | None:
        """A warning when some of ``paths`` are training images of this run or of a run it started from, or may
        be (its data changed since and they lie in it); None when none are."""
        resolved = [Path(p).resolve() for p in paths]
        root = self.data if self.data.is_dir() else self.data.parent
        out = []
        if self.changed and any(p.is_relative_to(root) for p in resolved):
            out.append(f"{self.data} changed since {self.run} trained ({self.changed}): its split, redone here, is "
                       "not training's, so some of these images may be ones it trained on")
        learnt = set().union(*(t.training_files for t in self.lineage))
        n = sum(p in learnt for p in resolved)
        if n:
            runs = [f"{t.run}" + ("" if t is self else " (a run it started from)") for t in self.lineage
                    if any(p in t.training_files for p in resolved)]
            out.append(f"{n} of these {len(paths)} images are training images of {' and '.join(runs)}: the model "
                       "has learnt them, so its accuracy and probabilities there read higher than on new photos; use "
                       "images it has not trained on")
        return "; ".join(out) or None

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
    parents = tuple(t for key in ("init", "weights") if config.get(key) and depth < MAX_PARENTS
                    and (t := trained_on(str(config[key]), depth + 1)) is not None and t.run != run)
    val_split, seed = config.get("val_split"), config.get("seed", 0)
    return TrainedOn(run, Path(str(data)).resolve(), float(val_split) if val_split is not None else None,
                     int(seed) if isinstance(seed, int) else 0, parents)


PATH_KEYS = ("data", "init", "weights")  # config.yaml keeps them as typed: relative to where training ran


def locate_paths(run: Path, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its paths as ``split.json`` recorded them: from the run (so a run copied or moved with its
    data finds that data), else where they were (the run alone moved); as typed for a run without the record."""
    recorded = recorded_split(run) or {}
    where = recorded.get("paths")
    where = where if isinstance(where, dict) else {}
    out = dict(config)
    for key in PATH_KEYS:
        typed, found = config.get(key), where.get(key)
        if not isinstance(typed, str) or not isinstance(found, dict):
            continue
        for candidate in (found.get("from_run"), found.get("absolute")):
            if isinstance(candidate, str) and (run / candidate).exists():  # run / an absolute path is that path
                out[key] = str((run / candidate).resolve())
                break
    return out


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
        return split_changes(before, digest, made)
    here = run.resolve()
    where = {key: {"absolute": str(Path(p).resolve()), "from_run": os.path.relpath(Path(p).resolve(), here)}
             for key, p in paths.items() if p and Path(p).exists()}
    atomic_write_json(run / SPLIT_FILE, {"paths": where, **digest})
    return None


def split_changes(recorded: dict[str, Any], now: dict[str, dict[str, int | str]], made: bool) -> str | None:
    """"train: 112 files then, 118 now; …", or None when no change can have put a training image among the
    held-out ones: where edgetl split val off train (``made``), any change to either reshuffles both; where the
    data names its splits, train and val (or test) changing together (files moved between them) can."""
    changed = {}
    for name in ("train", "val", "test"):
        old, new = recorded.get(name), now[name]
        if isinstance(old, dict) and old.get("sha256") != new["sha256"]:
            then = old.get("images")
            changed[name] = (f"{name}: {then} files then, {new['images']} now" if then != new["images"]
                             else f"{name}: as many files, not the same ones")
    mixed = [n for n in ("train", "val") if n in changed] if made else \
        list(changed) if "train" in changed and len(changed) > 1 else []
    return "; ".join(changed[n] for n in mixed) or None


def recorded_split(run: Path) -> dict[str, Any] | None:
    """The run's ``split.json``; None for a run without one (older) or a broken one."""
    from edgetl.io import read_json

    try:
        doc = read_json(run / SPLIT_FILE) if (run / SPLIT_FILE).is_file() else None
    except EdgetlError:
        return None
    return doc if isinstance(doc, dict) else None
