"""dataset.json channel names -> the paper's two modality streams.

The paper groups the four MRI sequences "based on the modal characteristics" into a T1-based stream
(T1, T1ce) and a T2-based stream (T2, FLAIR). Channel names are matched case-insensitively against
the spellings BraTS and nnU-Net datasets use (2018-21: t1/t1ce/t2/flair; 2023+: t1n/t1c/t2w/t2f).
"""

from __future__ import annotations

import re

MODALITIES = ("T1", "T1ce", "T2", "FLAIR")
STREAMS = (("T1", "T1ce"), ("T2", "FLAIR"))
_ALIASES = {
    "T1": {"t1", "t1n", "t1w", "t1native", "t1pre", "native"},
    "T1ce": {"t1ce", "t1c", "t1gd", "t1post", "t1contrast", "t1wce", "t1km"},
    "T2": {"t2", "t2w"},
    "FLAIR": {"flair", "t2f", "t2flair"},
}


class ModalityError(ValueError):
    """dataset.json channel names that cannot be mapped onto the four modalities."""


def canonical_modality(name: str) -> str | None:
    """'t1c' -> 'T1ce', 'FLAIR' -> 'FLAIR', 'CT' -> None."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return next((modality for modality, aliases in _ALIASES.items() if key in aliases), None)


def modality_channels(channel_names: dict) -> dict[str, int]:
    """dataset.json 'channel_names' ({'0': 'T1', ...}) -> {'T1': 0, 'T1ce': 1, 'T2': 2, 'FLAIR': 3}."""
    found: dict[str, int] = {}
    for index, name in sorted(channel_names.items(), key=lambda kv: int(kv[0])):
        modality = canonical_modality(str(name))
        if modality is None:
            continue
        if modality in found:
            raise ModalityError(f"dataset.json channel_names: channels {found[modality]} and {index} "
                                f"are both {modality} ({channel_names})")
        found[modality] = int(index)
    return found


def stream_channels(channel_names: dict) -> list[list[int]]:
    """Channel indices of the T1-based and T2-based streams: [[T1, T1ce], [T2, FLAIR]]."""
    found = modality_channels(channel_names)
    missing = [m for m in MODALITIES if m not in found]
    if missing:
        raise ModalityError(f"dataset.json channel_names {channel_names} lack {', '.join(missing)}: the "
                            f"cross-modality network needs T1, T1ce, T2 and FLAIR (accepted spellings: "
                            f"{ {m: sorted(a) for m, a in _ALIASES.items()} })")
    return [[found[m] for m in stream] for stream in STREAMS]


def single_modality_channel(channel_names: dict, modality: str) -> int:
    """Index of one modality ('T1', 'T1ce', 'T2' or 'FLAIR') for the single-modality baselines."""
    found = modality_channels(channel_names)
    if modality not in found:
        raise ModalityError(f"dataset.json channel_names {channel_names} have no {modality} channel")
    return found[modality]
