"""`nnUNetv2_sam_benchmark`: train (or reuse), validate and evaluate the paper's methods and baselines on
one fold or a cross-validation, inline, as local processes or as SLURM jobs, and write Tables 1-3,
metrics.png and overlays.png (per fold) plus the pooled tables and paired statistics (OUT/crossval)."""

from __future__ import annotations

import argparse
import signal
import sys

PROG = "nnUNetv2_sam_benchmark"


class BenchmarkInterrupted(BaseException):
    """SIGTERM / SIGINT: a BaseException, so no per-run `except Exception` takes it for one failed run."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def _on_signal(signum, frame) -> None:
    """End every child process (nnU-Net's data-loader workers, local jobs), then unwind the benchmark."""
    from nnunet_sam_adapter.benchmark.executors import end_child_processes

    for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the cleanup short
        signal.signal(sig, signal.SIG_IGN)
    end_child_processes()
    raise BenchmarkInterrupted(signum)


def install_signal_handlers() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (an sbatch option without dashes), got {text!r}")
    return key.strip().lstrip("-").replace("-", "_"), value


def _folds(text: str):
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fold number or 'all', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from nnunet_sam_adapter.benchmark.executors import EXECUTORS
    from nnunet_sam_adapter.methods import method_names

    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="Needs the SAM plans (nnUNetv2_sam_plan_and_preprocess -d ID ...) and, for the stock baselines, "
               "nnUNetPlans (add --stock 2d [3d_fullres]). Runs trained with nnUNetv2_train are reused.")
    parser.add_argument("-d", required=True, help="dataset id or name")
    default, optional = method_names(default=True), method_names(default=False)
    parser.add_argument("--methods", nargs="+", default=list(default), metavar="METHOD",
                        help=f"default: {' '.join(default)}; also: {' '.join(optional)}; "
                             f"'all' = every method")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-f", type=int, default=None, help="one fold (default 0): its outputs go to -o itself")
    where.add_argument("--folds", nargs="+", type=_folds, default=None, metavar="F",
                       help="cross-validation: folds, or 'all' (every fold of splits_final.json); per-fold outputs "
                            "in OUT/fold_F, pooled ones in OUT/crossval")
    budget = parser.add_argument_group("budget")
    budget.add_argument("--epochs", type=int, default=None, help="training epochs (default: the trainer's, 1000)")
    iterations = budget.add_mutually_exclusive_group()
    iterations.add_argument("--iterations", type=int, default=None,
                            help="training iterations per epoch, the same for every method (default: 250)")
    iterations.add_argument("--images-per-method", type=int, default=None, metavar="N",
                            help="fair budget: every method sees N training images (iterations per epoch = "
                                 "N / (epochs x its batch size))")
    budget.add_argument("--save-every", type=int, default=None, metavar="E",
                        help="save nnU-Net's checkpoint_latest.pth every E epochs (default nnU-Net's 50): what a "
                             "requeued job resumes from")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="train every (method, fold) N times: seed 0 is the trainer itself (results in OUT), seed "
                             "K its <Trainer>_seedK variant (OUT/seed_K); OUT/learning_curves pools the seeds: "
                             "mean +- sd over seeds, paired statistics on each case's mean over seeds")
    parser.add_argument("--curve-images", type=int, nargs="+", default=(), metavar="N",
                        help="learning curve: keep a checkpoint after N training images inside each run (the end of "
                             "the first epoch reaching N), validate and score it like the final one -> "
                             "OUT/learning_curves/learning_curves.md/.csv/.png (the run's budget is the last point)")
    parser.add_argument("--only", nargs="+", default=(), metavar="RUN",
                        help="train (or reuse) only these of the command's runs, named as it prints them: "
                             "METHOD/fold_F, with /seed_K for seeds K >= 1; the tables still read every finished "
                             "run of the command (e.g. the runs another machine did not finish)")
    parser.add_argument("-o", default=None, help="output folder (default: $nnUNet_results/DATASET/sam_benchmark, "
                                                 "with -f: .../sam_benchmark/fold_F)")
    parser.add_argument("-device", default="cuda", choices=("cpu", "cuda"), help="default cuda (as nnUNetv2_train)")
    parser.add_argument("--retrain", action="store_true", help="retrain even where a finished run exists")
    parser.add_argument("--no-mirroring", action="store_true",
                        help="validation without test-time mirroring (4x faster in 2d, nnU-Net mirrors by default)")
    parser.add_argument("--no-postprocessing", action="store_true",
                        help="skip nnU-Net's postprocessing (by default every method also gets a row after "
                             "nnU-Net's determine_postprocessing on its validation predictions)")
    parser.add_argument("--overlay-cases", type=int, default=3, help="cases in overlays.png (default 3; 0: none)")
    parser.add_argument("-np", type=int, default=1, help="processes for the evaluation (default 1)")
    parser.add_argument("--missing-modalities", action="store_true",
                        help="also predict each method's validation cases on all 15 non-empty subsets of T1/T1ce/T2/"
                             "FLAIR (absent ones set as at inference) -> OUT/missing_modalities/missing_modalities."
                             "md/.csv/.png (methods trained with modality dropout: METHOD_missing, e.g. "
                             "ours_missing, ours_plus_missing, nnunet_2d_missing)")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--status", action="store_true", help="one line per (method, fold): pending / running / "
                                                              "finished / failed, log path, error; runs nothing")
    modes.add_argument("--aggregate-only", action="store_true",
                       help="build the tables from the finished runs only and list the missing ones")
    _executor_arguments(parser, EXECUTORS)
    return parser


