"""`nnUNetv2_sam_convert_brats`: BraTS case folders -> nnU-Net v2 raw dataset, T1/T1ce/FLAIR registered to T2."""
import argparse
import os
import sys


def _default_processes() -> int:
    from nnunetv2.configuration import default_num_processes

    return max(1, min(default_num_processes, os.cpu_count() or 1))


def print_summary(summary, verb: str) -> None:
    print(f"{summary.output_dir}: {len(summary.converted)} {verb}, {len(summary.up_to_date)} already up to date, "
          f"{len(summary.skipped)} skipped")
    for error in summary.skipped:
        print(f"  skipped {error}")
    if summary.skipped_file:
        print(f"skipped cases listed in {summary.skipped_file}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_sam_convert_brats",
        description="Convert BraTS case folders (2018-2021 <case>_{t1,t1ce,t2,flair,seg}.nii.gz or 2023+ "
                    "<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz) into $nnUNet_raw/DatasetXXX_NAME, with T1, T1ce and "
                    "FLAIR rigidly registered to T2. Cases without seg go to imagesTs.")
    parser.add_argument("-i", dest="input", required=True, help="folder of BraTS case folders (searched recursively)")
    parser.add_argument("-d", dest="dataset_id", required=True, type=int, help="nnU-Net dataset ID")
    parser.add_argument("-n", dest="name", default="BraTS", help="dataset name (default: BraTS)")
    parser.add_argument("--labels", choices=("whole_tumor", "regions"), default="whole_tumor",
                        help="whole_tumor (default): background/tumour; regions: nnU-Net region-based "
                             "whole tumour / tumour core / enhancing tumour")
    parser.add_argument("--register", choices=("auto", "always", "never"), default="auto",
                        help="auto (default): register a modality when its grid differs from T2's or its head "
                             "mask is not aligned with T2's; never: only resample onto T2's grid")
    parser.add_argument("-np", dest="num_processes", type=int, default=None,
                        help="parallel cases (default: nnU-Net's default_num_processes, at most the CPU count)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="convert the good cases and list the bad ones (also in skipped_cases.json)")
    args = parser.parse_args(argv)

    from nnunet_sam_adapter.data.conversion import ConversionError, convert_brats

    try:
        summary = convert_brats(args.input, args.dataset_id, args.name, labels=args.labels, register=args.register,
                                num_processes=args.num_processes or _default_processes(), skip_bad=args.skip_bad)
    except ConversionError as error:
        sys.exit(f"nnUNetv2_sam_convert_brats: error: {error}")
    print_summary(summary, "converted")


if __name__ == "__main__":
    main()
