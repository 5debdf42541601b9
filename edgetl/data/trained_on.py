"""Which images a model trained on, from its run's ``config.yaml``: the data, the val fraction and the seed.

A model scores the photos it learnt from higher than new ones. So the commands that judge a model (eval,
parity, calibrate, export's ``--val-data``) warn when those photos are among the ones they score, and they
find the val images edgetl split off a folder or a CSV by redoing training's seeded split, by file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from edgetl.data.splits import Found, find_splits
from edgetl.errors import EdgetlError


@dataclass(frozen=True)
class TrainedOn:
    """A run's training data (``--data``, resolved) and how edgetl split it."""

    run: Path
    data: Path
    val_split: float | None
    seed: int

    @cached_property
    def splits(self) -> Found | None:
        """Training's split, redone; None when the data no longer reads as it did (moved, emptied)."""
        try:
            return find_splits(self.data, self.val_split, self.seed)
        except EdgetlError:
            return None

    def made_val_of(self, data: Path) -> bool:
        """True when ``data`` is this run's data and edgetl, not the data, chose its val images."""
        return data.resolve() == self.data and self.splits is not None and self.splits.asked is not None

    @cached_property
    def training_files(self) -> set[Path]:
        return {s.path.resolve() for s in self.splits.train} if self.splits else set()

    def overlap(self, paths: list[Path]) -> str | None:
        """A warning when some of ``paths`` are this run's training images; None when none are."""
        n = sum(Path(p).resolve() in self.training_files for p in paths)
        if not n:
            return None
        return (f"{n} of these {len(paths)} images are training images of {self.run}: the model has learnt them, "
                "so its accuracy and probabilities there read higher than on new photos; use images it has not "
                "trained on")


def trained_on(artifact: str | Path) -> TrainedOn | None:
    """What the run behind ``artifact`` trained on: a run directory's, a checkpoint's in one, or, for an export
    folder's artifacts, the run its source checkpoint came from. None when no run is recorded."""
    from edgetl.config import read_yaml_config

    path = Path(artifact)
    run = path if path.is_dir() else path.resolve().parent
    if not (run / "config.yaml").is_file():
        run = _source_run(run) or run
    if not (run / "config.yaml").is_file():
        return None
    try:
        config = read_yaml_config(run / "config.yaml")
    except EdgetlError:
        return None
    data, val_split, seed = config.get("data"), config.get("val_split"), config.get("seed", 0)
    if not data or not Path(str(data)).exists():
        return None
    return TrainedOn(run, Path(str(data)).resolve(), float(val_split) if val_split is not None else None,
                     int(seed) if isinstance(seed, int) else 0)


def _source_run(folder: Path) -> Path | None:
    """The run directory of the checkpoint an export folder was made from (its ``manifest.json``)."""
    from edgetl.io import read_json

    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        doc = read_json(manifest)
    except (EdgetlError, OSError, ValueError):
        return None
    source = doc.get("source") if isinstance(doc, dict) else None
    if isinstance(source, dict) and source.get("kind") == "checkpoint" and source.get("path"):
        return Path(str(source["path"])).parent
    return None