def _executor_arguments(parser: argparse.ArgumentParser, executors) -> None:
    group = parser.add_argument_group("executors")
    group.add_argument("--executor", default="inline", choices=executors,
                       help="inline: this process (default); local: one process per (method, fold); slurm: one "
                            "SLURM job per (method, fold), as a job array")
    group.add_argument("--max-parallel", type=int, default=1, help="local: runs at the same time (default 1)")
    group.add_argument("--no-wait", action="store_true",
                       help="slurm: submit and return; watch with --status, then --aggregate-only")
    group.add_argument("--slurm-partition", default=None)
    group.add_argument("--slurm-account", default=None)
    group.add_argument("--slurm-gpus-per-job", type=int, default=1,
                       help="default 1; >1 trains with nnU-Net's -num_gpus (DDP); 0 for CPU partitions")
    group.add_argument("--slurm-cpus-per-job", type=int, default=None)
    group.add_argument("--slurm-mem", default=None, help="e.g. 64G")
    group.add_argument("--slurm-time", default="24:00:00", help="per job: minutes or [D-]HH:MM[:SS] (default 24 h); "
                                                                "a job hitting it is requeued and resumes")
    group.add_argument("--slurm-array-parallelism", type=int, default=None, help="jobs of the array running at once")
    group.add_argument("--slurm-extra", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. qos=high or constraint=a100 (repeatable)")


def main(argv: list[str] | None = None) -> None:
    from nnunet_sam_adapter.cli.errors import one_line_errors

    parser = build_parser()
    args = parser.parse_args(argv)
    from nnunet_sam_adapter.methods import METHODS

    methods = list(METHODS) if args.methods == ["all"] else args.methods
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)} or 'all'")
    if args.folds is not None and "all" in args.folds and len(args.folds) > 1:
        parser.error("--folds all cannot be combined with fold numbers")

    from nnunet_sam_adapter.benchmark.layout import BenchmarkError
    from nnunet_sam_adapter.evaluation.missing_modalities import MissingModalityError
    from nnunet_sam_adapter.paths import NnUNetPathError

    install_signal_handlers()
    try:
        with one_line_errors(PROG, extra=(BenchmarkError, MissingModalityError, NnUNetPathError)):
            sys.exit(_run(args, methods, parser))
    except BenchmarkInterrupted as interrupted:
        from nnunet_sam_adapter.benchmark.executors import end_child_processes

        end_child_processes()  # anything started while unwinding
        print(f"{PROG}: error: {interrupted}: child processes ended; finished runs' records are kept; "
              f"run the same command again to continue", file=sys.stderr)
        sys.exit(128 + interrupted.signum)


def _run(args, methods, parser) -> int:
    from nnunet_sam_adapter.training.budget import Budget
    from nnunet_sam_adapter.benchmark.executors import ExecutorOptions
    from nnunet_sam_adapter.benchmark.status import print_status

    try:
        budget = Budget(args.epochs, args.iterations, images_per_method=args.images_per_method)
        from nnunet_sam_adapter.benchmark.pipeline import check_repeats

        check_repeats(args.seeds, args.curve_images)
        options = ExecutorOptions(args.executor, args.max_parallel, not args.no_wait, args.slurm_partition,
                                  args.slurm_account, args.slurm_gpus_per_job, args.slurm_cpus_per_job, args.slurm_mem,
                                  args.slurm_time, args.slurm_array_parallelism, dict(args.slurm_extra))
    except ValueError as error:
        parser.error(str(error))
    fold = 0 if args.f is None else args.f
    if args.status:
        return print_status(args.d, methods, fold, args.folds, args.o, args.seeds)
    from nnunet_sam_adapter.benchmark.preflight import PreflightError

    try:
        return _benchmark(args, methods, fold, budget, options)
    except PreflightError as error:  # every problem on its own line, then nothing has run
        for problem in error.problems:
            print(f"{PROG}: error: preflight: {problem}", file=sys.stderr)
        print(f"{PROG}: error: preflight found {len(error.problems)} problem(s); nothing was trained", file=sys.stderr)
        return 1


