"""Box IoU and saliency map -> boxes, on hand-built maps."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from wsod_mammo.detection.boxes import Detections, box_iou, highest_box_scores, saliency_to_boxes, upsample_map
from wsod_mammo.detection.overlay import method_panels


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


def test_a_plateau_exactly_at_the_threshold_is_kept():
    """Pixels >= threshold belong to the mask: a map of dyadic values (a constant blob at 0.5) must not lose it."""
    maps = torch.zeros(1, 12, 10)
    maps[0, 1:3, 1:3] = 1.0
    maps[0, 6:9, 4:7] = 0.5  # exactly the threshold after min-max normalization (0 .. 1)
    (dets,) = saliency_to_boxes(maps, (12, 10), 0.5, probabilities=torch.tensor([1.0]))
    assert sorted(dets.boxes.tolist()) == [[1.0, 1.0, 3.0, 3.0], [4.0, 6.0, 7.0, 9.0]]


def test_no_box_outside_the_region_that_holds_the_image():
    """``resize="fit"`` pads the image: a blob in the padding gives no box, one across its edge ends at the edge."""
    maps = torch.zeros(2, 12, 10)
    maps[:, 2:5, 1:4] = 1.0  # inside the region
    maps[:, 6:9, 5:9] = 0.8  # columns 5..8: across the region's right edge at x = 7
    maps[:, 10, 8:] = 0.9  # wholly in the padding
    regions = [(0, 0, 7, 12), None]
    inside, everywhere = saliency_to_boxes(maps, (12, 10), 0.5, regions=regions)
    assert sorted(inside.boxes.tolist()) == [[1.0, 2.0, 4.0, 5.0], [5.0, 6.0, 7.0, 9.0]]
    assert torch.allclose(inside.scores.sort().values, torch.tensor([0.8, 1.0]))
    assert len(everywhere.boxes) == 3  # no region: the padding's blob and the whole crossing blob
    with pytest.raises(ValueError, match="expected 2 regions"):
        saliency_to_boxes(maps, (12, 10), 0.5, regions=regions[:1])


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
    found = saliency_to_boxes(maps, (50, 40), 0.0)
    assert len(found) == 2  # one empty Detections per image: an empty list would make the loop check nothing
    for dets in found:
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


@pytest.mark.parametrize("seed", range(6))
def test_highest_box_scores_are_the_highest_of_the_boxes(seed):
    """Without labeling, the same number as the highest-scored box at every threshold (-inf where there is none):
    maps with several peaks, regions that cut them off, GMIC's placement and plain resizing, a constant map and a
    NaN probability (no boxes)."""
    gen = torch.Generator().manual_seed(seed)
    maps = F.avg_pool2d(torch.rand(6, 1, 14, 9, generator=gen), 3, 1, 1)[:, 0] ** 2
    maps[4] = 0.3
    probabilities = torch.rand(6, generator=gen)
    probabilities[5] = float("nan")
    size, thresholds = (97, 61), [0.2, 0.5, 0.8, 0.97, 1.0]
    regions = [None, (0, 0, 30, 97), (10, 40, 61, 97), (0, 0, 61, 97), None, None]
    for cell0_center in (None, 2.0):
        boxes = saliency_to_boxes(maps, size, thresholds, probabilities, cell0_center=cell0_center, regions=regions)
        expected = torch.tensor(
            [[float(d.scores.max()) if d.scores.numel() else float("-inf") for d in per_image] for per_image in boxes],
            dtype=torch.float64,
        )
        got = highest_box_scores(maps, size, thresholds, probabilities, cell0_center=cell0_center, regions=regions)
        assert torch.equal(got, expected), (got, expected)
    assert torch.isinf(expected[4:]).all() and torch.isfinite(expected[:4, 0]).all()  # both kinds were compared
    assert torch.isinf(expected[:4]).any()  # a threshold above some image's highest pixel
    # unresampled, the peak pixel is the normalized map's 1.0: a threshold of 1.0 keeps it, as the labeling does
    (at_peak,) = saliency_to_boxes(maps[:1], (14, 9), [1.0], probabilities[:1])[0]
    assert highest_box_scores(maps[:1], (14, 9), [1.0], probabilities[:1]).item() == float(at_peak.scores.max())


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        saliency_to_boxes(torch.zeros(1, 1, 4, 4), (8, 8), 0.5)
    with pytest.raises(ValueError, match="probabilities"):
        saliency_to_boxes(torch.rand(2, 4, 4), (8, 8), 0.5, probabilities=torch.ones(3))


def _hand_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The hand-written IoU the package used before torchvision's (areas clamped at 0, empty union -> 0)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    wh = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-38), torch.zeros_like(inter))


def test_box_iou_matches_the_hand_written_formula_on_random_and_degenerate_boxes():
    gen = torch.Generator().manual_seed(0)
    corners = torch.rand(60, 2, generator=gen) * 100
    sizes = torch.rand(60, 2, generator=gen) * 30
    sizes[::5, 0] = 0  # zero width
    sizes[1::7] = 0  # points
    boxes = torch.cat([corners, corners + sizes], dim=1)
    boxes[30:] = boxes[30:].round()  # integer boxes: shared edges, identical boxes
    boxes[45] = boxes[44]
    iou = box_iou(boxes[:40], boxes[20:])
    assert not iou.isnan().any() and iou.dtype == torch.float32
    assert torch.allclose(iou, _hand_iou(boxes[:40], boxes[20:]), atol=1e-6)


def _reference_boxes(full: np.ndarray, threshold: float) -> tuple[list, list]:
    """scipy's 8-connected labelling of ``full >= threshold``: sorted boxes and sorted peaks."""
    labels, count = ndimage.label(full >= threshold, structure=np.ones((3, 3)))
    boxes = sorted((s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels))
    return boxes, sorted(ndimage.maximum(full, labels, np.arange(1, count + 1)).tolist()) if count else []


