"""INT8 recipes judged on every labelled photo: two-fold cross-validation over hymenoptera train and val.

The export table judges INT8 on the 153 val photos, where one photo is 0.65 points. Here each fold
calibrates on one split and is judged on the other (ImageNet labels ant = 310, bee = 309), so every one of
the ~400 photos is judged once, by a model that never calibrated on it. Both offline ImageNet models
(EfficientNet-Lite0 and Lite1), both INT8 targets, each in its target's numerics (TensorRT: fake-quant, ORT
graph optimisation off; CPU: fused kernels), with the layer roles the recipes may keep in float.

    python benchmarks/int8_crossfold.py [--data ../shared/data/hymenoptera] \
        [--out benchmarks/results/int8_crossfold.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from export import judge_int8  # benchmarks/export.py

LITES = ("lite0", "lite1")
VARIANTS = {  # name → (target, reduce_range, layer roles kept in float)
    "tensorrt, all int8": ("tensorrt", False, []),
    "tensorrt, stem float (recipe default)": ("tensorrt", False, ["stem"]),
    "tensorrt, stem + classifier float": ("tensorrt", False, ["stem", "classifier"]),
    "cpu reduce_range, all int8": ("cpu", True, []),
    "cpu reduce_range, stem float (recipe default)": ("cpu", True, ["stem"]),
}
FOLDS = (("train", "val"), ("val", "train"))  # (calibrate on, judge on)


def _fold(model: Any, card: Any, prepared: Path, data: Path, calib_split: str, judge_split: str,
          root: Path) -> dict[str, dict[str, Any]]:
    """Every variant calibrated on ``calib_split`` (all of it) and judged on ``judge_split`` against PyTorch."""
    import onnx
    import torch

    from edgetl.export.bias_correction import input_means
    from edgetl.export.calib import calibration_files, labelled_images, preprocess_files
    from edgetl.export.int8 import Int8Config, int8_from_onnx
    from edgetl.export.roles import nodes_for_roles

    calib = preprocess_files(calibration_files(data / calib_split), card.preprocess).array
    judged = labelled_images(data / judge_split, card.classes, card.preprocess)
    assert judged.labels is not None
    with torch.no_grad():
        ref = torch.cat([model(torch.from_numpy(judged.array[i:i + 16])) for i in range(0, len(judged), 16)]).numpy()
    full = onnx.load(str(prepared))
    means = input_means(full, calib[:64])
    rows: dict[str, dict[str, Any]] = {}
    for name, (target, reduce_range, roles) in VARIANTS.items():
        config = Int8Config(target, "minmax", reduce_range, nodes_for_roles(full, roles), True)
        path = root / "fold.int8.onnx"
        int8_from_onnx(prepared, path, calib, config, metadata={}, means=means)
        rows[name] = {**judge_int8(path, config.eval_optimization, judged.array, judged.labels, ref),
                      "n": len(judged), "calibration_images": len(calib)}
        print(f"  calib {calib_split:5s} judge {judge_split:5s} {name:46s} {rows[name]}", flush=True)
    return rows


def _pooled(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Both folds as one judgement over every photo: counts add, then rates."""
    n = sum(f["n"] for f in folds)
    disagree = sum(f["disagreements"] for f in folds)
    fp32 = sum(f["fp32_top1"] * f["n"] / 100 for f in folds)
    int8 = sum(f["int8_top1"] * f["n"] / 100 for f in folds)
    return {"n": n, "disagreements": disagree, "top1_agreement": round(1 - disagree / n, 4),
            "fp32_top1": round(100 * fp32 / n, 2), "int8_top1": round(100 * int8 / n, 2),
            "drop": round(100 * (fp32 - int8) / n, 2), "per_fold_drop": [f["drop"] for f in folds]}


def study(lite: str, data: Path, root: Path) -> dict[str, Any]:
    from edgetl.export.int8 import prepare_for_quantization
    from edgetl.export.onnx import onnx_from_model
    from edgetl.export.source import load_source

    model, card, _ = load_source(f"tf_efficientnet_{lite}", f"efficientnet_{lite}")
    prepared = prepare_for_quantization(onnx_from_model(model, card, root / f"{lite}.onnx"), root / f"{lite}.prep.onnx")
    folds = [_fold(model, card, prepared, data, c, j, root) for c, j in FOLDS]
    return {"input_size": list(card.preprocess.input_size),
            "variants": {name: _pooled([f[name] for f in folds]) for name in VARIANTS}}


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=here.parents[1] / "shared/data/hymenoptera")
    parser.add_argument("--out", type=Path, default=here / "results/int8_crossfold.json")
    args = parser.parse_args()
    from edgetl.card import library_versions

    result: dict[str, Any] = {
        "schema": "edgetl.int8-crossfold/1", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "folds": [{"calibrate": c, "judge": j} for c, j in FOLDS], "calibration": "minmax, bias correction",
        "versions": library_versions("onnxslim"), "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgetl-int8-crossfold.") as tmp:
        for lite in LITES:
            print(f"== tf_efficientnet_{lite}", flush=True)
            result["models"][f"tf_efficientnet_{lite}"] = study(lite, args.data, Path(tmp))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for model, r in result["models"].items():
        for name, v in r["variants"].items():
            print(f"{model:22s} {name:46s} agree {v['top1_agreement']:.2%}  top-1 {v['fp32_top1']:.2f}→"
                  f"{v['int8_top1']:.2f}  drop {v['drop']:+.2f} (folds {v['per_fold_drop']})")


if __name__ == "__main__":
    main()
