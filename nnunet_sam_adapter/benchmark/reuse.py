"""The reuse rules of one (method, fold) run, as a pure function of what is on disk.

A run folder (nnU-Net's `Trainer__Plans__configuration/fold_F`) with `checkpoint_final.pth` is
finished. Its budget comes from our run record (`sam_benchmark_run.json`, written last) or, for runs
trained with `nnUNetv2_train`, from nnU-Net's `debug.json`. A finished run is reused when no budget is
requested or the budgets agree, and it was trained with the current plans (nnU-Net's copy next to the
fold folders). An unfinished run the benchmark started (`sam_benchmark_training.json`, written before
training) with the same budget and plans resumes from nnU-Net's `checkpoint_latest.pth` (nnUNetv2_train
--c): that is how a requeued or preempted job continues. Otherwise a run made by the benchmark is
retrained, and a run trained outside the benchmark is never overwritten without `retrain`.
"""

from __future__ import annotations

from dataclasses import dataclass

from nnunet_sam_adapter.training.budget import Budget, describe_budget

RUN_RECORD = "sam_benchmark_run.json"
TRAINING_MARKER = "sam_benchmark_training.json"


@dataclass(frozen=True)
class RunOnDisk:
    """What an nnU-Net run folder holds, as far as reuse is concerned."""

    finished: bool                # checkpoint_final.pth
    record: dict | None           # our run record (None: not made by the benchmark, or unfinished)
    found_budget: dict | None     # budget of the finished run (record or debug.json)
    same_plans: bool              # nnU-Net's plans.json of the run folder = the current plans (its configuration)
    started: dict | None = None   # our training marker: {"budget": {...}} of a training in progress
    has_latest: bool = False      # checkpoint_latest.pth
    latest_complete: bool = True  # it is a whole torch.save file (a job killed while nnU-Net wrote it leaves a stub)


@dataclass(frozen=True)
class Decision:
    action: str                   # 'reuse', 'resume', 'train' or 'refuse'
    reason: str = ""


def decide(run: RunOnDisk, budget: Budget, retrain: bool = False) -> Decision:
    """What to do with a run folder for `budget` (already resolved for the method's batch size)."""
    if retrain:
        return Decision("train", "--retrain")
    budget_ok = budget.matches(run.found_budget)
    if run.finished:
        if run.same_plans and budget_ok:
            return Decision("reuse", f"finished with {describe_budget(run.found_budget)}")
        if run.record is None:
            why = ("was trained with other plans than the current ones (re-plan with the same settings to reuse it)"
                   if not run.same_plans else
                   f"has another budget ({describe_budget(run.found_budget)}) than requested "
                   f"({describe_budget(budget.to_dict())}): run without --epochs/--iterations to reuse it")
            return Decision("refuse", f"holds a finished run trained outside the benchmark that {why}, "
                                      f"or pass --retrain to overwrite it")
        return Decision("train", "finished with other plans or another budget")
    if run.started is not None:
        same_budget = budget.matches(run.started.get("budget"))
        if run.has_latest and not run.latest_complete:
            return Decision("train", "unfinished benchmark run whose checkpoint_latest.pth is truncated "
                                     "(the job stopped while it was written): starts again")
        if run.has_latest and same_budget and run.same_plans:
            return Decision("resume", "unfinished benchmark run: continues from checkpoint_latest.pth")
        return Decision("train", "unfinished benchmark run with another budget or plans, or no checkpoint yet")
    if run.has_latest:
        return Decision("refuse", "holds an unfinished run not started by the benchmark: finish it with "
                                  "nnUNetv2_train ... --c, or pass --retrain to overwrite it")
    return Decision("train", "no run yet")


def checkpoint_is_complete(path) -> bool:
    """Whether `path` is a whole torch.save file: torch's zip format ends with the zip's central directory,
    which a write cut short lacks (cheap: the tensors are not read)."""
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False
