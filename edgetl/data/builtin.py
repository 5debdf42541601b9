"""The built-in dataset: scikit-learn's handwritten digits, written out as an ImageFolder.

It ships inside a pip package (no network), has ten classes (so top-5 and a confusion matrix mean
something) and is grayscale, so the RGB conversion path is exercised like real data.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from edgetl.errors import EdgetlError
from edgetl.io import make_dir_public

BUILTIN = "digits"
CLASSES = [f"digit_{i}" for i in range(10)]


def materialize_builtin(root: str | Path, per_class: int | None = None, val_fraction: float = 1 / 3,
                        size: int = 32, seed: int = 0, test_fraction: float | None = None) -> Path:
    """Write the digits as ``root/{train,val,test}/<class>/*.png``; return ``root``.

    ``per_class`` caps the train + val images per class (None = all, about 180). The test set
    (``test_fraction`` of that, default as many as val, 0 for none) comes from the digits the cap leaves
    out, so adding it changes neither train nor val while there are enough of those (up to about 130 per
    class at the default fractions); past that it takes the rest from train. Re-running with the same
    arguments reuses the folder; the folder appears whole or not at all.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise EdgetlError("the built-in dataset needs scikit-learn: pip install scikit-learn") from None
    root = Path(root)
    test_fraction = val_fraction if test_fraction is None else test_fraction
    params = {"name": BUILTIN, "per_class": per_class, "val_fraction": val_fraction, "size": size, "seed": seed,
              "test_fraction": test_fraction}
    stamp = root / "dataset.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        return root
    digits = load_digits()
    rng = np.random.default_rng(seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_dir_public(Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent)))
    try:
        for label, name in enumerate(CLASSES):
            pool = rng.permutation(np.flatnonzero(digits.target == label))
            for split, chosen in _splits(pool, per_class, val_fraction, test_fraction):
                folder = tmp / split / name
                folder.mkdir(parents=True)
                for i in chosen:
                    pixels = (digits.images[i] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
                    img = Image.fromarray(255 - pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)
                    img.save(folder / f"{i:04d}.png")
        (tmp / "dataset.json").write_text(json.dumps(params))
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root


def _splits(pool: np.ndarray, per_class: int | None, val_fraction: float,
            test_fraction: float) -> list[tuple[str, np.ndarray]]:
    """(split, indices) of one class: val, then train, from the first ``per_class``; test from the rest, topped
    up from train's end when the rest is too few."""
    idx = pool[:per_class]
    n_val, n_test = max(1, round(len(idx) * val_fraction)), round(len(idx) * test_fraction)
    spare = pool[len(idx):][:n_test]
    short = n_test - len(spare)
    end = len(idx) - short
    out = [("val", idx[:n_val]), ("train", idx[n_val:end])]
    return out + ([("test", np.concatenate([spare, idx[end:]]))] if n_test else [])
