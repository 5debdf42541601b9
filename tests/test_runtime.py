"""Runtime: PyTorch and ONNX Runtime backends on real exported models, the loader and its errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import requires_gpu

from edgetl.errors import EdgetlError
from edgetl.runtime import load
from edgetl.runtime.onnx_graph import summarize_onnx
from edgetl.runtime.onnxruntime import (
    OrtRunner,
    compute_on_cpu,
    node_placement,
    provider_chain,
    resolve_providers,
    tensorrt_ep_options,
)
from edgetl.runtime.torch_runner import TorchRunner

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)


def test_ort_cpu_matches_torch(tiny_run_dir: Path, tiny_onnx: Path, batch: np.ndarray) -> None:
    with load(tiny_run_dir, device="cpu") as ref, load(tiny_onnx, device="cpu") as ort:
        expected = ref.infer(batch)
        assert expected.shape == (5, 2) and expected.dtype == np.float32
        np.testing.assert_allclose(ort.infer(batch), expected, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(ort.infer(batch[:1]), expected[:1], atol=1e-4, rtol=1e-4)
        assert ort.card.classes == ref.card.classes == ["ants", "bees"]
        assert ort.card.preprocess == ref.card.preprocess


def test_ort_info_is_read_from_the_graph(tiny_onnx: Path) -> None:
    with OrtRunner(tiny_onnx, providers=["cpu"]) as r:
        assert r.info.backend == "onnxruntime" and r.info.device == "cpu"
        assert r.info.details["provider"] == "CPUExecutionProvider"
        assert r.info.precision == "fp32"
        assert (r.info.input_name, r.info.output_name) == ("input", "logits")
        assert r.info.max_batch is None and not r.info.static_batch
        assert r.info.details["graph"]["op_counts"]["Conv"] > 0
        if hasattr(r.session, "get_provider_graph_assignment_info"):  # ORT 1.24+
            assert list(r.info.details["nodes_per_provider"]) == ["CPUExecutionProvider"]


def test_tensorrt_ep_gets_an_engine_cache_per_file_content_and_never_a_cpu_int8_model(
        tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGETL_ORT_TRT_CACHE", str(tmp_path / "cache"))
    trt, cuda, cpu = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
    chain = provider_chain([trt, cuda, cpu], False, tiny_onnx, None)
    (name, options), *rest = chain
    assert (name, rest) == (trt, [cuda, cpu])
    assert not any("fp16" in k or "int8" in k for k in options)  # no flag: ORT builds strongly typed, as edgetl does
    cache = Path(options["trt_engine_cache_path"])
    assert options["trt_engine_cache_enable"] == "True" and cache.is_dir() and cache.parent == tmp_path / "cache"
    changed = tmp_path / "model.onnx"  # other weights: ORT's engine names would match, the folder must not
    changed.write_bytes(tiny_onnx.read_bytes() + b"\0")
    assert tensorrt_ep_options(changed)["trt_engine_cache_path"] != str(cache)
    for i in range(10):  # only the most recently used folders are kept
        other = tmp_path / f"m{i}.onnx"
        other.write_bytes(b"%d" % i)
        tensorrt_ep_options(other)
    assert len(list((tmp_path / "cache").iterdir())) == 8 and not cache.exists()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("EDGETL_ORT_TRT_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(EdgetlError, match="cannot keep ONNX Runtime's TensorRT engines there .*EDGETL_ORT_TRT_CACHE"):
        tensorrt_ep_options(tiny_onnx)
    assert provider_chain([trt, cuda, cpu], False, tiny_onnx, "cpu") == [cuda, cpu]  # U8 Q/DQ: TensorRT can't
    with pytest.raises(EdgetlError, match=r"made for the CPU \(asymmetric U8\).*--int8-target tensorrt"):
        provider_chain([trt, cuda], True, tiny_onnx, "cpu")
    assert provider_chain([cpu], True, tiny_onnx, "cpu") == [cpu]
    with OrtRunner(tiny_onnx, providers=["cpu"]) as r:
        assert r.info.details["tensorrt_ep"] is None


def test_a_gpu_session_with_convolutions_on_the_cpu_is_refused(tiny_onnx: Path) -> None:
    """Read from a real session's placement: this CPU one, judged as if its first provider were CUDA."""
    with OrtRunner(tiny_onnx, providers=["cpu"]) as r:
        placement = node_placement(r.session)
        if placement is None:
            pytest.skip("this ONNX Runtime cannot say where nodes run (before 1.24)")
        assert placement is not None and set(placement) == {"CPUExecutionProvider"}
        assert compute_on_cpu(placement, "CPUExecutionProvider") == []
        on_cpu = compute_on_cpu(placement, "CUDAExecutionProvider")
        assert on_cpu and all(any(k in op for k in ("Conv", "Gemm", "MatMul")) for op in on_cpu)
        r.provider = "CUDAExecutionProvider"
        with pytest.raises(EdgetlError, match=rf"CUDAExecutionProvider left {len(on_cpu)} compute nodes .* cpu$"):
            r._refuse_partial_fallback(placement)
    shape_ops_only = {"CUDAExecutionProvider": ["Conv", "Gemm"], "CPUExecutionProvider": ["Shape", "Gather"]}
    assert compute_on_cpu(shape_ops_only, "CUDAExecutionProvider") == []  # ORT puts shape arithmetic there on purpose


