"""Box IoU and saliency map -> boxes, on hand-built maps."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from wsod_mammo.detection.boxes import Detections, box_iou, saliency_to_boxes


def test_box_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    expected = torch.tensor([[1.0, 50 / 150, 0.0], [25 / 175, 50 / 150, 0.0]])
    assert torch.allclose(iou, expected)


def test_box_iou_empty_and_degenerate():
    assert box_iou(torch.zeros(0, 4), torch.ones(3, 4)).shape == (0, 3)
    assert box_iou(torch.ones(2, 4), torch.zeros(0, 4)).shape == (2, 0)
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert box_iou(point, point).item() == 0.0
    with pytest.raises(ValueError, match=r"\(A, 4\)"):
        box_iou(torch.zeros(3), torch.zeros(1, 4))


def test_two_blobs_give_two_boxes_with_exact_extents():
    # Without upsampling (map size == image size) the components are the blobs themselves.
    maps = torch.zeros(1, 12, 10)
    maps[0, 2:5, 3:6] = 1.0  # rows 2..4, columns 3..5
    maps[0, 8:11, 7] = 0.6  # rows 8..10, column 7
    maps[0, 9, 8] = 0.4  # below threshold 0.5: not part of the second box
    (dets,) = saliency_to_boxes(maps, (12, 10), 0.5, probabilities=torch.tensor([0.5]))
    order = torch.argsort(dets.scores, descending=True)
    boxes, scores = dets.boxes[order], dets.scores[order]
    assert boxes.tolist() == [[3.0, 2.0, 6.0, 5.0], [7.0, 8.0, 8.0, 11.0]]
    assert torch.allclose(scores, torch.tensor([1.0 * 0.5, 0.6 * 0.5]))
    assert boxes.dtype == torch.float32 and scores.dtype == torch.float32


def test_diagonal_pixels_are_one_component():
    maps = torch.zeros(1, 6, 6)
    maps[0, 1, 1] = maps[0, 2, 2] = maps[0, 3, 3] = 1.0  # touching at corners only: 8-connected
    (dets,) = saliency_to_boxes(maps, (6, 6), 0.5)
    assert dets.boxes.tolist() == [[1.0, 1.0, 4.0, 4.0]]


def test_island_inside_a_ring_keeps_its_own_peak():
    maps = torch.zeros(1, 9, 9)
    maps[0, 1:8, 1:8] = 0.6
    maps[0, 2:7, 2:7] = 0.0  # the hole
    maps[0, 4, 4] = 1.0  # an island inside the hole, brighter than the ring
    (dets,) = saliency_to_boxes(maps, (9, 9), 0.5)
    found = sorted(zip(dets.boxes.tolist(), dets.scores.tolist(), strict=True), key=lambda pair: pair[1])
    assert [box for box, _ in found] == [[1.0, 1.0, 8.0, 8.0], [4.0, 4.0, 5.0, 5.0]]
    assert [score for _, score in found] == pytest.approx([0.6, 1.0])


def test_upsampled_blob_maps_to_the_input_frame():
    maps = torch.zeros(1, 4, 4)
    maps[0, 1, 2] = 1.0
    (dets,) = saliency_to_boxes(maps, (40, 40), 0.5)
    # Cell (1, 2) covers rows 10..19 and columns 20..29; bilinear blur keeps the >= 0.5 region centred on it.
    assert len(dets.boxes) == 1
    x1, y1, x2, y2 = dets.boxes[0].tolist()
    assert (x1 + x2) / 2 == pytest.approx(25.0, abs=0.6) and (y1 + y2) / 2 == pytest.approx(15.0, abs=0.6)
    assert 8 <= x2 - x1 <= 12 and 8 <= y2 - y1 <= 12
    assert dets.scores.item() == pytest.approx(0.95 * 0.95)  # nearest pixel centres sit 0.05 cell off the peak


def test_empty_and_constant_maps_give_no_boxes():
    maps = torch.stack([torch.zeros(5, 4), torch.full((5, 4), 0.7)])
    for dets in saliency_to_boxes(maps, (50, 40), 0.0):
        assert dets.boxes.shape == (0, 4) and dets.scores.shape == (0,)
    assert saliency_to_boxes(torch.zeros(0, 5, 4), (50, 40), 0.5) == []


def test_several_thresholds_match_single_calls():
    torch.manual_seed(0)
    maps = torch.rand(3, 6, 5) ** 3
    probs = torch.tensor([0.9, 0.2, 0.5])
    many = saliency_to_boxes(maps, (37, 29), [0.3, 0.6], probabilities=probs)
    assert len(many) == 3 and all(len(per_image) == 2 for per_image in many)
    for k, threshold in enumerate([0.3, 0.6]):
        single = saliency_to_boxes(maps, (37, 29), threshold, probabilities=probs)
        for image in range(3):
            assert isinstance(single[image], Detections)
            assert torch.equal(many[image][k].boxes, single[image].boxes)
            assert torch.equal(many[image][k].scores, single[image].scores)


@pytest.mark.parametrize("seed", range(12))
def test_matches_full_upsample_and_scipy_labelling(seed):
    # The cropped upsample must give the same components as upsampling the whole frame and labelling it.
    gen = torch.Generator().manual_seed(seed)
    h, w, size = 7, 5, (45, 33)
    maps = torch.rand(1, h, w, generator=gen) ** 3
    threshold = 0.45
    (dets,) = saliency_to_boxes(maps, size, threshold)
    normalized = (maps - maps.min()) / (maps.max() - maps.min())
    full = F.interpolate(normalized[None], size, mode="bilinear", align_corners=False)[0, 0].numpy()
    labels, count = ndimage.label(full >= threshold, structure=np.ones((3, 3)))
    expected = sorted((s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels))
    peaks = sorted(ndimage.maximum(full, labels, np.arange(1, count + 1)).tolist())
    assert sorted(tuple(int(v) for v in box) for box in dets.boxes.tolist()) == expected
    assert np.allclose(sorted(dets.scores.tolist()), peaks, atol=1e-5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        saliency_to_boxes(torch.zeros(1, 1, 4, 4), (8, 8), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        saliency_to_boxes(torch.full((1, 4, 4), float("nan")), (8, 8), 0.5)
    with pytest.raises(ValueError, match="probabilities"):
        saliency_to_boxes(torch.rand(2, 4, 4), (8, 8), 0.5, probabilities=torch.ones(3))
