"""Do the probabilities of a trained model mean what they say, before and after its fitted temperature?

Real photos and real weights: tf_efficientnet_lite0 with Google's ImageNet weights, fine-tuned with its recipe
on the ants/bees photos. The val photos are split in two halves (alternate files per class): training
validates on, and fits its temperature on, the first; the second is a test set nothing in training saw. Each
seed reports, on the test half, the mean top-1 probability against the accuracy and the expected calibration
error (ECE) as the raw softmax gives them and as ``edgetl eval`` / ``predict`` give them (with the temperature).

    python benchmarks/calibration.py --seeds 0,1,2 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgetl import calibration
from edgetl.card import library_versions
from edgetl.config import resolve_config
from edgetl.data.labelled import find_labelled
from edgetl.runtime.loader import deployed_runner
from edgetl.runtime.predictor import logits_of_files
from edgetl.train.fit import fit

HERE = Path(__file__).parent


def split_val(data: Path, root: Path) -> Path:
    """``root/{train,val,test}/<class>``: train as it is, val's files alternately into val and test (symlinks)."""
    for cls_dir in sorted(p for p in (data / "train").iterdir() if p.is_dir()):
        (root / "train").mkdir(parents=True, exist_ok=True)
        os.symlink(cls_dir.resolve(), root / "train" / cls_dir.name)
    for cls_dir in sorted(p for p in (data / "val").iterdir() if p.is_dir()):
        for i, photo in enumerate(sorted(cls_dir.iterdir())):
            dest = root / ("val" if i % 2 == 0 else "test") / cls_dir.name
            dest.mkdir(parents=True, exist_ok=True)
            os.symlink(photo.resolve(), dest / photo.name)
    return root


def test_figures(run_dir: Path, test_dir: Path) -> dict[str, Any]:
    """Calibration on the test half: raw softmax, with the card's temperature, and with the best temperature
    for the test half itself (the most a single temperature could do there)."""
    with deployed_runner(run_dir, device="cpu") as runner:
        found = find_labelled(test_dir, runner.card.classes)
        (logits,), _, used = logits_of_files([runner], found.paths, 32, False)
        temperature = runner.card.temperature
    assert found.labels is not None
    labels = np.asarray([found.labels[i] for i in used])
    oracle = calibration.fit_temperature(logits, labels)
    return {"images": len(labels), "temperature": temperature, "oracle_temperature": oracle,
            "raw": calibration.calibration_of_logits(logits, labels),
            "with_temperature": calibration.calibration_of_logits(logits, labels, temperature),
            "with_oracle_temperature": calibration.calibration_of_logits(logits, labels, oracle),
            "nll_raw": calibration.nll(logits, labels, 1.0), "nll_with_temperature": calibration.nll(logits, labels,
                                                                                                 temperature)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "hymenoptera"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default=str(HERE / "results" / "calibration.json"))
    args = ap.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = split_val(Path(args.data), Path(tmp) / "data")
        for seed in (int(s) for s in args.seeds.split(",")):
            cfg = resolve_config({"data": str(data), "model": "tf_efficientnet_lite0", "weights": "efficientnet_lite0",
                                  "epochs": args.epochs, "seed": seed, "out": str(Path(tmp) / f"run{seed}")})
            result = fit(cfg, quiet=True, list_skipped=seed == 0)
            best = result.best
            row = {"seed": seed, "best_epoch": result.best_epoch, "val_top1": best["val_top1"],
                   "val_ece": best["val_ece"], "val_ece_calibrated_heldout_folds": best.get("val_ece_calibrated"),
                   "test": test_figures(result.run_dir, data / "test")}
            print(json.dumps(row), flush=True)
            runs.append(row)
    doc = {"benchmark": "calibration", "model": "tf_efficientnet_lite0", "weights": "efficientnet_lite0",
           "data": f"{Path(args.data).name}: train all; val alternate files (fit), test the others", "epochs":
           args.epochs, "recipe": "models/tf_efficientnet_lite0.yaml", "runs": runs,
           "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": library_versions()}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