def test_ort_disabled_optimization_gives_same_logits(tiny_onnx: Path, batch: np.ndarray) -> None:
    with OrtRunner(tiny_onnx, optimization="all") as a, OrtRunner(tiny_onnx, optimization="disable") as b:
        np.testing.assert_allclose(a.infer(batch), b.infer(batch), atol=1e-4)
        assert b.info.details["optimization"] == "disable"


def test_int8_and_fp16_detected_from_graph(tiny_onnx: Path, batch: np.ndarray, tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load(str(tiny_onnx)), keep_io_types=True)
    onnx.save(half, str(tmp_path / "fp16.onnx"))
    fp16 = summarize_onnx(tmp_path / "fp16.onnx")
    assert fp16.precision == "fp16" and fp16.float16_share > 0.9

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": batch}])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(str(tiny_onnx), str(tmp_path / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    with OrtRunner(tmp_path / "int8.onnx", optimization="disable") as r:
        assert r.info.precision == "int8"
        assert r.info.details["graph"]["qdq_pairs"] > 0
        assert r.infer(batch).shape == (5, 2)


def test_static_batch_is_split_and_padded(tiny_run_dir: Path, tmp_path: Path, batch: np.ndarray) -> None:
    from edgetl.export.onnx import onnx_from_checkpoint

    path = onnx_from_checkpoint(tiny_run_dir, tmp_path / "static.onnx", static_batch=2)
    with OrtRunner(path) as r, TorchRunner.from_checkpoint(tiny_run_dir) as ref:
        assert r.info.static_batch and r.info.max_batch == 2
        out = r.infer(batch)  # 5 = 2 + 2 + 1 padded to 2
        assert out.shape == (5, 2)
        np.testing.assert_allclose(out, ref.infer(batch), atol=1e-4, rtol=1e-4)



def test_a_batch_below_the_artifacts_min_batch_is_padded_up_and_the_padding_dropped(tiny_onnx: Path,
                                                                                   batch: np.ndarray) -> None:
    """As a TensorRT profile whose smallest batch is 4: 3 images run as one call of 4, and 3 answers come back."""
    with OrtRunner(tiny_onnx) as r, OrtRunner(tiny_onnx) as ref:
        r.info.min_batch, r.info.max_batch = 4, 8
        sizes: list[int] = []
        real = r._infer

        def recorded(piece: np.ndarray) -> np.ndarray:
            sizes.append(len(piece))
            return real(piece)

        r._infer = recorded  # type: ignore[method-assign]
        out = r.infer(batch[:3])
        assert sizes == [4] and out.shape == (3, 2)
        np.testing.assert_allclose(out, ref.infer(batch[:3]), rtol=1e-5, atol=1e-6)

