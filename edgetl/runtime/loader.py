"""Pick the backend from the artifact: run dir / .safetensors → PyTorch, .onnx → ONNX Runtime,
.engine / .plan → TensorRT, .pt2 → AOTInductor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError
from edgetl.runtime.base import Runner
from edgetl.runtime.engine_meta import ENGINE_SUFFIXES

KINDS = "a run directory, .safetensors, .onnx, .engine/.plan or .pt2"


def artifact_kind(path: str | Path) -> str:
    """'torch', 'onnx', 'tensorrt' or 'aoti' for ``path``; a one-line error for anything else."""
    p = Path(path)
    if not p.exists():
        raise EdgetlError(f"{p}: artifact not found; pass {KINDS}")
    suffix = p.suffix.lower()
    if p.is_dir() and (p / "manifest.json").is_file() and not (p / "model.json").is_file():
        files = sorted(f.name for f in p.iterdir() if f.suffix in (".onnx", ".engine", ".plan", ".pt2"))
        raise EdgetlError(f"{p}: an export directory, not a run; pass one of its artifacts "
                          f"({', '.join(files) or 'none'})"
                          + (f" or its PyTorch reference {p / 'pytorch'}" if (p / "pytorch").is_dir() else ""))
    if p.is_dir() or suffix == ".safetensors":
        return "torch"
    if suffix == ".onnx":
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    if suffix == ".pt2":
        return "aoti"
    raise EdgetlError(f"{p}: unknown artifact type {suffix or '(no suffix)'!r}; pass {KINDS}")


def _ort_providers(device: str | None, provider: str | None) -> list[str] | None:
    if provider is not None:
        on_cpu = provider.lower() in ("cpu", "cpuexecutionprovider")
        if device is not None and on_cpu != (device == "cpu"):
            raise EdgetlError(f"--provider {provider} runs on the {'CPU' if on_cpu else 'GPU'} but --device is "
                              f"{device}; drop one of them")
        return [provider]
    if device is None:
        return None
    if device == "cpu":
        return ["cpu"]
    if device.startswith("cuda"):
        return ["cuda"]
    raise EdgetlError(f"unknown device {device!r}; choose cpu or cuda")


# The keywords each backend takes, so a misplaced one is a one-line error rather than a TypeError.
OPTIONS = {"torch": ("half", "channels_last", "compile", "cuda_graph", "threads", "tf32"),
           "onnx": ("optimization", "threads", "spinning", "card"),
           "tensorrt": ("cuda_graph", "contexts"), "aoti": ()}


def runner_from_artifact(path: str | Path, device: str | None = None, provider: str | None = None,
                         **kw: Any) -> Runner:
    """A runner for any edgetl artifact; None picks the best device / provider available.

    Extra keywords go to the backend: ``half``, ``channels_last``, ``compile`` (PyTorch);
    ``optimization``, ``threads`` (ONNX Runtime); ``cuda_graph``, ``contexts`` (TensorRT).
    Each backend runs with its library's defaults: what ``edgetl bench`` times. For answers, use
    :func:`deployed_runner` (``edgetl.runtime.load``).
    """
    kind = artifact_kind(path)
    if provider is not None and kind != "onnx":
        raise EdgetlError(f"{path}: --provider applies to .onnx files only; drop it for this {kind} artifact")
    wrong = sorted(set(kw) - set(OPTIONS[kind]))
    if wrong:
        raise EdgetlError(f"{path}: option(s) {', '.join(wrong)} do not apply to {kind} artifacts; "
                          f"they take {', '.join(OPTIONS[kind]) or 'none'}")
    if kind == "torch":
        from edgetl.runtime.torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(path, device=device, **kw)
    if kind == "onnx":
        from edgetl.runtime.onnxruntime import OrtRunner

        return OrtRunner(path, providers=_ort_providers(device, provider), **kw)
    if kind == "tensorrt":
        if device is not None and not device.startswith("cuda"):
            raise EdgetlError(f"{path}: TensorRT engines run on a CUDA GPU only; use --device cuda or the .onnx file")
        from edgetl.runtime.tensorrt import TrtRunner

        index = int(device.split(":")[1]) if device and ":" in device else 0
        return TrtRunner(path, device=index, **kw)
    from edgetl.runtime.aoti import AotiRunner

    return AotiRunner(path, device)


def deployed_runner(path: str | Path, device: str | None = None, provider: str | None = None,
                    **kw: Any) -> Runner:
    """A runner with the numerics the artifact has when deployed: ``edgetl.runtime.load``, eval, predict, parity.

    A TensorRT-target INT8 ONNX runs its Q/DQ as float fake-quant, as TensorRT computes it, unless
    ``optimization`` is given: ORT's fused integer kernels round differently (and saturate on CPUs
    without VNNI, where the Lite0 ImageNet model loses 24 points). Speed is measured with
    :func:`runner_from_artifact`'s defaults instead.
    """
    if artifact_kind(path) == "onnx" and "optimization" not in kw:
        from edgetl.runtime.onnxruntime import onnx_int8_target

        if onnx_int8_target(path) == "tensorrt":
            kw["optimization"] = "disable"
    return runner_from_artifact(path, device=device, provider=provider, **kw)
