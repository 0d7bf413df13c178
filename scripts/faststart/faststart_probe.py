"""Issue #22 measurement: seeded 200-image budget variants of SAMCrossModalTrainer that log, per training
iteration, the foreground probability, the loss terms and the gradient norm of each parameter group.

Put this folder in nnU-Net's `nnUNet_extTrainer` and train as usual, e.g.

    FASTSTART_SEED=0 nnUNet_extTrainer=$PWD/trainers:$PWD/scripts/faststart nnUNet_n_proc_DA=0 \
        nnUNetv2_train 501 2d 0 -tr SAMCrossModalTrainer_probe200 -p nnUNetSAMPlans -device cpu --disable_checkpointing

    SAMCrossModalTrainer_probe200        the paper's trainer as shipped (fast start on)
    SAMCrossModalTrainer_nofs_probe200   the same with the fast start off (the trainer before issue #22)
    SAMCrossModalTrainer_<candidate>_probe200   the candidates measured while choosing the fix (below)

5 epochs x 10 iterations x batch 4 = 200 training images, 3 validation batches per epoch (nnU-Net's pseudo
Dice, as the `_short` variant). The seed (env FASTSTART_SEED, default 0) seeds python, numpy and torch in
__init__; with nnUNet_n_proc_DA=0 the data loading and augmentation run in the training process, so one seed
gives one run. nnU-Net's final validation of the whole validation cases is skipped (not part of the measure).
Per-iteration records go to <fold folder>/faststart_probe.jsonl: iteration 0 is the network at init.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import torch

from nnunet_sam_adapter.trainers.sam_trainers_short import make_budget_variant  # noqa: F401 (import check)
from nnunet_sam_adapter.trainers.sam_trainers import SAMCrossModalTrainer


def _group(name: str) -> str:
    for prefix, group in (("stems.", "stems"), ("adapters.", "adapters"), ("sam.mask_decoder.", "mask_decoder")):
        if name.startswith(prefix):
            return group
    return "other"


class _Probe:
    """Mixin (before the trainer): seeding, the 200-image budget, per-iteration records."""

    budget = (5, 10, 3)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        seed = int(os.environ.get("FASTSTART_SEED", "0"))
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = self.budget
        self._probe_seed, self._probe_iteration = seed, 0

    def _probe_write(self, record: dict) -> None:
        with open(os.path.join(self.output_folder, "faststart_probe.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device)
        target = batch["target"].to(self.device)
        if hasattr(self, "warm_up_learning_rate"):  # absent before issue #22
            self.warm_up_learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        output = self.network(data)
        ce = self.loss.ce(output, target[:, 0].long())
        dc = self.loss.dc(output, target)
        loss = self.loss.weight_ce * ce + self.loss.weight_dice * dc
        loss.backward()
        norms: dict[str, float] = {}
        for name, p in self._bare_network().named_parameters():
            if p.grad is not None:
                norms[_group(name)] = norms.get(_group(name), 0.0) + float(p.grad.detach().pow(2).sum())
        total = torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
        with torch.no_grad():
            prob = torch.softmax(output.detach().float(), 1)[:, 1]
            fg = target[:, 0] > 0
            logit_gap = (output[:, 1] - output[:, 0]).detach()
            record = {
                "seed": self._probe_seed, "epoch": self.current_epoch, "iteration": self._probe_iteration,
                "lr": [g["lr"] for g in self.optimizer.param_groups],
                "loss": float(loss), "ce": float(ce), "dice_term": float(dc),
                "fg_fraction": float(fg.float().mean()),
                "p_fg_at_fg": float(prob[fg].mean()) if fg.any() else None,
                "p_fg_at_bg": float(prob[~fg].mean()),
                "p_fg_mean": float(prob.mean()),
                "pred_fg_fraction": float((logit_gap > 0).float().mean()),
                "logit_gap_mean": float(logit_gap.mean()), "logit_gap_std": float(logit_gap.std()),
                "grad_norm": {k: v ** 0.5 for k, v in norms.items()}, "grad_norm_total": float(total),
            }
        self.optimizer.step()
        self._probe_write(record)
        self._probe_iteration += 1
        return {"loss": loss.detach().cpu().numpy()}

    def perform_actual_validation(self, *args, **kwargs):
        self.print_to_log_file("faststart probe: final validation skipped")


def _variant(base: type, name: str, **attributes) -> type:
    return type(name, (_Probe, base), {"__module__": __name__, **attributes})


SAMCrossModalTrainer_probe200 = _variant(SAMCrossModalTrainer, "SAMCrossModalTrainer_probe200")
SAMCrossModalTrainer_nofs_probe200 = _variant(SAMCrossModalTrainer, "SAMCrossModalTrainer_nofs_probe200",
                                              fast_start=False, warmup_iterations=0, lr_scales={})
# candidates measured while choosing the fix
SAMCrossModalTrainer_prior_probe200 = _variant(SAMCrossModalTrainer, "SAMCrossModalTrainer_prior_probe200",
                                               fast_start=True, warmup_iterations=0, lr_scales={})
SAMCrossModalTrainer_priorwarmup_probe200 = _variant(
    SAMCrossModalTrainer, "SAMCrossModalTrainer_priorwarmup_probe200", fast_start=True, warmup_iterations=10,
    lr_scales={})
SAMCrossModalTrainer_priordeclr_probe200 = _variant(
    SAMCrossModalTrainer, "SAMCrossModalTrainer_priordeclr_probe200", fast_start=True, warmup_iterations=0,
    lr_scales={"sam.mask_decoder.": 0.1})
SAMCrossModalTrainer_declr_probe200 = _variant(
    SAMCrossModalTrainer, "SAMCrossModalTrainer_declr_probe200", fast_start=False, warmup_iterations=0,
    lr_scales={"sam.mask_decoder.": 0.1})