@pytest.mark.parametrize("seed", range(6))
def test_components_match_scipy_on_rings_holes_and_nested_islands(seed):
    # Map size == image size (no upsampling): the components are those of the thresholded map itself.
    gen = torch.Generator().manual_seed(seed)
    maps = torch.rand(1, 40, 36, generator=gen)
    rings = torch.zeros(40, 36)
    for k, value in enumerate([0.9, 0.1, 0.8, 0.2, 0.95, 0.05, 1.0]):  # rings within holes within rings ...
        rings[2 + 2 * k : 38 - 2 * k, 2 + 2 * k : 34 - 2 * k] = value
    maps[0, :, :] = torch.where(torch.rand(40, 36, generator=gen) < 0.5 if seed % 2 else rings > 0, rings, maps[0])
    (dets,) = saliency_to_boxes(maps, (40, 36), 0.5)
    full = ((maps[0] - maps.min()) / (maps.max() - maps.min())).numpy()
    boxes, peaks = _reference_boxes(full, 0.5)
    assert len(boxes) > 1
    assert sorted(tuple(int(v) for v in box) for box in dets.boxes.tolist()) == boxes
    assert np.allclose(sorted(dets.scores.tolist()), peaks, atol=1e-6)


def test_upsampling_matches_f_interpolate_and_cv2_resize():
    gen = torch.Generator().manual_seed(1)
    saliency = torch.rand(7, 5, generator=gen)
    for size in [(70, 50), (45, 33), (7, 5), (64, 160)]:
        ours = upsample_map(saliency, size)
        torch_ref = F.interpolate(saliency[None, None], size, mode="bilinear", align_corners=False)[0, 0]
        cv2_ref = torch.from_numpy(cv2.resize(saliency.numpy(), (size[1], size[0]), interpolation=cv2.INTER_LINEAR))
        assert torch.allclose(ours, torch_ref, atol=1e-6) and torch.allclose(ours, cv2_ref, atol=1e-5)


