"""`BatchedTilePredictor`: nnU-Net's `nnUNetPredictor` with `tiles_per_batch` sliding-window tiles per network
forward, the mirrored copies (test-time augmentation) in that same forward.

nnU-Net runs one tile per forward (batch 1) and one more forward per mirror-axis combination; for a 2d
configuration on a volume every slice is at least one tile, so a SAM network runs ~150 batch-1 forwards per
BraTS volume (x4 with mirroring). Here the tiles are stacked into batches; everything else (the tiles and their
order, Gaussian weighting, accumulation into half-precision `predicted_logits` / `n_predictions`, the mirror
average, the inf check, the results device and its out-of-memory fallback) is nnU-Net's. docs/inference.md has
the measured speed.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from queue import Queue
from threading import Thread

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian
from nnunetv2.utilities.helpers import empty_cache
from tqdm import tqdm

# The fastest measured on a 2-core CPU (scripts/batched_predictor_timing.py, vit_b, 2026-12-03, another job
# running: 1.66x without mirroring, 2.88x with; docs/inference.md); not measured on a GPU.
DEFAULT_TILES_PER_BATCH = 8


def check_tiles_per_batch(value) -> int:
    """`value` as a whole number >= 1, or ValueError naming what was expected."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            text = str(value).strip()
            value = int(text)
        except ValueError:
            raise ValueError(f"tiles_per_batch must be a whole number >= 1, got {value!r}") from None
    if value < 1:
        raise ValueError(f"tiles_per_batch must be a whole number >= 1, got {value}")
    return value


