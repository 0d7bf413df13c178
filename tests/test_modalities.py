"""dataset.json channel names -> the T1-based / T2-based streams."""
import pytest

from nnunet_sam_adapter.model.modalities import (
    ModalityError,
    canonical_modality,
    modality_channels,
    single_modality_channel,
    stream_channels,
)

BRATS_2021 = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}  # nnU-Net's Dataset137_BraTS2021 spelling
BRATS_2023 = {"0": "t1c", "1": "t1n", "2": "t2f", "3": "t2w"}  # BraTS 2023 file suffixes, another order


@pytest.mark.parametrize("name, expected", [
    ("T1", "T1"), ("t1n", "T1"), ("T1w", "T1"), ("t1ce", "T1ce"), ("T1c", "T1ce"), ("T1-Gd", "T1ce"),
    ("t2", "T2"), ("T2w", "T2"), ("FLAIR", "FLAIR"), ("t2f", "FLAIR"), ("T2-FLAIR", "FLAIR"),
    ("CT", None), ("", None), ("t1ce_extra", None),
])
def test_canonical_modality(name, expected):
    assert canonical_modality(name) == expected


def test_brats_2021_spelling():
    assert stream_channels(BRATS_2021) == [[0, 1], [2, 3]]
    assert single_modality_channel(BRATS_2021, "FLAIR") == 3


def test_brats_2023_spelling_in_another_order():
    assert modality_channels(BRATS_2023) == {"T1ce": 0, "T1": 1, "FLAIR": 2, "T2": 3}
    assert stream_channels(BRATS_2023) == [[1, 0], [3, 2]]
    assert single_modality_channel(BRATS_2023, "T1ce") == 0


def test_channel_keys_are_sorted_numerically():
    names = {str(i): f"extra{i}" for i in range(12)} | {"10": "t2", "2": "t1", "11": "flair", "9": "t1ce"}
    assert stream_channels(names) == [[2, 9], [10, 11]]


def test_unknown_channels_are_ignored_when_the_four_are_present():
    assert stream_channels({**BRATS_2021, "4": "ADC"}) == [[0, 1], [2, 3]]


def test_missing_modality_names_what_is_missing():
    with pytest.raises(ModalityError, match="lack T1ce, FLAIR"):
        stream_channels({"0": "T1", "1": "T2"})
    with pytest.raises(ModalityError, match="no FLAIR channel"):
        single_modality_channel({"0": "T1"}, "FLAIR")


def test_duplicate_modality_is_an_error():
    with pytest.raises(ModalityError, match="channels 1 and 2 are both T1ce"):
        stream_channels({"0": "T1", "1": "t1c", "2": "T1ce", "3": "T2"})


def test_modality_error_is_a_value_error():
    assert issubclass(ModalityError, ValueError)
