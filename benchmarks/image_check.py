"""How long the up-front image check takes (serial full decode, edgetl's check cold and rerun), and
how much decoding in threads saves `eval`, `parity` and calibration.

Every `edgetl train`, `eval` and `parity` checks that each image decodes before it starts. Measured side by
side in one process, on two sets made from the real ants/bees photos: the photos as they are (about
0.4 MP each) and the same photos scaled to 12 MP phone size (JPEG, quality 90). Per set and round:
- ``serial_full``: one thread decoding every file in full (edgetl before the check was threaded and cached);
- ``cold``: edgetl's check with an empty cache (threads, large JPEGs at reduced scale);
- ``warm``: the same check again (only a ``stat`` per file);
- ``preprocess_serial`` / ``preprocess_threads``: decode + Lite0's eval preprocessing (224 px, bicubic), one
  file after another as before, and through ``map_images`` as `eval`, `parity` and calibration do now.
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
from edgetl.data.folder import check_images, list_image_files
from edgetl.data.images import BadImage, decode_rgb, decode_threads, is_grey_graphic, load_rgb, map_images
from edgetl.data.transforms import eval_array
from edgetl.models.factory import default_preprocess

ROOT = Path(__file__).resolve().parent
PHOTOS = ROOT.parent.parent / "shared" / "data" / "hymenoptera"
LITE0 = default_preprocess("tf_efficientnet_lite0")  # 224 px, bicubic: what eval and parity resize to


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


def preprocess_serial(paths: list[Path]) -> None:
    """What `eval`, `parity` and calibration did per image before: decode, then resize and normalise, in turn."""
    for p in paths:
        with contextlib.suppress(BadImage):
            eval_array(load_rgb(p), LITE0)


def preprocess_threads(paths: list[Path]) -> None:
    """The same work through :func:`map_images`, as they do it now."""
    def one(p: Path) -> None:
        with contextlib.suppress(BadImage):
            eval_array(decode_rgb(p), LITE0)

    for _ in map_images(one, paths):
        pass


def measure(paths: list[Path], rounds: int, work: Path) -> dict[str, object]:
    """Seconds per variant and round, interleaved so that machine drift favours none."""
    names = ("serial_full", "cold", "warm", "preprocess_serial", "preprocess_threads")
    secs: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        os.environ[CACHE_ENV] = str(work / f"checks-{len(paths)}-{r}.db")  # empty: a cold check
        secs["serial_full"].append(timed(lambda: serial_full(paths)))
        secs["cold"].append(timed(lambda: check_images(paths)))
        secs["warm"].append(timed(lambda: check_images(paths)))
        secs["preprocess_serial"].append(timed(lambda: preprocess_serial(paths)))
        secs["preprocess_threads"].append(timed(lambda: preprocess_threads(paths)))
    med = {k: statistics.median(v) for k, v in secs.items()}
    return {"files": len(paths), "seconds": secs, "median_s": med,
            "ms_per_file": {k: 1000 * v / len(paths) for k, v in med.items()},
            "speedup_over_serial_full": {k: med["serial_full"] / med[k] for k in ("cold", "warm")},
            "preprocess_speedup": med["preprocess_serial"] / med["preprocess_threads"]}


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
                 "check_threads": decode_threads()},
        "versions": library_versions(), "rounds": args.rounds, "sets": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for name, r in results.items():
        ms, up = r["ms_per_file"], r["speedup_over_serial_full"]
        assert isinstance(ms, dict) and isinstance(up, dict)
        print(f"{name}: {r['files']} files; check ms/file serial full {ms['serial_full']:.2f}, cold "
              f"{ms['cold']:.2f} ({up['cold']:.1f}x), warm {ms['warm']:.3f} ({up['warm']:.0f}x); preprocessing "
              f"{ms['preprocess_serial']:.2f} → {ms['preprocess_threads']:.2f} ({r['preprocess_speedup']:.2f}x)")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
