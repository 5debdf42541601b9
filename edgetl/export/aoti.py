"""PyTorch → AOTInductor package (``model.pt2``): the model compiled ahead of time to a shared library.

The package runs without Python (``cpp_bench/``'s ``edgetl_bench``, or LibTorch's
``AOTIModelPackageLoader``) and from Python (:class:`edgetl.runtime.aoti.AotiRunner`). Its batch is
dynamic within ``1..max_batch``. Everything a runtime needs travels inside the package as AOTInductor
metadata (string key/values): the card (``edgetl.card``, the same key as ONNX ``metadata_props``) plus
flat keys a C++ reader can use without a JSON parser (input shape, batch range, precision, arch).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.card import (
    ARCH_KEY,
    CPU_FEATURES_KEY,
    MAX_BATCH_KEY,
    MIN_BATCH_KEY,
    PRECISION_KEY,
    SHAPE_KEY,
    ModelCard,
)
from edgetl.errors import EdgetlError
from edgetl.host import cpu_features
from edgetl.io import ensure_writable_dir
from edgetl.models.factory import deploy_form

if TYPE_CHECKING:
    from torch import nn

MAX_AOTI_BATCH = 4096


def package_metadata(card: ModelCard, max_batch: int, device: str = "cpu") -> dict[str, str]:
    """The string key/values stored in the package (card JSON + flat keys for C++).

    A CPU package also records this CPU's features: inductor compiles it for this CPU (``-march=native``),
    and the runners refuse it on a CPU that lacks one rather than crash on an illegal instruction.
    """
    meta = {**card.to_metadata(), ARCH_KEY: card.arch, SHAPE_KEY: ",".join(map(str, card.preprocess.input_size)),
            MIN_BATCH_KEY: "1", MAX_BATCH_KEY: str(max_batch), PRECISION_KEY: "fp32"}
    return {**meta, CPU_FEATURES_KEY: ",".join(cpu_features())} if device == "cpu" else meta


def _check_max_batch(max_batch: int) -> int:
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= MAX_AOTI_BATCH:
        raise EdgetlError(f"max batch {max_batch!r}: the AOTInductor batch range needs an "
                          f"integer in 1..{MAX_AOTI_BATCH} "
                          "(edgetl export --batch MIN:OPT:MAX)")
    return max_batch


def pt2_from_model(model: nn.Module, card: ModelCard, out_path: str | Path, max_batch: int = 64) -> Path:
    """Compile ``model`` (eval mode, on its current device) to ``out_path`` with batch ``1..max_batch``.

    Takes tens of seconds on CPU (a C++ compile). The file appears atomically: a failed compile leaves none.
    """
    import torch

    max_batch = _check_max_batch(max_batch)
    out = Path(out_path)
    if out.suffix != ".pt2":
        raise EdgetlError(f"{out}: AOTInductor packages must end in .pt2; choose e.g. {out.with_suffix('.pt2').name}")
    ensure_writable_dir(out.parent)
    model, _ = deploy_form(model.eval())
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    batch = min(2, max_batch)  # 2, not 1: a size-1 example would specialise the batch dimension
    example = torch.randn(batch, *card.preprocess.input_size, device=device)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=max_batch)},) if max_batch > 1 else None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
    except Exception as exc:  # torch.export raises many types; name the first line, not a traceback
        raise EdgetlError(f"{card.arch}: torch.export failed ({str(exc).splitlines()[0][:200]}); "
                          "export ONNX instead (drop --aoti)") from None
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        tmp = tmp_dir / out.name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch._inductor.aoti_compile_and_package(
                    program, package_path=str(tmp),
                    inductor_configs={"aot_inductor.metadata": package_metadata(card, max_batch, device.type)})
        except Exception as exc:
            raise EdgetlError(f"{out}: AOTInductor compilation failed ({str(exc).splitlines()[0][:200]}); "
                              "it needs a working C++ compiler (g++) on PATH") from None
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out
