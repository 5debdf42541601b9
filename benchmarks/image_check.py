"""How long the up-front image check takes: the old serial full decode, edgetl's check cold, and a rerun.

Every `edgetl train`, `eval` and `parity` checks that each image decodes before it starts. Measured side by
side in one process, on two sets made from the real ants/bees photos: the photos as they are (about
0.4 MP each) and the same photos scaled to 12 MP phone size (JPEG, quality 90). Per set and round:
- ``serial_full``: one thread decoding every file in full (edgetl before the check was threaded and cached);
- ``cold``: edgetl's check with an empty cache (threads, large JPEGs at reduced scale);
- ``warm``: the same check again (only a ``stat`` per file).
Medians over rounds, and the speed-ups of ``cold`` and ``warm`` over ``serial_full``. Writes
benchmarks/results/image_check.json.

  python benchmarks/image_check.py [--phone 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from edgetl.card import library_versions
from edgetl.data.checked import CACHE_ENV
from edgetl.data.folder import check_images, check_workers, list_image_files
from edgetl.data.images import BadImage, is_grey_graphic, load_rgb

ROOT = Path(__file__).resolve().parent
PHOTOS = ROOT.parent.parent / "shared" / "data" / "hymenoptera"


def serial_full(paths: list[Path]) -> None:
    """The check as it was: each file decoded in full, one after another."""
    for p in paths:
        with contextlib.suppress(BadImage):
            is_grey_graphic(load_rgb(p))


def phone_set(photos: list[Path], n: int, out: Path) -> list[Path]:
    """``n`` of the photos scaled to 4000x3000 (12 MP), as a phone saves them."""
    paths = []
    for i, src in enumerate(photos[:n]):
        dst = out / f"phone{i:03d}.jpg"
        with Image.open(src) as img:
            img.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(dst, quality=90)
        paths.append(dst)
    return paths


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(paths: list[Path], rounds: int, work: Path) -> dict[str, object]:
    """Seconds per variant and round, interleaved so that machine drift favours none."""
    secs: dict[str, list[float]] = {"serial_full": [], "cold": [], "warm": []}
    for r in range(rounds):
        os.environ[CACHE_ENV] = str(work / f"checks-{len(paths)}-{r}.db")  # empty: a cold check
        secs["serial_full"].append(timed(lambda: serial_full(paths)))
        secs["cold"].append(timed(lambda: check_images(paths)))
        secs["warm"].append(timed(lambda: check_images(paths)))
    med = {k: statistics.median(v) for k, v in secs.items()}
    return {"files": len(paths), "seconds": secs, "median_s": med,
            "ms_per_file": {k: 1000 * v / len(paths) for k, v in med.items()},
            "speedup_over_serial_full": {k: med["serial_full"] / med[k] for k in ("cold", "warm")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=PHOTOS)
    ap.add_argument("--phone", type=int, default=60, help="12 MP copies to make")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "image_check.json")
    args = ap.parse_args()

    photos = list_image_files(args.photos)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = {"ants_bees": photos, "phone_12mp": phone_set([p for p in photos if p.suffix == ".jpg"],
                                                              args.phone, work)}
        results = {name: measure(paths, args.rounds, work) for name, paths in sets.items()}
    doc = {
        "benchmark": "image_check", "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                 "check_threads": check_workers()},
        "versions": library_versions(), "rounds": args.rounds, "sets": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for name, r in results.items():
        ms, up = r["ms_per_file"], r["speedup_over_serial_full"]
        assert isinstance(ms, dict) and isinstance(up, dict)
        print(f"{name}: {r['files']} files; ms/file serial full {ms['serial_full']:.2f}, cold {ms['cold']:.2f} "
              f"({up['cold']:.1f}x), warm {ms['warm']:.3f} ({up['warm']:.0f}x)")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
