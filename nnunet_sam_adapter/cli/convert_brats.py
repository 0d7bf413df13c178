"""`nnUNetv2_sam_convert_brats`: BraTS case folders -> nnU-Net v2 raw dataset, T1/T1ce/FLAIR registered to T2."""
import argparse

from nnunet_sam_adapter.cli.case_commands import add_case_options, run_case_command


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_sam_convert_brats",
        description="Convert BraTS case folders (2018-2021 <case>_{t1,t1ce,t2,flair,seg}.nii.gz or 2023+ "
                    "<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz) into $nnUNet_raw/DatasetXXX_NAME, with T1, T1ce and "
                    "FLAIR rigidly registered to T2. Cases without seg go to imagesTs. Converting more cases into "
                    "the same dataset keeps the earlier ones; a folder this tool did not create is never touched.")
    parser.add_argument("-i", dest="input", required=True, help="folder of BraTS case folders (searched recursively)")
    parser.add_argument("-d", dest="dataset_id", required=True, type=int, help="nnU-Net dataset ID")
    parser.add_argument("-n", dest="name", default="BraTS", help="dataset name (default: BraTS)")
    parser.add_argument("--labels", choices=("whole_tumor", "regions"), default="whole_tumor",
                        help="whole_tumor (default): background/tumour; regions: nnU-Net region-based "
                             "whole tumour / tumour core / enhancing tumour")
    add_case_options(parser, register_help="auto (default): register a modality when its grid differs from T2's or "
                                           "its head mask is not aligned with T2's; never: only resample onto T2's "
                                           "grid (refused when a modality does not overlap T2)",
                     skip_bad_help="convert the good cases and list the bad ones (also in skipped_cases.json)")
    parser.add_argument("--remove-missing", action="store_true",
                        help="remove the cases converted earlier into this dataset that are not in -i (default: "
                             "keep them)")
    args = parser.parse_args(argv)

    from nnunet_sam_adapter.data.conversion import convert_brats

    run_case_command("nnUNetv2_sam_convert_brats", "converted", convert_brats, args, brats_dir=args.input,
                     dataset_id=args.dataset_id, dataset_name=args.name, labels=args.labels,
                     remove_missing=args.remove_missing)


if __name__ == "__main__":
    main()
