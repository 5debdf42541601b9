"""Does `edgetl calibrate` make an artifact's probabilities true on photos its fit never saw?

Real weights and photos: ImageNet EfficientNet-Lite0 (Google's weights) exported to FP32, FP16 and INT8
(TensorRT target) ONNX; its 1000-way head judged on the ants/bees photos against their ImageNet labels (ant,
bee). Each artifact's temperature is refit on the 244 train photos, and every figure is measured on the 153 val
photos: mean top-1 probability, accuracy, ECE and the loss of softmax(logits / T), at T = 1 and at the refit T
(the logits are the artifact's own, computed once: T changes no answer).

    python benchmarks/refit_temperature.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.calibration import calibration_of_logits, nll
from edgetl.card import library_versions
from edgetl.evaluate import labelled_logits
from edgetl.export.pipeline import ExportOptions, export_artifacts
from edgetl.recalibrate import refit_temperature

HERE = Path(__file__).parent
ARTIFACTS = ("model.onnx", "model.fp16.onnx", "model.int8.onnx")


def _judged(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    cal = calibration_of_logits(logits, labels, temperature)
    return {"temperature": round(temperature, 4), "mean_confidence": round(cal["mean_confidence"], 4),
            "accuracy": round(cal["accuracy"], 4), "ece": round(cal["ece"], 4),
            "loss": round(nll(logits, labels, temperature), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "hymenoptera")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "refit_temperature.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lite0"
        options = ExportOptions(weights="efficientnet_lite0", fp16=True, int8=True, int8_target="tensorrt",
                                calib_data=args.data / "train", val_data=args.data / "val", quiet=True)
        export_artifacts("tf_efficientnet_lite0", out, options)
        for name in ARTIFACTS:
            val = labelled_logits(out / name, args.data / "val", device="cpu", progress=False)
            refit = refit_temperature(out / name, args.data / "train", device="cpu", progress=False)
            rows.append({"artifact": name, "fit_images": refit.images, "val_images": len(val.labels),
                         "refit_temperature": round(refit.temperature, 4), "kept": refit.kept,
                         "val_at_1": _judged(val.logits, val.labels, 1.0),
                         "val_at_refit": _judged(val.logits, val.labels, refit.temperature)})
            print(json.dumps(rows[-1]))
    doc = {"benchmark": "refit_temperature", "model": "tf_efficientnet_lite0 (ImageNet head, 1000 classes)",
           "weights": "efficientnet_lite0", "fit": "hymenoptera/train", "judged": "hymenoptera/val",
           "runs": rows, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "versions": library_versions()}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
