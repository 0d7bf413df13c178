"""Modality dropout: never drops every modality, drops each at the configured rate, sits in the training
pipeline only, and sets a dropped channel to what nnU-Net's preprocessing makes of a missing (all-zero)
modality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_sam_adapter.training.modality_dropout import (MISSING_VALUE, ModalityDropoutTransform,
                                                          expected_drop_rate, expected_full_set_rate)
from nnunet_sam_adapter.methods import METHODS, dropout_variant
from nnunet_sam_adapter.model.modalities import MODALITIES

DROPOUT_METHODS = [name for name, method in METHODS.items() if method.dropout_of]


def _draw(transform, n_samples, seed=0, channels=4):
    np.random.seed(seed)
    dropped = np.zeros((n_samples, channels), dtype=bool)
    for i in range(n_samples):
        image = torch.randn(channels, 8, 8) + 5  # no channel is 0 by chance
        out = transform(image=image, segmentation=torch.zeros(1, 8, 8))["image"]
        dropped[i] = (out == MISSING_VALUE).flatten(1).all(1).numpy()
        kept = ~dropped[i]
        assert torch.equal(out[kept], image[kept])  # kept channels untouched
    return dropped


@pytest.mark.parametrize("p_drop", [0.5, 0.25, 0.9, 1.0])
def test_never_drops_all_modalities(p_drop):
    dropped = _draw(ModalityDropoutTransform(p_drop), 2000)
    assert not dropped.all(axis=1).any()


@pytest.mark.parametrize("p_drop", [0.5, 0.25])
def test_each_modality_dropped_at_the_configured_rate(p_drop):
    n = 4000
    dropped = _draw(ModalityDropoutTransform(p_drop), n, seed=1)
    expected = expected_drop_rate(p_drop, 4)
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n)  # 4 binomial standard errors
    assert np.abs(dropped.mean(axis=0) - expected).max() < tolerance, (dropped.mean(axis=0), expected)


def test_default_rate_makes_the_15_subsets_equally_likely():
    n = 6000
    dropped = _draw(ModalityDropoutTransform(), n, seed=2)
    subsets = dropped @ (1 << np.arange(4))
    counts = np.bincount(subsets, minlength=16)
    assert counts[15] == 0
    from scipy.stats import chisquare

    assert chisquare(counts[:15]).pvalue > 1e-3, counts


@pytest.mark.parametrize("full_set", [0.0, 0.5])
def test_the_full_set_share_and_the_other_subsets_equally_likely(full_set):
    """`_missing_full50`: half the samples keep all four; the other 14 subsets stay equally likely."""
    n = 6000
    dropped = _draw(ModalityDropoutTransform(full_set_probability=full_set), n, seed=4)
    counts = np.bincount(dropped @ (1 << np.arange(4)), minlength=16)
    expected = expected_full_set_rate(0.5, full_set, 4)
    assert expected == pytest.approx(8 / 15 if full_set else 1 / 15)
    assert abs(counts[0] / n - expected) < 4 * np.sqrt(expected * (1 - expected) / n), counts
    from scipy.stats import chisquare

    assert counts[15] == 0 and chisquare(counts[1:15]).pvalue > 1e-3, counts


def test_zero_rate_and_chosen_channels():
    assert not _draw(ModalityDropoutTransform(0.0), 200).any()
    dropped = _draw(ModalityDropoutTransform(0.9, channels=[0, 1]), 500, channels=3)
    assert not dropped[:, 2].any() and dropped[:, :2].any()


def test_every_multimodal_registered_method_can_take_modality_dropout():
    """One registry mechanism (methods.with_modality_dropout): every method but the single-modality ones has a
    `<name>_missing` variant on the same plans and network, with a generated trainer nnU-Net can load."""
    bases = [name for name, method in METHODS.items() if not method.dropout_of]
    for name in bases:
        if name in MODALITIES:
            with pytest.raises(ValueError, match="no modality-dropout variant"):
                dropout_variant(name)
            continue
        for full_set in (0.0, 0.5):
            base, variant = METHODS[name], METHODS[dropout_variant(name, full_set)]
            assert (variant.plans, variant.configuration, variant.network_options, variant.dropout_of) == \
                (base.plans, base.configuration, base.network_options, name)
            trainer = variant.trainer_class()
            assert issubclass(trainer, base.trainer_class()) and variant.trainer_name != base.trainer_name
            assert trainer.modality_full_set_probability == variant.dropout_full_set == full_set
    assert {"ours_missing", "early_fusion_missing", "nnunet_2d_missing", "ours_plus_missing",
            "nnunet_3d_fullres_missing", "ours_plus_missing_full50", "nnunet_2d_missing_full50"} <= set(DROPOUT_METHODS)


@pytest.mark.parametrize("method", DROPOUT_METHODS)
def test_a_dropout_trainer_sees_every_one_of_the_15_subsets(method):
    """The dropout transform of the method's own training pipeline, drawn as training draws it."""
    trainer = METHODS[method].trainer_class()
    steps = trainer.get_training_transforms(np.array([64, 64]), (0, 0), None, (0, 1), False,
                                            use_mask_for_norm=[True] * 4).transforms
    dropout = next(step for step in steps if isinstance(step, ModalityDropoutTransform))
    subsets = _draw(dropout, 600, seed=3) @ (1 << np.arange(4))
    assert set(subsets.tolist()) == set(range(15)), sorted(set(subsets.tolist()))