def _benchmark(args, methods, fold: int, budget, options) -> int:
    from nnunet_sam_adapter.benchmark.pipeline import BenchmarkSettings, run_benchmark
    from nnunet_sam_adapter.evaluation.postprocessing import BENCHMARK_EVALUATION

    results = run_benchmark(BenchmarkSettings(
        args.d, tuple(methods), fold=fold, folds=args.folds, budget=budget, output_dir=args.o, device=args.device,
        retrain=args.retrain, mirroring=not args.no_mirroring, overlay_cases=args.overlay_cases,
        num_processes=args.np, executor=options, aggregate_only=args.aggregate_only, save_every=args.save_every,
        evaluations=() if args.no_postprocessing else (BENCHMARK_EVALUATION,), seeds=args.seeds,
        curve_images=tuple(args.curve_images), only=tuple(args.only)))
    if "submitted" in results:
        print(f"Submitted {len(results['submitted'])} run(s); watch them with --status, then --aggregate-only.")
        return 0
    tables = results.get("tables", {})
    if "tables.md" in tables:
        with open(tables["tables.md"]) as f:
            print(f.read())
    print("Written:", *tables.values(), *results.get("figures", {}).values(), sep="\n  ")
    for key, why in results.get("missing", {}).items():
        print(f"Missing: {key}: {why}")
    if results.get("learning_curves"):
        print("Learning curves / seeds:", *results["learning_curves"].values(), sep="\n  ")
    if args.missing_modalities:
        _missing_modalities(args, methods, fold, results)
    curve_error = (results.get("report_errors") or {}).get("learning_curves")
    if curve_error:
        print(f"{PROG}: error: learning curves not written ({curve_error}); the runs and tables are kept: run "
              f"again with --aggregate-only", file=sys.stderr)
    if results["failed"]:
        lines = "; ".join(f"{name}: {why}" for name, why in results["failed"].items())
        print(f"{PROG}: error: {len(results['failed'])} run(s) failed ({lines}); the tables hold the others",
              file=sys.stderr)
        return 1
    return 1 if curve_error else 0


def _missing_modalities(args, methods, fold: int, results: dict) -> None:
    """The 15-subset table (evaluation/missing_modalities.py) for the methods trained on every fold."""
    from nnunet_sam_adapter.benchmark.pipeline import output_layout
    from nnunet_sam_adapter.evaluation.missing_modalities import evaluate_missing_modalities
    from nnunet_sam_adapter.evaluation.postprocessing import postprocessing_choice
    from nnunet_sam_adapter.methods import METHODS
    from nnunet_sam_adapter.paths import load_json, nnunet_dirs

    folds = results.get("folds") or [fold]
    _, _, results_dir = nnunet_dirs(args.d)
    trained = [m for m in methods if all((results_dir / METHODS[m].folder_name / f"fold_{f}" / "checkpoint_final.pth")
                                         .is_file() for f in folds)]
    for method in sorted(set(methods) - set(trained)):
        print(f"Missing modalities: {method} skipped (not trained on fold(s) {', '.join(map(str, folds))})")
    if not trained:
        return
    layout = output_layout(results_dir, args.o, None if args.folds is None else folds, fold)
    # each run's postprocessing choice (the benchmark's, on its full-set validation), applied to every subset too
    choices = {m: {f: postprocessing_choice(load_json(layout.run_record(m, f))) for f in folds} for m in trained}
    table = evaluate_missing_modalities(args.d, trained, folds=folds, output_dir=layout.root / "missing_modalities",
                                        mirroring=not args.no_mirroring, device=args.device, num_processes=args.np,
                                        postprocessing={m: c for m, c in choices.items() if all(c.values())})
    with open(table["files"]["missing_modalities.md"]) as f:
        print(f.read())
    print("Written:", *table["files"].values(), sep="\n  ")


if __name__ == "__main__":
    main()
