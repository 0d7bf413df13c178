"""The speed benchmark runs end to end with the tiny backbone and writes its table and JSON
(no timing assertions: numbers on a shared CI machine mean nothing)."""
import json

import pytest

from nnunet_sam_adapter.cli.speed import main
from nnunet_sam_adapter.speed.variants import SpeedSettings, comparisons, resolve_device, speed_variants
from nnunet_sam_adapter.speed.workload import plain_conv_unet_architecture


def test_speed_benchmark_writes_table_and_json(tmp_path, capsys):
    docs = tmp_path / "docs" / "performance.md"
    main(["--backbone", "tiny", "--input-size", "32", "--adapter-depth", "2", "--batch-size", "2",
          "--train-steps", "1", "--infer-steps", "1", "--device", "cpu",
          "--only", "two_passes", "low_precision", "nnunet", "-o", str(tmp_path / "out"), "--docs", str(docs)])
    report = json.loads((tmp_path / "out" / "speed.json").read_text())
    assert [v["key"] for v in report["variants"]] == ["two_passes", "low_precision", "nnunet"]
    for variant in report["variants"]:
        assert "error" not in variant, variant
        assert variant["train_images_per_s"] > 0 and variant["infer_images_per_s"] > 0
        assert variant["train_peak_mb"] > 0 and variant["infer_peak_mb"] > 0
    env = report["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["nnunetv2"] and "native_bf16" in env["cpu_capability"]
    assert report["settings"]["backbone"] == "tiny"
    table = (tmp_path / "out" / "speed.md").read_text()
    assert "| variant | train img/s |" in table and "stock nnU-Net 2d PlainConvUNet" in table
    assert "(a) batched streams vs two passes" in table and "not measured" in table  # rows left out
    page = docs.read_text()
    assert page.startswith("# Performance") and table in page and "## GPU" in page
    assert "written:" in capsys.readouterr().out

    # re-render from the saved JSON without measuring: same tables
    main(["--from-json", str(tmp_path / "out" / "speed.json"), "-o", str(tmp_path / "again"),
          "--docs", str(tmp_path / "again.md")])
    assert (tmp_path / "again" / "speed.md").read_text() == table
    assert (tmp_path / "again.md").read_text() == page


def test_all_comparisons_have_rows():
    keys = [v.key for v in speed_variants(SpeedSettings(include_compile=True), resolve_device("cpu"))]
    assert keys == ["two_passes", "batched", "sdpa", "folded", "low_precision", "low_precision_alt", "checkpointing",
                    "compiled", "early_fusion", "nnunet", "ours_3d"]
    for attention, batched in (("sam", False), ("sdpa", True), ("folded", False)):  # defaults: CPU before/now, CUDA
        compared = {key for numerator, denominator, _ in comparisons(attention, batched) for key in (numerator, denominator)}
        assert compared - {None} <= set(keys)
    with pytest.raises(ValueError, match="unknown variants"):
        speed_variants(SpeedSettings(only=("warp",)), resolve_device("cpu"))


def test_litemedsam_rows_have_no_sdpa_and_name_its_attention():
    """LiteMedSAM's TinyViT has no SDPA variant: no SDPA rows, and its attention is labelled as its own."""
    variants = speed_variants(SpeedSettings(backbone="litemedsam"), resolve_device("cpu"))
    assert not {"sdpa", "folded", "low_precision_alt"} & {v.key for v in variants}
    ours = [v for v in variants if v.method == "ours"]
    assert ours and all("TinyViT attention" in v.label and "SAM attention" not in v.label for v in ours)
    assert all(v.network_kwargs.get("attention") not in ("sdpa", "folded") for v in variants)


def test_stock_nnunet_2d_architecture_for_256_patch():
    arch = plain_conv_unet_architecture(256, 4)["arch_kwargs"]
    assert arch["n_stages"] == 7  # 256 -> 4 (nnU-Net's minimum feature map edge)
    assert arch["features_per_stage"] == [32, 64, 128, 256, 512, 512, 512]
    assert [list(s) for s in arch["strides"]] == [[1, 1]] + [[2, 2]] * 6
    assert all(list(k) == [3, 3] for k in arch["kernel_sizes"])


def test_the_3d_row_counts_slices_as_images(tmp_path):
    """ours_3d's row (issue #18) runs the 3D network on stacks of `slices` slices and reports images (slices) / s."""
    from nnunet_sam_adapter.speed.measurement import measure_variant

    settings = SpeedSettings(backbone="tiny", input_size=32, adapter_depth=2, batch_size=2, slices=3,
                             warmup_steps=0, train_steps=1, infer_steps=1, device="cpu")
    variant = next(v for v in speed_variants(settings, resolve_device("cpu")) if v.key == "ours_3d")
    result = measure_variant(variant, settings)
    assert result["method"] == "ours_3d" and "stacks of 3 slices" in result["label"]
    assert result["train_images_per_s"] == pytest.approx(3 / result["train_step_s"][0])
