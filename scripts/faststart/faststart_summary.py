"""Issue #22 table: `python faststart_summary.py RESULTS_ROOT...` -> one markdown row per fold folder found.

Reads nnU-Net's training_log_*.txt (pseudo Dice per epoch, epoch times) and faststart_probe.jsonl (written
by faststart_probe.py) under each root; prints the epoch of the first pseudo Dice > 0.1 (0-based), the
training images seen by then (epochs x 10 iterations x batch 4), and the probe's numbers at init.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

THRESHOLD = 0.1
IMAGES_PER_EPOCH = 10 * 4


def summarize(fold_dir: str) -> dict:
    log = sorted(glob.glob(os.path.join(fold_dir, "training_log_*.txt")))[-1]
    text = open(log).read()
    dice = [float(v) for v in re.findall(r"Pseudo dice \[(?:np\.float32\()?([-0-9.e]+)", text)]
    times = [float(v) for v in re.findall(r"Epoch time: ([0-9.]+) s", text)]
    first = next((i for i, d in enumerate(dice) if d > THRESHOLD), None)
    probe = [json.loads(line) for line in open(os.path.join(fold_dir, "faststart_probe.jsonl"))]
    init = probe[0]
    plateau = [r for r in probe if r["pred_fg_fraction"] == 0.0]
    return {"fold": int(fold_dir.rstrip("/").split("_")[-1]), "seed": init["seed"], "dice": dice,
            "first": first, "images": None if first is None else (first + 1) * IMAGES_PER_EPOCH,
            "seconds": sum(times), "init": init, "all_bg_iterations": len(plateau), "iterations": len(probe)}


def main(roots: list[str]) -> None:
    print("| run | fold | seed | pseudo Dice per epoch | first epoch > 0.1 (images) | p_fg at init (fg / bg pixels) "
          "| CE at init | grad norm at init (decoder / adapters / stems) | iterations with no fg pixel predicted "
          "| training s |")
    print("|---|---:|---:|---|---|---|---:|---|---:|---:|")
    for root in roots:
        for fold_dir in sorted(glob.glob(os.path.join(root, "Dataset*", "*", "fold_*"))):
            r = summarize(fold_dir)
            i, g = r["init"], r["init"]["grad_norm"]
            first = "none in 5" if r["first"] is None else f"{r['first']} ({r['images']})"
            print(f"| {os.path.basename(root.rstrip('/'))} | {r['fold']} | {r['seed']} | "
                  f"{' '.join(f'{d:.2f}' for d in r['dice'])} | {first} | "
                  f"{i['p_fg_at_fg']:.3f} / {i['p_fg_at_bg']:.3f} | {i['ce']:.2f} | "
                  f"{g['mask_decoder']:.1f} / {g.get('adapters', 0):.1f} / {g.get('stems', 0):.1f} | "
                  f"{r['all_bg_iterations']} of {r['iterations']} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