class BatchedTilePredictor(nnUNetPredictor):
    """nnUNetPredictor with `tiles_per_batch` tiles per network forward (same arguments otherwise).

    With mirroring on, a batch of B tiles and its M mirrored copies (M = 2^len(axes) - 1 axis combinations)
    go through the network as one (B * (M + 1))-tile forward. Memory of a forward grows accordingly.
    """

    def __init__(self, *args, tiles_per_batch: int = DEFAULT_TILES_PER_BATCH, **kwargs):
        super().__init__(*args, **kwargs)
        self.tiles_per_batch = check_tiles_per_batch(tiles_per_batch)

    def _mirror_axes_combinations(self, x: torch.Tensor) -> list[tuple[int, ...]]:
        """nnU-Net's axis combinations (same order) as tensor dims of `x`; [] when mirroring is off."""
        mirror_axes = self.allowed_mirroring_axes if self.use_mirroring else None
        if mirror_axes is None:
            return []
        # x is 5d for 3d tiles and 4d for 2d ones, so a mirror axis cannot exceed x.ndim - 3 (nnU-Net's check)
        assert max(mirror_axes) <= x.ndim - 3, 'mirror_axes does not match the dimension of the input!'
        mirror_axes = [m + 2 for m in mirror_axes]
        return [c for i in range(len(mirror_axes)) for c in itertools.combinations(mirror_axes, i + 1)]

    @torch.inference_mode()
    def _internal_maybe_mirror_and_predict(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, *patch) -> logits (B, K, *patch), averaged over the mirrored copies when mirroring is on.

        As nnU-Net's: prediction of x, plus each flipped-back prediction of a flipped x (same combinations, same
        order), divided by (combinations + 1). Differs only in that x and its flipped copies are concatenated
        along the batch into one forward of (B * (combinations + 1), C, *patch) instead of one forward each.
        """
        combinations = self._mirror_axes_combinations(x)
        if not combinations:
            return self.network(x)
        batch = x.shape[0]
        stacked = torch.cat([x, *(torch.flip(x, axes) for axes in combinations)])
        outputs = self.network(stacked)
        prediction = outputs[:batch]
        for k, axes in enumerate(combinations, start=1):
            prediction += torch.flip(outputs[k * batch:(k + 1) * batch], axes)
        prediction /= (len(combinations) + 1)
        return prediction

    @torch.inference_mode()
    def _internal_predict_sliding_window_return_logits(self, data: torch.Tensor, slicers,
                                                       do_on_device: bool = True):
        """data (C, *volume) -> logits (K, *volume) in torch.half on the results device.

        Mirrors nnU-Net's `nnUNetPredictor._internal_predict_sliding_window_return_logits` (nnunetv2 2.8.1). What
        differs: tiles come in batches of up to `tiles_per_batch`, (B, C, *patch) with their B slicers, instead
        of single tiles; the batch's predictions are then Gaussian-weighted and added tile by tile in nnU-Net's
        order, so the accumulation (half precision) is the same as nnU-Net's.

        Where the batches are made: on a GPU network, as nnU-Net does, in a producer thread (it stacks and copies
        the next batch to the device while the network runs; a failure there is passed on to this thread, where
        nnU-Net's would wait forever). On a CPU network, in this thread: once a second thread has run a torch op,
        libgomp (torch's OpenMP) has more threads than cores and throttles the spin-wait between parallel
        regions, and every forward of a SAM network (thousands of small ops) ran 1.8x slower on 2 cores
        (vit_b, one tile per forward, measured 2026-12-03; docs/inference.md).
        """
        predicted_logits = n_predictions = prediction = gaussian = workon = None
        results_device = self.device if do_on_device else torch.device('cpu')
        tiles_per_batch = self.tiles_per_batch

        def batches(d, slh):
            for start in range(0, len(slh), tiles_per_batch):
                batch_slicers = slh[start:start + tiles_per_batch]
                tiles = torch.stack([d[s] for s in batch_slicers]).contiguous()  # (B, C, *patch)
                yield tiles.to(self.device), batch_slicers

        try:
            empty_cache(self.device)

            if self.verbose:
                print(f'move image to device {results_device}')
            data = data.to(results_device)
            items = batches(data, slicers)
            if batches_in_producer_thread(self.device):
                items = _from_producer_thread(items)

            if self.verbose:
                print(f'preallocating results arrays on device {results_device}')
            predicted_logits = torch.zeros((self.label_manager.num_segmentation_heads, *data.shape[1:]),
                                           dtype=torch.half, device=results_device)
            n_predictions = torch.zeros(data.shape[1:], dtype=torch.half, device=results_device)

            if self.use_gaussian:
                gaussian = compute_gaussian(tuple(self.configuration_manager.patch_size), sigma_scale=1. / 8,
                                            value_scaling_factor=10, device=results_device)
            else:
                gaussian = 1

            if not self.allow_tqdm and self.verbose:
                print(f'running prediction: {len(slicers)} steps in batches of {tiles_per_batch}')

            with tqdm(desc=None, total=len(slicers), disable=not self.allow_tqdm) as pbar:
                for workon, batch_slicers in items:
                    predictions = self._internal_maybe_mirror_and_predict(workon).to(results_device)
                    for prediction, sl in zip(predictions, batch_slicers):  # prediction (K, *patch)
                        if self.use_gaussian:
                            prediction *= gaussian
                        predicted_logits[sl] += prediction
                        n_predictions[sl[1:]] += gaussian
                    pbar.update(len(batch_slicers))

            torch.div(predicted_logits, n_predictions, out=predicted_logits)
            if torch.any(torch.isinf(predicted_logits)):
                raise RuntimeError('Encountered inf in predicted array. Aborting... If this problem persists, '
                                   'reduce value_scaling_factor in compute_gaussian or increase the dtype of '
                                   'predicted_logits to fp32')
            return predicted_logits
        except Exception as e:
            del predicted_logits, n_predictions, prediction, gaussian, workon
            empty_cache(self.device)
            empty_cache(results_device)
            raise e


def batches_in_producer_thread(device: torch.device) -> bool:
    """Whether the tile batches for a network on `device` are made by a producer thread (not on a CPU: see
    `BatchedTilePredictor._internal_predict_sliding_window_return_logits`)."""
    return device.type != 'cpu'


def _from_producer_thread(items: Iterator, maxsize: int = 2) -> Iterator:
    """The items of `items`, made ahead by a daemon thread (nnU-Net's producer and queue of 2); an exception
    raised there is raised here."""
    queue = Queue(maxsize=maxsize)
    end = object()

    def producer():
        try:
            for item in items:
                queue.put(item)
            queue.put(end)
        except BaseException as error:  # handed to the consumer, which raises it
            queue.put(error)

    thread = Thread(target=producer, daemon=True)
    thread.start()
    while True:
        item = queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is end:
            break
        yield item
    thread.join()
