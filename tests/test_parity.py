"""Parity: figures, gates, and the `edgetl parity` driver on a faithful and a perturbed export of a real model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgetl.cli import main
from edgetl.parity import GATES, Gate, check_gate, compare_logits, gate_for, one_class_reference

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_compare_logits_on_known_values() -> None:
    ref = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 0.5]])
    cand = ref.copy()
    cand[2] = [0.0, 1.0, 0.5]  # flips image 2's top-1
    s = compare_logits(ref, cand, labels=np.array([0, 2, 0]))
    assert s.n == 3 and s.max_abs_diff == 1.0 and s.top1_agreement == pytest.approx(2 / 3)
    assert s.ref_accuracy == 100.0 and s.cand_accuracy == pytest.approx(200 / 3)
    assert s.accuracy_drop == pytest.approx(100 / 3) and s.worst[0] == 2 and (s.lost, s.gained) == (1, 0)
    back = compare_logits(cand, ref, labels=np.array([0, 2, 0]))  # the roles swapped: the same image, won back
    assert (back.lost, back.gained) == (0, 1) and back.accuracy_drop == pytest.approx(-100 / 3)
    assert compare_logits(ref, cand).lost is None  # no labels, no counts
    assert check_gate(s, GATES["fp32"]) == ["top-1 agreement 66.67% < 100.00%",
                                            "max abs diff 1.00e+00 > 1e-04 × 3 (largest |reference logit|)"]
    assert check_gate(compare_logits(ref, ref), GATES["fp32"]) == []
    assert s.centered_cosine is None  # 3 images: too few to take their mean away
    assert check_gate(s, GATES["int8"]) == ["top-1 drop 33.33 pts > 1.00 (1 more wrong of 3 images: "
                                                  "1 right → wrong, 0 wrong → right)"]
    unlabelled = compare_logits(ref, cand)  # the same logits without labels: disagreement bounds the drop
    assert check_gate(unlabelled, GATES["int8"]) == [
        "top-1 disagreement 33.33 pts > 1.00 (no labels: an upper bound on the drop)"]
    assert check_gate(unlabelled, gate_for("int8", {"int8.max_accuracy_drop": 34})) == []


def test_max_abs_diff_scales_with_the_logits_and_centered_cosine_catches_a_collapse() -> None:
    """FP32 rounding grows with the logits: 2.8e-4 on logits reaching 16 is float32 noise, not a bad export."""
    ref = np.clip(np.random.default_rng(0).normal(0, 6, (50, 10)), -15, 15)
    ref[0, 0] = 16.0
    near = ref + 2.8e-4 * np.sign(np.random.default_rng(1).normal(size=ref.shape))
    assert compare_logits(ref, near).ref_absmax == 16.0 and check_gate(compare_logits(ref, near), GATES["fp32"]) == []
    off = ref + 2e-3
    assert check_gate(compare_logits(ref, off), GATES["fp32"]) == [
        "max abs diff 2.00e-03 > 1e-04 × 16 (largest |reference logit|)"]
    small = ref / 100  # below a logit scale of 1 the limit is absolute, as before
    assert check_gate(compare_logits(small, small + 2e-4), GATES["fp32"]) == ["max abs diff 2.00e-04 > 1e-04"]
    # A weak reference: a per-class offset dominates its logits. A candidate collapsed to the mean logits
    # keeps a raw cosine near 1 and, the reference near chance, loses no accuracy; centred, it scores 0.
    weak = np.linspace(-8, 8, 10) + np.random.default_rng(2).normal(0, 0.3, (50, 10))
    labels = weak.argmax(1)
    collapsed = np.tile(weak.mean(axis=0), (50, 1))
    stats = compare_logits(weak, collapsed)
    assert stats.cosine > 0.99 and stats.centered_cosine == pytest.approx(0.0, abs=1e-9)
    stats.accuracy_drop = 0.0
    assert check_gate(stats, GATES["int8"]) == ["centered cosine 0.0000 < 0.9 (the logits no longer follow the "
                                                "reference's from image to image)"]
    assert check_gate(compare_logits(weak, weak + 0.3, labels), GATES["int8"]) == []  # a shared shift is harmless
    noisy = weak + np.random.default_rng(3).normal(0, 0.05, weak.shape)
    assert compare_logits(weak, noisy).centered_cosine > 0.95
    # A reference that hardly changes from image to image: its centered logits are rounding, so is the cosine.
    flat = 0.005 * np.linspace(-1, 1, 10) + np.random.default_rng(4).normal(0, 1e-5, (50, 10))
    close = flat + np.random.default_rng(5).normal(0, 2e-4, flat.shape)  # every logit within 0.01: faithful
    stats = compare_logits(flat, close, flat.argmax(1))
    assert stats.centered_cosine < 0.5 and check_gate(stats, GATES["int8"]) == []
    stats = compare_logits(flat, flat + np.random.default_rng(6).normal(0, 0.05, flat.shape), flat.argmax(1))
    stats.accuracy_drop = 0.0
    assert check_gate(stats, GATES["int8"])[0].startswith("centered cosine")  # 0.05 noise is not rounding
    # At a card temperature of 0.01 the same 2e-4 is 0.02 of a probability logit: no longer rounding
    sharp = compare_logits(flat, close, flat.argmax(1), temperature=0.01)
    sharp.accuracy_drop = 0.0
    assert check_gate(sharp, GATES["int8"])[0].startswith("centered cosine")


def test_the_probability_difference_is_taken_at_the_cards_temperature() -> None:
    ref, cand = np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[1.1, 0.0], [0.0, 0.0]])
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731 - two classes: p = sigmoid(logit difference)
    assert compare_logits(ref, cand).max_prob_diff == pytest.approx(sigmoid(1.1) - sigmoid(1.0))
    half = compare_logits(ref, cand, temperature=0.5)
    assert half.temperature == 0.5 and half.max_prob_diff == pytest.approx(sigmoid(2.2) - sigmoid(2.0))
    assert half.to_dict()["max_prob_diff"] == half.max_prob_diff


def test_a_reference_that_answers_one_class_is_called_out() -> None:
    """A frozen random backbone gives near-constant logits: every candidate then 'agrees' 100%."""
    ref = np.tile([3.0, 0.0, -1.0], (20, 1)) + np.random.default_rng(0).normal(0, 0.01, (20, 3))
    assert one_class_reference(ref, ["ant", "bee", "wasp"]) == (
        "the reference answers 'ant' for all 20 images, so agreement says little; check that it is the trained "
        "model and that the images cover several classes")
    assert one_class_reference(ref[:5], ["ant", "bee", "wasp"]) is None  # too few images to say
    ref[7] = [0.0, 4.0, 0.0]
    assert one_class_reference(ref, ["ant", "bee", "wasp"]) is None


def test_gates_by_precision_and_overrides() -> None:
    assert gate_for("fp32") == GATES["fp32"]
    assert gate_for("mixed") == GATES["fp16"]
    assert gate_for("int8").max_accuracy_drop == 1.0
    assert gate_for("fp16", {"min_agreement": 0.9, "max_abs_diff": None}).min_agreement == 0.9
    with pytest.raises(ValueError, match="unknown gate field"):
        gate_for("fp32", {"tolerance": 1.0})



def _disagreeing(n: int, disagree: int, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Reference logits and a candidate whose top-1 moves to another class on its first ``disagree`` images."""
    ref = np.random.default_rng(0).normal(size=(n, classes))
    cand = ref.copy()
    for i in range(disagree):
        top = ref[i].argmax()
        cand[i, (top + 1) % classes] = ref[i, top] + 1.0
    return ref, cand