def test_torch_channels_last_matches_eager(tiny_run_dir: Path, batch: np.ndarray) -> None:
    with TorchRunner.from_checkpoint(tiny_run_dir) as a, \
            TorchRunner.from_checkpoint(tiny_run_dir, channels_last=True) as b:
        np.testing.assert_allclose(a.infer(batch), b.infer(batch), atol=1e-5)
        assert b.info.details["channels_last"] and a.info.details["mode"] == "eager"
        assert a.info.device == "cpu" and a.info.precision == "fp32"


def test_compute_call_runs_the_model(tiny_onnx: Path, tiny_run_dir: Path, batch: np.ndarray) -> None:
    for path in (tiny_onnx, tiny_run_dir):
        with load(path, device="cpu") as r:
            fn = r.compute_call(batch)
            times = r.time_calls(fn, 3)
            assert len(times) == 3 and all(t > 0 for t in times)


def test_wrong_input_is_a_clear_error_naming_the_file(tiny_onnx: Path, tiny_run_dir: Path) -> None:
    for artifact in (tiny_onnx, tiny_run_dir):
        with load(artifact, device="cpu") as r:
            with pytest.raises(EdgetlError, match=rf"^{re.escape(str(artifact))}.*: input of shape \(1, 3, 32, 32\) "
                                                  r"does not fit; it expects \(N, 3, 64, 64\) float32 NCHW$"):
                r.infer(np.zeros((1, 3, 32, 32), np.float32))
            with pytest.raises(EdgetlError, match=r"input of dtype uint8 \(raw pixels\?\).*Predictor"):
                r.infer(np.zeros((1, 3, 64, 64), np.uint8))  # 0-255 run unnormalised: refused, not cast
            with pytest.raises(EdgetlError, match="infer takes a numpy array .* not a list"):
                r.infer([np.zeros((3, 64, 64), np.float32)])  # type: ignore[arg-type]
            float64 = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
            np.testing.assert_array_equal(r.infer(float64), r.infer(float64.astype(np.float32)))  # a float is cast


def test_provider_not_available_lists_the_available_ones(tiny_onnx: Path) -> None:
    import onnxruntime as ort

    from edgetl.runtime.onnxruntime import PREFERENCE

    missing = [p for p in PREFERENCE if p not in ort.get_available_providers()]
    if missing:
        with pytest.raises(EdgetlError, match="not available here; available: .*CPUExecutionProvider"):
            OrtRunner(tiny_onnx, providers=[missing[0]])
    with pytest.raises(EdgetlError, match="'no-such-provider' is not one edgetl measures"):
        OrtRunner(tiny_onnx, providers=["no-such-provider"])
    assert resolve_providers(None, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers(None, ["CUDAExecutionProvider", "CPUExecutionProvider", "TensorrtExecutionProvider"])[0] \
        == "TensorrtExecutionProvider"
    assert resolve_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CUDAExecutionProvider"]


def test_onnx_without_metadata_is_refused(tiny_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(EdgetlError, match="no edgetl metadata"):
        load(tmp_path / "bare.onnx")


@pytest.mark.parametrize("name", ["garbage.onnx", "garbage.engine", "garbage.plan"])
def test_garbage_files_give_one_line_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00not a model\xff" * 64)
    with pytest.raises(EdgetlError) as err:
        load(path)
    message = str(err.value)
    assert "\n" not in message
    assert path.name in message or "TensorRT is required" in message
    if name.endswith(".onnx"):
        assert "not a readable ONNX file" in message


def test_truncated_onnx_says_why(tiny_onnx: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.onnx"
    path.write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    with pytest.raises(EdgetlError, match=r"cut.onnx: not a readable ONNX file \((?!EdgetlError)"):
        load(path)


def test_options_devices_and_providers_that_do_not_fit_are_one_line_errors(tiny_onnx: Path) -> None:
    with pytest.raises(EdgetlError, match="half do not apply to onnx artifacts; they take optimization"):
        load(tiny_onnx, half=True)
    with pytest.raises(EdgetlError, match="--provider cpu runs on the CPU but --device is cuda"):
        load(tiny_onnx, device="cuda", provider="cpu")
    with pytest.raises(EdgetlError, match=f"{tiny_onnx.name}: ONNX Runtime provider "
                                          "'AzureExecutionProvider' is not one"):
        load(tiny_onnx, provider="AzureExecutionProvider")


def test_metadata_that_contradicts_the_graph_is_refused(tiny_onnx: Path, tmp_path: Path) -> None:
    from edgetl.card import METADATA_KEY
    from edgetl.export.onnx import set_metadata

    model = onnx.load(str(tiny_onnx))
    card = json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))
    for change, pattern in (({"classes": ["a", "b", "c"]}, "lists 3 classes but the graph outputs 2"),
                            ({"preprocess": {**card["preprocess"], "input_size": [3, 96, 96]}},
                             r"says input \[3, 96, 96\] but the graph takes")):
        set_metadata(model, {METADATA_KEY: json.dumps({**card, **change})})
        onnx.save(model, str(tmp_path / "lies.onnx"))
        with pytest.raises(EdgetlError, match=pattern):
            load(tmp_path / "lies.onnx")


def test_engine_without_tensorrt_says_how_to_get_it(tmp_path: Path, tiny_run_dir: Path) -> None:
    from conftest import has_tensorrt

    if has_tensorrt():
        pytest.skip("TensorRT is installed here; this checks the message without it")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"garbage")
    shutil.copy(tiny_run_dir / "model.json", tmp_path / "model.json")
    with pytest.raises(EdgetlError, match="model.engine: TensorRT is required.*pip install tensorrt.*edgetl export"):
        load(engine)
    with pytest.raises(EdgetlError, match="CUDA GPU only"):
        load(engine, device="cpu")


