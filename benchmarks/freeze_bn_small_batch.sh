#!/usr/bin/env bash
# Does full fine-tuning at a tiny batch (the EfficientNet-B6/B7 recipes train at 8 and 6 per GPU) need
# --freeze-bn? Lite0's ImageNet weights on the ants/bees photos, batch 6, 4 epochs, three seeds, BatchNorm
# statistics learned vs frozen. Writes benchmarks/results/freeze_bn_small_batch.json. About 15 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-../shared/data/hymenoptera}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for seed in 0 1 2; do
  for bn in no-freeze-bn freeze-bn; do
    .venv/bin/edgetl train --model tf_efficientnet_lite0 --weights efficientnet_lite0 --data "$data" \
      --batch-size 6 --epochs 4 --seed "$seed" "--$bn" --device cpu --quiet --out "$work/$bn-$seed"
  done
done
.venv/bin/python - "$work" <<'PY'
import csv, json, statistics, sys
from pathlib import Path

work, out = Path(sys.argv[1]), {"what": "tf_efficientnet_lite0 (ImageNet weights), ants/bees, full fine-tune, "
                                 "batch 6, 4 epochs, backbone lr x0.1", "runs": {}}
for bn in ("no-freeze-bn", "freeze-bn"):
    rows = [list(csv.DictReader(open(work / f"{bn}-{seed}" / "metrics.csv")))[-1] for seed in (0, 1, 2)]
    out["runs"][bn] = {"final_val_top1": [float(r["val_top1"]) for r in rows],
                       "final_val_loss": [float(r["val_loss"]) for r in rows]}
    out["runs"][bn]["mean_val_top1"] = round(statistics.mean(out["runs"][bn]["final_val_top1"]), 2)
Path("benchmarks/results/freeze_bn_small_batch.json").write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
PY