@pytest.mark.parametrize("n", [100, 200, 300, 1000])
def test_each_gate_holds_exactly_at_its_limit(n: int) -> None:
    """The documented limits are inclusive: INT8 "drop <= 1 point" passes 1 image in 100 (with labels, and
    without them as disagreement, where (1 - 0.99) * 100 is 1.0000000000000009 in floating point), and FP16
    ">= 99.5% agreement" passes 5 in 1000. One image more fails each."""
    at = n // 100
    ref, cand = _disagreeing(n, at)
    labelled = compare_logits(ref, cand, ref.argmax(1))
    assert labelled.accuracy_drop == pytest.approx(1.0) and check_gate(labelled, GATES["int8"]) == []
    assert check_gate(compare_logits(ref, cand), GATES["int8"]) == []
    ref, cand = _disagreeing(n, at + 1)
    assert check_gate(compare_logits(ref, cand, ref.argmax(1)), GATES["int8"])[0].startswith("top-1 drop")
    assert check_gate(compare_logits(ref, cand), GATES["int8"])[0].startswith("top-1 disagreement")
    if n == 1000:
        assert check_gate(compare_logits(*_disagreeing(n, 5)), GATES["fp16"]) == []
        assert check_gate(compare_logits(*_disagreeing(n, 6)), GATES["fp16"]) == ["top-1 agreement 99.40% < 99.50%"]