@pytest.mark.parametrize(("name", "pattern"), [("missing.onnx", "artifact not found"), ("x.txt", "unknown artifact "
                                                                                                 "type")])
def test_loader_rejects_unknown_paths(tmp_path: Path, name: str, pattern: str) -> None:
    if name.endswith(".txt"):
        (tmp_path / name).write_text("hi")
    with pytest.raises(EdgetlError, match=pattern):
        load(tmp_path / name)


def test_half_on_cpu_is_refused(tiny_run_dir: Path) -> None:
    with pytest.raises(EdgetlError, match="--half needs a CUDA device"):
        TorchRunner.from_checkpoint(tiny_run_dir, device="cpu", half=True)


@requires_gpu
@pytest.mark.gpu
def test_torch_cuda_half_graph_and_compiled(tiny_run_dir: Path, batch: np.ndarray) -> None:
    with TorchRunner.from_checkpoint(tiny_run_dir, device="cpu") as ref, \
            TorchRunner.from_checkpoint(tiny_run_dir, device="cuda", half=True, channels_last=True) as half:
        expected = ref.infer(batch)
        np.testing.assert_allclose(half.infer(batch), expected, atol=5e-2)
        fn = half.compute_call(batch)
        half.reset_peak_memory()  # the peak is measured from a reset after warm-up, as the harness does
        assert len(half.time_calls(fn, 5)) == 5 and half.timer_name == "cuda-events"
        peak = half.peak_memory_mb()
        assert peak is not None and peak > 0
    with TorchRunner.from_checkpoint(tiny_run_dir, device="cuda", half=True, cuda_graph=True) as graphed:
        np.testing.assert_allclose(graphed.infer(batch), expected, atol=5e-2)
        np.testing.assert_allclose(graphed.infer(batch[:2]), expected[:2], atol=5e-2)
        graphed.compute_call(batch)()
        assert graphed.peak_memory_mb() is None  # its graph pool cannot be told from other models' memory
    with TorchRunner.from_checkpoint(tiny_run_dir, device="cuda", half=True, channels_last=True,
                                     compile="reduce-overhead") as compiled:  # the GPU suite's fastest variant
        for n in (len(batch), 2, len(batch)):  # each batch size compiled and captured once, then replayed
            np.testing.assert_allclose(compiled.infer(batch[:n]), expected[:n], atol=5e-2)
        assert len(compiled.time_calls(compiled.compute_call(batch), 5)) == 5


