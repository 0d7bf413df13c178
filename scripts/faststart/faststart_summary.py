"""Issue #22 table: `python faststart_summary.py RESULTS_ROOT...` -> one markdown row per fold folder found.

Reads nnU-Net's training_log_*.txt (pseudo Dice per epoch, epoch times) and faststart_probe.jsonl (written
by faststart_probe.py) under each root; prints the epoch of the first pseudo Dice > 0.1 (0-based), the
training images seen by then (epochs x 10 iterations x batch 4), and the probe's numbers at init.
"""

from __future__ import annotations

import glob
import json
import statistics
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
    swings = [abs(b["logit_gap_mean"] - a["logit_gap_mean"]) for a, b in zip(probe, probe[1:])][1:]
    ratio = [r["p_fg_at_fg"] / r["p_fg_at_bg"] for r in probe if r["p_fg_at_fg"] is not None]
    median = statistics.median
    plateau_stats = {"swing": median(swings[:20]), "ratio_first20": median(ratio[1:21]),
                     "std_first20": median(r["logit_gap_std"] for r in probe[1:21]),
                     "ce": median(r["ce"] for r in plateau) if plateau else None,
                     "dice_term": median(r["dice_term"] for r in plateau) if plateau else None,
                     "grad": {k: median(r["grad_norm"].get(k, 0) for r in plateau) for k in
                              ("mask_decoder", "adapters", "stems")} if plateau else None}
    return {"fold": int(fold_dir.rstrip("/").split("_")[-1]), "seed": init["seed"], "dice": dice,
            "plateau_stats": plateau_stats,
            "first": first, "images": None if first is None else (first + 1) * IMAGES_PER_EPOCH,
            "seconds": sum(times), "init": init, "all_bg_iterations": len(plateau), "iterations": len(probe)}


def _finished(root: str) -> list[str]:
    """Fold folders of runs that trained their whole budget (nnU-Net logged "Training done.")."""
    return [d for d in sorted(glob.glob(os.path.join(root, "Dataset*", "*", "fold_*")))
            if any("Training done." in open(f).read() for f in glob.glob(os.path.join(d, "training_log_*.txt")))]


def main(roots: list[str]) -> None:
    print("| run | fold | seed | pseudo Dice per epoch | first epoch > 0.1 (images) | p_fg at init (fg / bg pixels) "
          "| CE at init | grad norm at init (decoder / adapters / stems) | iterations with no fg pixel predicted "
          "| training s |")
    print("|---|---:|---:|---|---|---|---:|---|---:|---:|")
    for root in roots:
        for fold_dir in _finished(root):
            r = summarize(fold_dir)
            i, g = r["init"], r["init"]["grad_norm"]
            first = "none in 5" if r["first"] is None else f"{r['first']} ({r['images']})"
            print(f"| {os.path.basename(root.rstrip('/'))} | {r['fold']} | {r['seed']} | "
                  f"{' '.join(f'{d:.2f}' for d in r['dice'])} | {first} | "
                  f"{i['p_fg_at_fg']:.3f} / {i['p_fg_at_bg']:.3f} | {i['ce']:.2f} | "
                  f"{g['mask_decoder']:.1f} / {g.get('adapters', 0):.1f} / {g.get('stems', 0):.1f} | "
                  f"{r['all_bg_iterations']} of {r['iterations']} | {r['seconds']:.0f} |")


def plateau_table(roots: list[str]) -> None:
    """Medians: |change of the batch-mean fg-bg logit gap| per step (iterations 2-21), spatial std of the gap and
    p_fg at tumour / at background pixels (iterations 1-20), and over the iterations that predict no foreground
    pixel: CE, Dice term, gradient norms."""
    print("| run | fold | seed | median swing of the mean logit gap per step (it. 2-21) | median std of the gap "
          "over pixels (it. 1-20) | median p_fg tumour / background (it. 1-20) | on the plateau: median CE / "
          "Dice term | median grad norm decoder / adapters / stems |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for root in roots:
        for fold_dir in _finished(root):
            r = summarize(fold_dir)
            q = r["plateau_stats"]
            loss = "-" if q["ce"] is None else f"{q['ce']:.3f} / {q['dice_term']:.3f}"
            grad = "-" if q["grad"] is None else " / ".join(f"{v:.2f}" for v in q["grad"].values())
            print(f"| {os.path.basename(root.rstrip('/'))} | {r['fold']} | {r['seed']} | {q['swing']:.2f} | "
                  f"{q['std_first20']:.2f} | {q['ratio_first20']:.2f} | {loss} | {grad} |")


if __name__ == "__main__":
    main(sys.argv[1:])
    print()
    plateau_table(sys.argv[1:])