def test_small_logits_keep_fp32s_absolute_limit() -> None:
    """Below a logit scale of 1 the FP32 limit stays 1e-4 absolute: 5e-5 off logits within ±0.2 passes."""
    ref = np.random.default_rng(0).uniform(-0.2, 0.2, (20, 10))
    assert check_gate(compare_logits(ref, ref + 5e-5), GATES["fp32"]) == []
    assert check_gate(compare_logits(ref, ref + 2e-4), GATES["fp32"])[0].startswith("max abs diff")

def test_a_global_override_changes_a_check_only_where_a_gate_has_it() -> None:
    assert gate_for("int8", {"max_abs_diff": 0.05}) == GATES["int8"]  # loosening FP32's adds none to INT8
    assert gate_for("fp32", {"max_abs_diff": 0.05}) == Gate(min_agreement=1.0, max_abs_diff=0.05)
    assert gate_for("int8", {"int8.max_abs_diff": 0.5}) == Gate(max_abs_diff=0.5, max_accuracy_drop=1.0,
                                                                min_centered_cosine=0.9)
    assert gate_for("mixed", {"fp16.min_agreement": None}) == Gate()  # None drops the check
    assert gate_for("fp16", {"fp16.min_agreement": 0.97, "min_agreement": 0.9}).min_agreement == 0.97
    with pytest.raises(ValueError, match="unknown gate field 'int4.max_abs_diff'"):
        gate_for("fp32", {"int4.max_abs_diff": 1.0})


def _perturbed(onnx_path: Path, out: Path) -> Path:
    """The same model with the classifier weights nudged: a broken export that still loads and runs."""
    model = onnx.load(str(onnx_path))
    init = max(model.graph.initializer, key=lambda t: (len(t.dims) == 2, t.dims[0] == 2 if t.dims else False))
    w = numpy_helper.to_array(init).copy()
    w += np.random.default_rng(0).normal(0, 0.5, w.shape).astype(w.dtype)
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(out))
    return out