@requires_gpu
@pytest.mark.gpu
def test_ort_cuda_provider(tiny_run_dir: Path, tiny_onnx: Path, batch: np.ndarray) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu not installed")
    with TorchRunner.from_checkpoint(tiny_run_dir, device="cpu") as ref:
        expected = ref.infer(batch)
    with OrtRunner(tiny_onnx, providers=["cuda"]) as r:
        assert r.info.device == "cuda"
        assert "CUDAExecutionProvider" in (r.info.details["nodes_per_provider"] or {})
        np.testing.assert_allclose(r.infer(batch), expected, atol=1e-3)
        r.compute_call(batch)()


def test_cuda_graph_needs_cuda(tiny_run_dir: Path) -> None:
    with pytest.raises(EdgetlError, match="cuda_graph needs a CUDA device"):
        TorchRunner.from_checkpoint(tiny_run_dir, device="cpu", cuda_graph=True)
    with pytest.raises(EdgetlError, match="unknown torch.compile mode 'fastest'; choose one of default"):
        TorchRunner.from_checkpoint(tiny_run_dir, device="cpu", compile="fastest")


def test_tf32_choice_holds_for_the_runner_call_alone(tiny_run_dir: Path, batch: np.ndarray) -> None:
    """IEEE FP32 next to TF32 in one process: the switch is set during this runner's call, then put back."""
    import torch

    seen: list[bool] = []
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    for tf32 in (False, None):
        with TorchRunner.from_checkpoint(tiny_run_dir, device="cpu", tf32=tf32) as r:
            r.model.register_forward_hook(  # type: ignore[attr-defined]
                lambda *_: seen.append(torch.backends.cudnn.allow_tf32))
            r.infer(batch[:1])
            r.compute_call(batch[:1])()
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    assert before[0] is True  # PyTorch's default for cuDNN convolutions, so None and False differ
    assert seen == [False, False, True, True]


def test_torch_compile_matches_eager(tiny_run_dir: Path, batch: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled path really compiles (inductor, C++ on CPU) and answers as eager does, per batch size.

    torch's recompile limit counts the graphs of every compiled copy of a model class, and past it runs
    eager without a word. Set to 1 and made to fail here, it shows each new batch size really compiles.
    """
    import torch._dynamo

    from edgetl.runtime import torch_runner

    monkeypatch.setattr(torch._dynamo.config, "cache_size_limit", 1)
    monkeypatch.setattr(torch._dynamo.config, "fail_on_cache_limit_hit", True)
    with TorchRunner.from_checkpoint(tiny_run_dir, device="cpu") as eager, \
            TorchRunner.from_checkpoint(tiny_run_dir, device="cpu", compile=True) as compiled:
        assert compiled.info.details["mode"] == "compiled" and compiled.info.details["compile"] == "default"
        for n in (5, 2):
            np.testing.assert_allclose(compiled.infer(batch[:n]), eager.infer(batch[:n]), atol=1e-4, rtol=1e-4)
        fn = compiled.compute_call(batch[:2])
        assert len(compiled.time_calls(fn, 3)) == 3
        for mode in ("frozen", "frozen-max-autotune"):  # BatchNorm folded; kernels tuned as well
            with TorchRunner.from_checkpoint(tiny_run_dir, device="cpu", compile=mode) as frozen:
                assert frozen.info.details["compile"] == mode
                np.testing.assert_allclose(frozen.infer(batch), eager.infer(batch), atol=1e-4, rtol=1e-4)
        monkeypatch.setattr(torch_runner, "COMPILED_GRAPHS", 1)  # edgetl's own cap: an error, never eager
        with pytest.raises(EdgetlError, match="compiled graphs in this process"):
            compiled.infer(batch[:3])


def test_io_binding_call_gives_the_session_output(tiny_onnx: Path, batch: np.ndarray) -> None:
    """The IO-binding path the CUDA compute mode uses, run on the CPU device with real ONNX Runtime."""
    from edgetl.runtime.onnxruntime import bound_call

    with OrtRunner(tiny_onnx, providers=["cpu"]) as r:
        call = bound_call(r.session, r.info.input_name, r.info.output_name, batch, "cpu")
        first, again = call().copy_outputs_to_cpu()[0].copy(), call().copy_outputs_to_cpu()[0]
        expected = r.session.run([r.info.output_name], {r.info.input_name: batch})[0]
    np.testing.assert_allclose(first, expected, atol=1e-6)
    np.testing.assert_array_equal(first, again)