@pytest.mark.parametrize("method", DROPOUT_METHODS)
def test_in_training_transforms_only(method):
    """After nnU-Net's intensity augmentations, before its label transforms; never at validation."""
    trainer, plain_trainer = METHODS[method].trainer_class(), METHODS[METHODS[method].dropout_of].trainer_class()
    args = (np.array([64, 64]), (0, 0), None, (0, 1), False)
    train = trainer.get_training_transforms(*args, use_mask_for_norm=[True] * 4).transforms
    kinds = [type(t) for t in train]
    assert kinds.count(ModalityDropoutTransform) == 1
    assert kinds.index(ModalityDropoutTransform) == kinds.index(RemoveLabelTansform) - 1
    assert train[kinds.index(ModalityDropoutTransform)].p_drop == trainer.modality_drop_probability
    assert train[kinds.index(ModalityDropoutTransform)].full_set_probability == METHODS[method].dropout_full_set
    validation = trainer.get_validation_transforms(None).transforms
    assert ModalityDropoutTransform not in [type(t) for t in validation]
    # the plain trainers are untouched
    plain = plain_trainer.get_training_transforms(*args, use_mask_for_norm=[True] * 4).transforms
    assert ModalityDropoutTransform not in [type(t) for t in plain]


def _plans(use_mask_for_norm: bool) -> PlansManager:
    configuration = {
        "data_identifier": "x", "preprocessor_name": "DefaultPreprocessor", "spacing": [1.0, 1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"] * 4, "use_mask_for_norm": [use_mask_for_norm] * 4,
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": "unused", "arch_kwargs": {}, "_kw_requires_import": []},
    }
    intensity = {str(c): {"mean": 0.0, "std": 1.0, "percentile_00_5": 0.0, "percentile_99_5": 1.0}
                 for c in range(4)}
    return PlansManager({"dataset_name": "x", "plans_name": "p", "transpose_forward": [0, 1, 2],
                         "transpose_backward": [0, 1, 2], "configurations": {"3d_fullres": configuration},
                         "foreground_intensity_properties_per_channel": intensity})


@pytest.mark.parametrize("use_mask_for_norm", [True, False])
def test_missing_value_is_what_nnunet_preprocessing_makes_of_a_zero_channel(use_mask_for_norm):
    """A missing modality written as zeros (register --allow-missing) is MISSING_VALUE after nnU-Net's
    own preprocessing (crop to nonzero, ZScoreNormalization, resampling)."""
    rng = np.random.default_rng(0)
    data = np.zeros((4, 12, 20, 20), dtype=np.float32)
    data[:, 2:10, 3:17, 4:18] = rng.uniform(50, 500, size=(4, 8, 14, 14))  # a "brain" with zero background
    data[1] = 0  # T1ce missing
    seg = np.zeros((1, 12, 20, 20), dtype=np.int16)
    seg[0, 4:8, 6:12, 6:12] = 1
    plans = _plans(use_mask_for_norm)
    out, _, _ = DefaultPreprocessor(verbose=False).run_case_npy(
        data, seg, {"spacing": [1.0, 1.0, 1.0]}, plans, plans.get_configuration("3d_fullres"),
        {"labels": {"background": 0, "tumour": 1}})
    assert np.all(out[1] == MISSING_VALUE)
    assert out[0].std() > 0.5  # the present channels were normalised, not zeroed


def test_subset_figure_keeps_matplotlib_defaults_after_nnunet_progress_plot(tmp_path, monkeypatch):
    """nnU-Net's progress plot calls seaborn.set(font_scale=2.5) in the training process; the subset figure
    drawn afterwards (same process with the inline benchmark) must not inherit the 2.5x fonts."""
    import seaborn
    from matplotlib.figure import Figure

    from nnunet_sam_adapter.evaluation.missing_modalities import SUBSETS, subset_name, write_figure
    from nnunet_sam_adapter.methods import METHODS

    seaborn.set(font_scale=2.5)
    sizes = []
    original = Figure.savefig

    def recording_savefig(fig, *args, **kwargs):
        sizes.append(fig.axes[0].yaxis.label.get_size())
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    rows = [{"method": "ours", "variant": "raw", "subset": subset_name(s), "class": "tumor", "dice_pct_volume": 50.0}
            for s in SUBSETS]
    try:
        write_figure(rows, [METHODS["ours"]], "tumor", SUBSETS, tmp_path / "f.png")
    finally:
        seaborn.reset_orig()
    assert sizes == [10.0] and (tmp_path / "f.png").is_file()  # matplotlib's default label size


def test_subset_table_states_what_dropout_costs_on_the_full_set(tmp_path):
    from nnunet_sam_adapter.evaluation.missing_modalities import SUBSETS, subset_name, table_rows, write_markdown

    def summary(dice_pct: float) -> dict:
        return {p: {"tumor": {"dice": {"mean": dice_pct / 100, "count": 6}}} for p in ("volume", "slice")}

    full = subset_name(MODALITIES)
    # dropout: 60 on the full set, 45 elsewhere; without: 75 on the full set, 30 elsewhere
    scores = {"ours_plus_missing": (60.0, 45.0), "ours_plus": (75.0, 30.0), "nnunet_2d": (70.0, 20.0)}
    summaries = {(m, "raw"): {subset_name(s): summary(f if subset_name(s) == full else other) for s in SUBSETS}
                 for m, (f, other) in scores.items()}
    # after postprocessing (ours_plus and its dropout variant only): 72 vs 76 on the full set, 50 vs 35 elsewhere
    summaries.update({(m, "postprocessed"): {subset_name(s): summary(f if subset_name(s) == full else other)
                                             for s in SUBSETS}
                      for m, (f, other) in {"ours_plus_missing": (72.0, 50.0), "ours_plus": (76.0, 35.0)}.items()})
    methods = [METHODS[m] for m in scores]
    text = write_markdown(table_rows(summaries, SUBSETS, ["tumor"]), methods, ["tumor"], SUBSETS,
                          tmp_path / "t.md", "D", [0]).read_text()
    raw, postprocessed = text.split("## tumor, after nnU-Net's postprocessing")
    mean_with, mean_without = (60 + 14 * 45) / 15, (75 + 14 * 30) / 15
    line = (f"- {METHODS['ours_plus_missing'].label} vs {METHODS['ours_plus'].label}: full set 60.00 vs 75.00 "
            f"(-15.00); mean of 15 {mean_with:.2f} vs {mean_without:.2f} ({mean_with - mean_without:+.2f})")
    assert line in raw.splitlines()
    assert not any(l.startswith(f"- {METHODS['nnunet_2d'].label} vs") for l in text.splitlines())  # no variant
    mean_with, mean_without = (72 + 14 * 50) / 15, (76 + 14 * 35) / 15
    line = (f"- {METHODS['ours_plus_missing'].label} vs {METHODS['ours_plus'].label}: full set 72.00 vs 76.00 "
            f"(-4.00); mean of 15 {mean_with:.2f} vs {mean_without:.2f} ({mean_with - mean_without:+.2f})")
    assert line in postprocessed.splitlines()
    assert METHODS["nnunet_2d"].label not in postprocessed  # no postprocessed rows: no column