def test_parity_passes_on_faithful_export_and_fails_on_perturbed(
        tiny_run_dir: Path, tiny_onnx: Path, hymenoptera: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = _perturbed(tiny_onnx, tmp_path / "perturbed.onnx")
    ok_json, bad_json = tmp_path / "ok.json", tmp_path / "bad.json"
    args = ["--data", str(hymenoptera), "--limit", "24", "--no-progress", "--worst", "5"]
    assert main(["parity", str(tiny_run_dir), str(tiny_onnx), *args, "--json", str(ok_json)]) == 0
    report = json.loads(ok_json.read_text())
    cand = report["candidates"][0]
    assert report["passed"] and report["labelled"] and report["images"] == 24
    assert cand["stats"]["top1_agreement"] == 1.0 and cand["stats"]["max_abs_diff"] <= 1e-4
    assert cand["stats"]["accuracy_drop"] == 0.0 and cand["gate"]["max_abs_diff"] == 1e-4
    applied = 1e-4 * max(1.0, cand["stats"]["ref_absmax"])  # per unit of the largest |reference logit|: stated
    assert cand["gate"]["max_abs_diff_applied"] == pytest.approx(applied)
    assert "PASS" in capsys.readouterr().out

    assert main(["parity", str(tiny_run_dir), str(tiny_onnx), str(bad), *args, "--json", str(bad_json)]) == 1
    report = json.loads(bad_json.read_text())
    good, broken = report["candidates"]
    assert good["passed"] and not broken["passed"] and not report["passed"]
    assert any("max abs diff" in f for f in broken["fails"])
    worst = broken["worst_images"]
    assert len(worst) == 5 and all(Path(w["path"]).is_file() for w in worst)
    diffs = [w["max_abs_diff"] for w in worst if w["agrees"]]
    assert diffs == sorted(diffs, reverse=True)  # disagreements first, then by difference
    assert "FAIL" in capsys.readouterr().out
    # a looser, explicitly overridden gate lets the same candidate pass
    assert main(["parity", str(tiny_run_dir), str(bad), *args, "--max-abs-diff", "100", "--min-agreement", "0"]) == 0
    assert main(["parity", str(tiny_run_dir), str(bad), *args, "--gate", "fp32.max-abs-diff=none",
                 "--gate", "FP32.min_agreement=0"]) == 0


def test_int8_for_tensorrt_is_judged_with_fake_quant_numerics(
        tiny_run_dir: Path, tiny_onnx: Path, hymenoptera: Path, tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from edgetl.export.onnx import set_metadata
    from edgetl.parity import run_parity
    from edgetl.runtime import load

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            data = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
            self.items = iter([{"input": data}])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    raw = tmp_path / "raw_int8.onnx"
    quantize_static(str(tiny_onnx), str(raw), Reader(), quant_format=QuantFormat.QDQ)
    model = onnx.load(str(raw))
    set_metadata(model, {"edgetl.int8_target": "tensorrt"})
    onnx.save(model, str(tmp_path / "int8.onnx"))
    from edgetl.data.labelled import find_labelled
    from edgetl.evaluate import evaluate_artifact
    from edgetl.runtime.loader import deployed_runner

    images = find_labelled(hymenoptera, ["ants", "bees"], limit=12)
    paths, labels = images.paths, images.labels
    from edgetl.runtime.loader import runner_from_artifact

    int8 = tmp_path / "int8.onnx"  # `load` answers as deployed; bench's runner keeps ORT's defaults; asked for wins
    with load(int8) as a, runner_from_artifact(int8) as b, load(int8, optimization="basic") as c:
        assert [r.info.details["optimization"] for r in (a, b, c)] == ["disable", "all", "basic"]
    with load(tiny_run_dir, device="cpu") as ref, deployed_runner(tmp_path / "int8.onnx") as cand:
        assert cand.info.details["optimization"] == "disable" and cand.info.details["int8_target"] == "tensorrt"
        report = run_parity(ref, [("int8.onnx", cand)], paths, labels, progress=False)
    c = report.candidates[0]
    assert c.runner["precision"] == "int8" and c.gate == GATES["int8"]
    assert c.passed == (c.stats.accuracy_drop <= 1.0)
    # `edgetl eval` scores the same file in the same numerics, so both report the same accuracy
    ev = evaluate_artifact(tmp_path / "int8.onnx", hymenoptera / "val", progress=False)
    val = find_labelled(hymenoptera / "val", ["ants", "bees"], None)
    with load(tiny_run_dir, device="cpu") as ref, deployed_runner(tmp_path / "int8.onnx") as cand:
        same = run_parity(ref, [("int8.onnx", cand)], val.paths, val.labels, progress=False).candidates[0].stats
    assert ev.images == same.n and ev.top1 == pytest.approx(same.cand_accuracy)


def test_unlabelled_folder_and_class_mismatch(tiny_run_dir: Path, tiny_onnx: Path, hymenoptera: Path,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.data.labelled import find_labelled

    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted((hymenoptera / "val" / "bees").glob("*.jpg"))[:3]:
        shutil.copy(p, flat / p.name)
    (flat / "notes.txt").write_text("not an image")
    images = find_labelled(flat, ["ants", "bees"], None)
    assert len(images.paths) == 3 and images.labels is None
    out = tmp_path / "u.json"
    assert main(["parity", str(tiny_run_dir), str(tiny_onnx), "--data", str(flat), "--json", str(out),
                 "--no-progress"]) == 0
    assert json.loads(out.read_text())["labelled"] is False

    other = tmp_path / "other_classes"
    shutil.copytree(tiny_run_dir, other)
    card = json.loads((other / "model.json").read_text())
    card["classes"] = ["wasps", "bees"]
    (other / "model.json").write_text(json.dumps(card))
    assert main(["parity", str(other), str(tiny_onnx), "--data", str(flat), "--no-progress"]) == 2
    assert "differ from the reference" in capsys.readouterr().err
    assert main(["parity", str(tiny_run_dir), str(tiny_onnx), "--data", str(tmp_path / "none")]) == 2


def _class_folders(root: Path, names: list[str], source: Path) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        for p in sorted(source.glob("*.jpg"))[:2]:
            shutil.copy(p, root / name / p.name)
    return root


def test_class_folders_that_do_not_match_the_model(tiny_run_dir: Path, tiny_onnx: Path, hymenoptera: Path,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.data.labelled import find_labelled
    from edgetl.errors import EdgetlError

    bees = hymenoptera / "val" / "bees"
    half = _class_folders(tmp_path / "half", ["ants", "bees", "wasps"], bees)
    with pytest.raises(EdgetlError, match=r"half: folder\(s\) wasps are not classes of the model \(ants, bees\)"):
        find_labelled(half, ["ants", "bees"], None)
    with pytest.raises(EdgetlError, match="folder.s. wasps are not classes of the model .ImageNet classes"):
        find_labelled(half, [f"imagenet_{i}" for i in range(1000)], None)  # ants and bees are ImageNet classes
    other = _class_folders(tmp_path / "other", ["cats", "dogs"], bees)
    images = find_labelled(other, ["ants", "bees"], None)
    assert images.labels is None and len(images.paths) == 4
    assert images.note is not None and images.note.startswith("none of") and images.note.endswith("no accuracy")
    out = tmp_path / "o.json"
    assert main(["parity", str(tiny_run_dir), str(tiny_onnx), "--data", str(other), "--no-progress",
                 "--json", str(out)]) == 0
    note = json.loads(out.read_text())["note"]
    assert note.startswith(images.note) and "agreement >= 99%" in note  # parity adds how INT8 is judged then
    assert "labels: none of" in " ".join(capsys.readouterr().out.split())


def test_provider_applies_to_the_onnx_candidates_only(tiny_run_dir: Path, tiny_onnx: Path, hymenoptera: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data", str(hymenoptera), "--limit", "4", "--no-progress", "--provider", "cpu"]
    assert main(["parity", str(tiny_run_dir), str(tiny_run_dir), str(tiny_onnx), *args]) == 0
    assert main(["parity", str(tiny_run_dir), str(tiny_run_dir), *args]) == 2
    assert "--provider cpu applies to .onnx candidates and none was given" in capsys.readouterr().err


def test_top5_overlap_only_where_it_can_differ() -> None:
    rng = np.random.default_rng(0)
    two = rng.standard_normal((6, 2))
    assert compare_logits(two, -two).top5_overlap is None  # with 2 classes every top-5 holds both
    ten = rng.standard_normal((6, 10))
    assert compare_logits(ten, ten).top5_overlap == 1.0
    assert compare_logits(ten, -ten).top5_overlap == 0.0  # reversed order: the top 5 swap with the bottom 5


def test_a_candidate_of_unrecorded_precision_is_refused_before_any_image_runs(tiny_run_dir: Path,
                                                                              tiny_onnx: Path) -> None:
    from edgetl.errors import EdgetlError
    from edgetl.parity import run_parity
    from edgetl.runtime import load

    # An engine whose record was lost reports precision "unknown" (edgetl.runtime.tensorrt); the gate needs one.
    with load(tiny_run_dir, device="cpu") as ref, load(tiny_onnx) as cand:
        cand.info.precision = "unknown"
        with pytest.raises(EdgetlError, match=r"model.engine: its precision is not recorded \('unknown'\).*"
                                              r"keep the model.engine.json `edgetl export` wrote"):
            run_parity(ref, [("export/model.engine", cand)], ["no-such-image.jpg"], None, progress=False)


def test_same_named_candidates_keep_apart_in_the_table() -> None:
    from edgetl.cli.parity import short_names

    paths = ["runs/a/export/model.int8.onnx", "runs/a/cpu8/model.int8.onnx", "runs/a/export/model.onnx"]
    assert short_names(paths) == ["export/model.int8.onnx", "cpu8/model.int8.onnx", "model.onnx"]