def _placed(saliency: torch.Tensor, size: tuple[int, int], cell0_center: float) -> torch.Tensor:
    """Independent reference for a map placed with cell 0 on pixel ``cell0_center``: ``grid_sample``, border."""
    h, w = saliency.shape
    ys = (torch.arange(size[0]) - cell0_center) / (size[0] / h) / (h - 1) * 2 - 1
    xs = (torch.arange(size[1]) - cell0_center) / (size[1] / w) / (w - 1) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]  # (1, H, W, 2) as (x, y)
    return F.grid_sample(saliency[None, None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0, 0]


@pytest.mark.parametrize("seed", range(4))
def test_receptive_field_placement_matches_grid_sample_boxes_included(seed):
    gen = torch.Generator().manual_seed(seed)
    maps = torch.rand(1, 7, 5, generator=gen) ** 3
    size, cell0 = (56, 40), 11.5  # as GMIC.map_cell0_center places cells: shifted from plain resizing (3.5)
    normalized = (maps[0] - maps.min()) / (maps.max() - maps.min())
    full = _placed(normalized, size, cell0)
    assert torch.allclose(upsample_map(normalized, size, cell0), full, atol=1e-5)
    (dets,) = saliency_to_boxes(maps, size, 0.45, cell0_center=cell0)
    boxes, peaks = _reference_boxes(full.numpy(), 0.45)
    assert sorted(tuple(int(v) for v in box) for box in dets.boxes.tolist()) == boxes
    assert np.allclose(sorted(dets.scores.tolist()), peaks, atol=1e-5)


@pytest.mark.parametrize("scale", [1e-12, 2e-11, 1e-30, 1e6])
def test_boxes_do_not_depend_on_the_map_scale(scale):
    # GradCAM++ maps of confident positives peak near 2e-11; they once gave no boxes (a span <= 1e-8 was "constant").
    gen = torch.Generator().manual_seed(3)
    maps = torch.rand(2, 6, 5, generator=gen) ** 2
    maps[1] = 0
    maps[1, 2, 3] = 1.0  # one bright cell
    reference = saliency_to_boxes(maps, (48, 40), [0.3, 0.6], probabilities=torch.tensor([0.9, 0.4]))
    scaled = saliency_to_boxes(maps * scale, (48, 40), [0.3, 0.6], probabilities=torch.tensor([0.9, 0.4]))
    assert all(len(dets.boxes) > 0 for per_image in reference for dets in per_image)
    for ref_image, scaled_image in zip(reference, scaled, strict=True):
        for ref, got in zip(ref_image, scaled_image, strict=True):
            assert torch.equal(ref.boxes, got.boxes) and torch.allclose(ref.scores, got.scores, rtol=1e-5)
    panels = method_panels({"ref": maps[0], "scaled": maps[0] * scale}, (48, 40))
    assert torch.allclose(panels["ref"], panels["scaled"], atol=1e-5) and panels["ref"].max() > 0.9


def test_constant_and_non_finite_maps_give_no_boxes_and_blank_panels():
    maps = torch.rand(5, 6, 5)
    maps[0] = 3e-12  # constant, tiny
    maps[1, 2, 2] = float("nan")
    maps[2, 0, 0] = float("inf")
    maps[3, 4, 1] = -float("inf")
    per_image = saliency_to_boxes(maps, (48, 40), [0.0, 0.5])
    assert [len(dets.boxes) for per_threshold in per_image[:4] for dets in per_threshold] == [0] * 8
    assert len(per_image[4][0].boxes) > 0  # the healthy map beside them is unaffected
    assert all(len(d.boxes) == 0 for d in saliency_to_boxes(maps[:4], (48, 40), 0.5, normalize=False)[1:])
    panels = method_panels({str(i): maps[i] for i in range(5)}, (48, 40))
    assert all(torch.equal(panels[str(i)], torch.zeros(48, 40)) for i in range(4))
    # a non-finite probability (a diverged model) neither: a NaN score would head the FROC sweep
    healthy = maps[4:].expand(3, -1, -1)
    scored = saliency_to_boxes(healthy, (48, 40), 0.5, torch.tensor([float("nan"), float("inf"), 0.5]))
    assert [len(d.boxes) for d in scored[:2]] == [0, 0] and len(scored[2].boxes) > 0


def test_boxes_and_upsampled_maps_are_float32_under_a_callers_autocast():
    """The Python API called inside ``torch.autocast(bfloat16)`` (a notebook's mixed-precision region) failed in the
    upsampling's matmul, and under float16 gave other boxes than float32."""
    torch.manual_seed(1)
    maps, probs = torch.rand(3, 6, 5) ** 3, torch.tensor([0.9, 0.2, 0.5])
    plain = saliency_to_boxes(maps, (370, 290), [0.3, 0.6], probabilities=probs)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            mixed = saliency_to_boxes(maps, (370, 290), [0.3, 0.6], probabilities=probs)
            upsampled = upsample_map(maps[0], (370, 290))
        for image in range(3):
            for k in range(2):
                assert torch.equal(mixed[image][k].boxes, plain[image][k].boxes)
                assert torch.equal(mixed[image][k].scores, plain[image][k].scores)
        assert upsampled.dtype == torch.float32 and torch.equal(upsampled, upsample_map(maps[0], (370, 290)))
