"""Greedy patch selection and batched cropping against straightforward loop references."""

import pytest
import torch

from wsod_mammo.models import roi


def reference_picks(saliency: torch.Tensor, window: tuple[int, int], k: int) -> list[list[tuple[int, int]]]:
    """The greedy definition, one image and one window at a time."""
    picks = []
    for image in saliency.double():
        maps = []
        for m in image:
            span = m.max() - m.min()
            maps.append((m - m.min()) / span if span > 0 else torch.zeros_like(m))
        score = torch.stack(maps).sum(0)
        h, w = score.shape
        chosen = []
        for _ in range(k):
            best, best_pos = None, None
            for r in range(h - window[0] + 1):
                for c in range(w - window[1] + 1):
                    mean = score[r : r + window[0], c : c + window[1]].mean().item()
                    if best is None or mean > best:
                        best, best_pos = mean, (r, c)
            chosen.append(best_pos)
            score[best_pos[0] : best_pos[0] + window[0], best_pos[1] : best_pos[1] + window[1]] = 0
        picks.append(chosen)
    return picks


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("window", [(1, 1), (2, 3), (4, 2)])
def test_picks_equal_loop_reference_on_random_maps(seed: int, window: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(seed)
    saliency = torch.rand(3, 2, 9, 7, generator=gen)
    picks = roi.select_windows(saliency, window, 6)
    assert picks.tolist() == [[list(p) for p in image] for image in reference_picks(saliency, window, 6)]


def test_picks_under_bf16_autocast_and_channels_last_equal_the_reference() -> None:
    """The training step's setting: the window mask's transposed convolution runs in bf16 there."""
    gen = torch.Generator().manual_seed(3)
    saliency = torch.rand(2, 1, 23, 15, generator=gen).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        picks = roi.select_windows(saliency, (5, 3), 6)
    assert picks.tolist() == [[list(p) for p in image] for image in reference_picks(saliency, (5, 3), 6)]


def test_ties_take_first_maximum_in_row_major_order() -> None:
    saliency = torch.zeros(1, 1, 6, 6)
    saliency[0, 0, 0, 4] = 1.0  # two windows of 2x2 reach it: the one at (0, 3) comes first
    saliency[0, 0, 4, 0] = 1.0
    picks = roi.select_windows(saliency, (2, 2), 3)
    assert picks[0].tolist() == [[0, 3], [3, 0], [0, 0]]
    assert picks[0].tolist() == [list(p) for p in reference_picks(saliency, (2, 2), 3)[0]]


def test_dyadic_map_with_many_ties_equals_reference() -> None:
    gen = torch.Generator().manual_seed(5)
    saliency = torch.randint(0, 3, (4, 1, 8, 8), generator=gen).float() / 2  # values in {0, .5, 1}
    saliency[:, :, 0, 0] = 1.0
    saliency[:, :, -1, -1] = 0.0
    picks = roi.select_windows(saliency, (2, 2), 6)
    assert picks.tolist() == [[list(p) for p in image] for image in reference_picks(saliency, (2, 2), 6)]


def test_constant_map_gives_no_nan_and_corner_picks() -> None:
    saliency = torch.full((2, 1, 5, 5), 0.7)
    picks = roi.select_windows(saliency, (2, 2), 4)
    assert picks.tolist() == [[[0, 0]] * 4] * 2


@pytest.mark.parametrize("seed", [0, 1])
def test_a_ties_map_changes_no_pick_where_the_patch_map_has_no_tie(seed: int) -> None:
    """GMIC's ``patch_ties: cam`` picks NYU's windows wherever the patch map's largest mean is one window's."""
    gen = torch.Generator().manual_seed(seed)
    saliency, ties = torch.rand(3, 2, 9, 7, generator=gen), torch.rand(3, 1, 9, 7, generator=gen)
    picks = roi.select_windows(saliency, (2, 3), 6, ties)
    assert picks.tolist() == [[list(p) for p in image] for image in reference_picks(saliency, (2, 3), 6)]


def test_a_patch_map_of_zeros_takes_the_ties_maps_windows_not_one_corner_k_times() -> None:
    """A gradient map that is 0 throughout (GradCAM on an image the model calls negative) gave the first window K
    times; ordered by a ties map (CAM's), it gives that map's greedy picks: K windows, none repeated."""
    gen = torch.Generator().manual_seed(7)
    zeros, ties = torch.zeros(2, 1, 9, 7), torch.rand(2, 1, 9, 7, generator=gen)
    assert roi.select_windows(zeros, (2, 2), 4).tolist() == [[[0, 0]] * 4] * 2
    picks = roi.select_windows(zeros, (2, 2), 4, ties)
    assert picks.tolist() == [[list(p) for p in image] for image in reference_picks(ties, (2, 2), 4)]
    one_cell = zeros.clone()
    one_cell[:, 0, 5, 5] = 1.0  # one positive cell: its window first, then the ties map's picks elsewhere
    picks = roi.select_windows(one_cell, (2, 2), 4, ties)
    assert all(len({tuple(p) for p in image}) == 4 for image in picks.tolist())
    assert all(image[0][0] in (4, 5) and image[0][1] in (4, 5) for image in picks.tolist())


def test_window_size_and_pixel_mapping_clamps_inside_image() -> None:
    assert roi.window_size((256, 256), (46, 30), (2944, 1920)) == (4, 4)
    assert roi.window_size((10, 10), (4, 4), (256, 256)) == (1, 1)
    corners = torch.tensor([[[0, 0], [3, 2], [2, 1]]])
    pixels = roi.corners_to_pixels(corners, (4, 3), (256, 192), (100, 80))
    assert pixels.tolist() == [[[0, 0], [156, 112], [128, 64]]]  # (3*64, 2*64) clamped to (256-100, 192-80)


def test_crop_patches_equals_slicing_and_boxes_are_xyxy() -> None:
    images = torch.arange(2 * 2 * 12 * 10, dtype=torch.float32).view(2, 2, 12, 10)
    corners = torch.tensor([[[0, 0], [5, 6]], [[8, 2], [1, 1]]])
    crops = roi.crop_patches(images, corners, (4, 4))
    assert crops.shape == (2, 2, 2, 4, 4)
    for n in range(2):
        for k in range(2):
            r, c = corners[n, k].tolist()
            assert torch.equal(crops[n, k], images[n, :, r : r + 4, c : c + 4])
    boxes = roi.corners_to_boxes(corners, (4, 3))
    assert boxes[0, 1].tolist() == [6.0, 5.0, 9.0, 9.0]


def test_crop_is_differentiable_wrt_image() -> None:
    images = torch.randn(1, 1, 8, 8, requires_grad=True)
    roi.crop_patches(images, torch.tensor([[[2, 3]]]), (2, 2)).sum().backward()
    assert images.grad.sum().item() == 4.0


def test_window_size_of_a_non_square_crop_keeps_height_and_width_apart() -> None:
    # a 128 (high) x 64 (wide) crop on a 256 x 192 image whose map is 4 x 3: 128*4/256 = 2 rows, 64*3/192 = 1 col
    assert roi.window_size((128, 64), (4, 3), (256, 192)) == (2, 1)
    # and on the paper's 2944 x 1920 input (46 x 30 map): a 512 x 128 crop covers 8 x 2 cells
    assert roi.window_size((512, 128), (46, 30), (2944, 1920)) == (8, 2)
