"""The benchmark's preflight: everything each requested (method, fold) run will read is checked before
any run is dispatched (inline, local or SLURM), so a typo in splits_final.json or a configuration that
was never preprocessed stops the benchmark in seconds, not after the other methods have trained.

For every requested method and fold:
  - its plans file exists, is JSON and holds the method's configuration (`layout.load_plans`);
  - every case of the fold's train and val lists in splits_final.json (written by `layout.ensure_splits`,
    nnU-Net's default 5-fold split, when there is none yet) is a case of the dataset
    (gt_segmentations) and is preprocessed in the configuration's data folder (its data_identifier:
    `<case>.pkl` plus nnU-Net's `<case>.b2nd` or `<case>.npz`);
  - for a SAM method, the SAM checkpoint the plans name loads and holds the plans' backbone
    (`model.checkpoints.check_checkpoint`, the check made at planning).

A configuration whose plans exist but whose data folder does not (nnU-Net's planner writes 3d_fullres
into nnUNetPlans even when only `--stock 2d` was preprocessed) is NOT preprocessed here: the problem line
gives nnU-Net's command that does it (`nnUNetv2_preprocess -d ID -c CONFIG -plans_name PLANS`).

Every problem is one line naming the method(s), configuration, fold(s) and the case or file; all of them
are collected and raised together as one `PreflightError` before anything trains.
`--aggregate-only` trains nothing and runs no preflight: it reads finished results, each file checked as it
is read (benchmark/collect.py).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from nnunet_sam_adapter.benchmark.layout import BenchmarkError, load_plans
from nnunet_sam_adapter.methods import METHODS
from nnunet_sam_adapter.paths import SPLITS_FILE, load_splits

DATA_ENDINGS = (".b2nd", ".npz")  # nnU-Net's preprocessed case formats (nnUNetDatasetBlosc2 / Numpy), + .pkl


class PreflightError(BenchmarkError):
    """What the preflight found; `problems` holds one line each (str() joins them for one-line callers)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def preprocessed_cases(folder: Path) -> set[str]:
    """Case identifiers nnU-Net can load from a preprocessed data folder (properties .pkl + data file)."""
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return {name[:-4] for name in names if name.endswith(".pkl")
            and any(name[:-4] + ending in names for ending in DATA_ENDINGS)}


def dataset_cases(preprocessed: Path, dataset_json: dict) -> set[str]:
    ending = dataset_json["file_ending"]
    return {p.name[: -len(ending)] for p in (preprocessed / "gt_segmentations").glob(f"*{ending}")}


def _join(items) -> str:
    return ", ".join(str(i) for i in items)


def _split_problems(preprocessed: Path, dataset_json: dict, folds: list[int], methods: list[str]) -> list[str]:
    """Cases named by the requested folds of splits_final.json that are not cases of the dataset."""
    splits = load_splits(preprocessed) or []
    known = dataset_cases(preprocessed, dataset_json)
    where = defaultdict(list)  # case -> ["fold 0 train", ...]
    for fold in folds:
        for part in ("train", "val"):
            for case in splits[fold].get(part, []) if fold < len(splits) else []:
                if case not in known:
                    where[case].append(f"fold {fold} {part}")
    return [f"case {case} named by {preprocessed / SPLITS_FILE} ({_join(parts)}; methods {_join(methods)}) does not "
            f"exist: not in {preprocessed / 'gt_segmentations'} ({len(known)} cases): expected only cases of the "
            f"dataset in the split; fix the name or delete {SPLITS_FILE} to get nnU-Net's default split"
            for case, parts in sorted(where.items())]


def _preprocess_command(dataset: str, method) -> str:
    """nnU-Net's own command that preprocesses one configuration of existing plans (`dataset`: the ID)."""
    return f"nnUNetv2_preprocess -d {dataset} -c {method.configuration} -plans_name {method.plans}"


def _data_problems(dataset: str, preprocessed: Path, dataset_json: dict, folds: list[int], methods: list[str],
                   plans_of: dict) -> list[str]:
    """Per plans/configuration data folder: it exists and holds every case of the requested folds (a case
    that is not a case of the dataset at all has its own line, `_split_problems`)."""
    splits, known = load_splits(preprocessed) or [], dataset_cases(preprocessed, dataset_json)
    by_folder = defaultdict(list)  # (plans, configuration, data folder) -> methods
    for name in methods:
        method = METHODS[name]
        configuration = plans_of[name]["configurations"][method.configuration]
        identifier = configuration.get("data_identifier") or f"{method.plans}_{method.configuration}"
        by_folder[(method.plans, method.configuration, preprocessed / identifier)].append(name)
    problems = []
    for (plans, configuration, folder), names in by_folder.items():
        who = f"method(s) {_join(names)} ({plans} {configuration})"
        if not folder.is_dir():
            problems.append(f"{who}: {folder} does not exist: configuration {configuration} is planned but not "
                            f"preprocessed: run {_preprocess_command(dataset, METHODS[names[0]])}")
            continue
        present = preprocessed_cases(folder)
        missing = defaultdict(list)
        for fold in folds:
            for part in ("train", "val"):
                for case in splits[fold].get(part, []) if fold < len(splits) else []:
                    if case not in present and case in known:
                        missing[case].append(f"fold {fold} {part}")
        for case, parts in sorted(missing.items()):
            problems.append(f"{who}, {_join(parts)}: case {case} is not preprocessed in {folder} "
                            f"({len(present)} cases there): expected every case of {SPLITS_FILE}; run "
                            f"{_preprocess_command(dataset, METHODS[names[0]])}")
    return problems


def _checkpoint_problems(methods: list[str], plans_of: dict) -> list[str]:
    """The SAM checkpoint each SAM configuration names loads and holds its backbone (checked once per file)."""
    from nnunet_sam_adapter.model.checkpoints import SAMCheckpointError, check_checkpoint, default_checkpoint

    checked, problems = {}, []
    for name in methods:
        method = METHODS[name]
        if not method.is_sam:
            continue
        settings = plans_of[name]["configurations"][method.configuration].get("sam") or {}
        backbone = settings.get("backbone", "vit_b")
        checkpoint = settings.get("checkpoint") or default_checkpoint(backbone)
        if not checkpoint:
            if not settings.get("allow_random_encoder"):
                problems.append(f"method {name} ({method.plans} {method.configuration}): the plans name no SAM "
                                f"checkpoint for backbone {backbone}: expected --checkpoint at planning or "
                                f"$nnUNet_sam_checkpoint")
            continue
        key = (str(checkpoint), backbone)
        if key not in checked:
            try:
                check_checkpoint(checkpoint, backbone)
                checked[key] = None
            except SAMCheckpointError as error:
                checked[key] = str(error)
        if checked[key]:
            problems.append(f"method {name} ({method.plans} {method.configuration}): {checked[key]}")
    return problems


def preflight(dataset: str, preprocessed: Path, dataset_json: dict, methods: list[str], folds: list[int]) -> None:
    """Raise PreflightError with every problem found (see module docstring)."""
    problems = _split_problems(preprocessed, dataset_json, folds, methods)
    plans_of = {}
    for name in methods:
        try:
            plans_of[name] = load_plans(preprocessed, METHODS[name])
        except BenchmarkError as error:
            problems.append(str(error))
    good = [m for m in methods if m in plans_of]
    problems += _data_problems(str(dataset), preprocessed, dataset_json, folds, good, plans_of)
    problems += _checkpoint_problems(good, plans_of)
    if problems:
        raise PreflightError(problems)

