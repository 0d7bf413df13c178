"""Training budgets: what each (method, fold) run trains for, and the rule that makes budgets fair.

nnU-Net's trainer budget is epochs x iterations per epoch, each iteration one batch; images seen in
training = epochs x iterations x batch size. With a plain `--epochs/--iterations` budget every method
gets the same number of iterations, so nnU-Net 2d (batch 24 on BraTS) sees 6x the images of a SAM
method planned at batch 4. `images_per_method` equalises images seen instead: iterations per epoch =
round(images / (epochs x batch)) for each method's own batch size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

NNUNET_DEFAULT_EPOCHS = 1000  # nnUNetTrainer.num_epochs


@dataclass(frozen=True)
class Budget:
    """Training budget set on the trainer instance; None keeps the trainer's own value (nnU-Net: 1000 x 250).

    Validation iterations per epoch (nnU-Net's online pseudo-Dice, not the final validation) default
    to a fifth of the training iterations, nnU-Net's own 250:50 ratio.
    """

    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None
    images_per_method: int | None = None  # the fair rule; resolved per method by `for_batch_size`

    def __post_init__(self):
        for name in ("epochs", "iterations", "val_iterations", "images_per_method"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"budget {name} must be >= 1, got {value}")
        if self.images_per_method is not None and self.iterations is not None:
            raise ValueError("give either iterations or images_per_method, not both")
        if self.val_iterations is None and self.iterations is not None:
            object.__setattr__(self, "val_iterations", max(1, round(self.iterations / 5)))

    @property
    def requested(self) -> bool:
        return self.epochs is not None or self.iterations is not None or self.images_per_method is not None

    def for_batch_size(self, batch_size: int) -> "Budget":
        """The epochs x iterations budget of a method with this batch size (identity without the fair rule)."""
        if self.images_per_method is None:
            return self
        epochs = self.epochs or NNUNET_DEFAULT_EPOCHS
        iterations = max(1, round(self.images_per_method / (epochs * batch_size)))
        return Budget(epochs, iterations)

    def apply(self, trainer) -> None:
        if self.epochs is not None:
            trainer.num_epochs = int(self.epochs)
        if self.iterations is not None:
            trainer.num_iterations_per_epoch = int(self.iterations)
        if self.val_iterations is not None:
            trainer.num_val_iterations_per_epoch = int(self.val_iterations)

    def matches(self, found: dict | None) -> bool:
        """True when every requested field equals the budget a run was trained with."""
        if not self.requested:
            return True
        if not found:
            return False
        return all(getattr(self, k) is None or found.get(k) == getattr(self, k) for k in ("epochs", "iterations"))

    def rule(self) -> str:
        """One sentence for tables.md: which budget rule the runs were asked to follow."""
        if self.images_per_method is not None:
            return (f"equal images seen: {self.images_per_method} training images per method "
                    f"({self.epochs or NNUNET_DEFAULT_EPOCHS} epochs; iterations per epoch = images / "
                    f"(epochs x the method's batch size), rounded)")
        if self.requested:
            return (f"equal iterations: {self.epochs or 'default'} epochs x {self.iterations or 'default'} "
                    f"iterations for every method (methods with larger batches see more images)")
        return "each trainer's own (nnU-Net's default: 1000 epochs x 250 iterations)"

    def to_dict(self) -> dict:
        return asdict(self)


def trainer_budget(trainer) -> dict:
    """The budget a trainer instance will train with, with its batch size and the images it will see."""
    batch = int(trainer.configuration_manager.batch_size)
    epochs, iterations = int(trainer.num_epochs), int(trainer.num_iterations_per_epoch)
    return {"epochs": epochs, "iterations": iterations, "val_iterations": int(trainer.num_val_iterations_per_epoch),
            "batch_size": batch, "images_seen": epochs * iterations * batch,
            "patch_size": [int(p) for p in trainer.configuration_manager.patch_size]}


def patches_3d(budget: dict | None) -> str:
    """'' for a 2d budget; for a 3d one (its patch size known) ' patches of [D, H, W] (N slices)': one
    'image' of a 3d configuration is a patch of D slices, so images seen alone hides a 3d budget's size."""
    patch = (budget or {}).get("patch_size")
    if not patch or len(patch) != 3 or images_seen(budget) is None:
        return ""
    return f" 3d patches of {list(patch)} ({images_seen(budget) * int(patch[0])} slices)"


def describe_budget(budget: dict | None) -> str:
    if not budget:
        return "unknown"
    text = f"{budget['epochs']} epochs x {budget['iterations']} iterations"
    if budget.get("batch_size"):
        text += f" x batch {budget['batch_size']} = {images_seen(budget)}" + (patches_3d(budget) or " images")
    return text


def images_seen(budget: dict | None) -> int | None:
    """epochs x iterations x batch size, None when the batch size is unknown."""
    if not budget or not budget.get("batch_size"):
        return None
    return int(budget["epochs"]) * int(budget["iterations"]) * int(budget["batch_size"])


def logged_epoch_seconds(run_dir) -> float | None:
    """nnU-Net's 'Epoch time: X s' lines of the training logs in a run folder, summed (None: none found): the
    training seconds of a run on nnU-Net's own clock (training + its online pseudo-Dice batches per epoch)."""
    import re
    from pathlib import Path

    times = [float(t) for log in sorted(Path(run_dir).glob("training_log_*.txt"))
             for t in re.findall(r"Epoch time: ([\d.]+) s", log.read_text(errors="replace"))]
    return sum(times) if times else None
