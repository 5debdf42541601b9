"""Training-loop overhead: images/s of edgetl's ``train_one_epoch`` vs a minimal hand-written PyTorch loop.

Same model, same in-memory batches, same AdamW settings; rounds are interleaved (edgetl, plain, edgetl,
plain, …) so machine noise hits both alike. The ratio edgetl / plain is the number to watch (goal >= 0.95).

    python benchmarks/train_throughput.py --model resnet18 --img-size 64 --batch 32 --steps 8 --rounds 9

The committed result was taken with 2 threads (``host.torch_threads``) on a shared 2-core box; when other work
contends for the cores, OMP_NUM_THREADS=1 keeps both loops' numbers from turning into noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from edgetl.card import library_versions
from edgetl.models.factory import card_for, create_model
from edgetl.train.loop import StepSettings, train_one_epoch
from edgetl.train.optim import build_optimizer


def plain_loop(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], opt: torch.optim.Optimizer,
               criterion: nn.Module) -> None:
    model.train()
    for images, target in batches:
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(images), target)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="batches per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = ap.parse_args()

    torch.manual_seed(0)
    card = card_for(args.model, [f"c{i}" for i in range(args.classes)], img_size=args.img_size)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, 3, args.img_size, args.img_size, generator=g),
                torch.randint(0, args.classes, (args.batch,), generator=g)) for _ in range(args.steps)]
    criterion = nn.CrossEntropyLoss()
    models = {name: create_model(card) for name in ("edgetl", "plain")}
    opts = {name: build_optimizer(m, lr=1e-3, weight_decay=0.05) for name, m in models.items()}
    settings = StepSettings(torch.device("cpu"), clip_grad=None)
    images = args.batch * args.steps

    def run(name: str) -> float:
        start = time.perf_counter()
        if name == "edgetl":
            train_one_epoch(models[name], batches, criterion, opts[name], settings, epoch=0, first_step=0,
                            lr_for_step=lambda s: 1e-3, num_classes=args.classes)
        else:
            plain_loop(models[name], batches, opts[name], criterion)
        return images / (time.perf_counter() - start)

    run("edgetl"), run("plain")  # warm-up (allocator, oneDNN kernels)
    ips: dict[str, list[float]] = {"edgetl": [], "plain": []}
    for _ in range(args.rounds):
        for name in ("edgetl", "plain"):
            ips[name].append(run(name))
    med = {k: statistics.median(v) for k, v in ips.items()}
    result = {
        "benchmark": "train_throughput", "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                 "torch_threads": torch.get_num_threads()},
        "versions": library_versions(), "device": "cpu",
        "config": {"model": args.model, "img_size": args.img_size, "batch": args.batch, "steps": args.steps,
                   "rounds": args.rounds, "optimizer": "AdamW", "amp": None, "clip_grad": None},
        "images_per_s": {"edgetl": ips["edgetl"], "plain": ips["plain"]},
        "median_images_per_s": med, "ratio_edgetl_over_plain": med["edgetl"] / med["plain"], "goal": 0.95,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.model} {args.img_size}px batch {args.batch}: edgetl {med['edgetl']:.1f} img/s, "
          f"plain {med['plain']:.1f} img/s, ratio {result['ratio_edgetl_over_plain']:.3f} → {out}")


if __name__ == "__main__":
    main()
