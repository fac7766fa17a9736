"""The coordinate chain: forward then inverse is exact, images and boxes move together, breast crop."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from wsod_mammo.data.geometry import (
    Geometry,
    apply_to_image,
    apply_to_mask,
    boxes_to_input,
    boxes_to_original,
    breast_bbox,
    clip_boxes,
    make_geometry,
    map_to_original,
)


@pytest.mark.parametrize("resize", ["stretch", "fit"])
@pytest.mark.parametrize("flip", [False, True])
def test_forward_then_inverse_within_1e3_px(flip: bool, resize: str) -> None:
    rng = np.random.default_rng(0)
    geo = Geometry(3518, 2800, flip, (37, 120, 2213, 3400), 2944, 1920, resize)
    xy = rng.uniform(0, 2800, (50, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 400, (50, 2))], 1).astype(np.float32)
    back = boxes_to_original(boxes_to_input(boxes, geo), geo.to_dict())
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    assert np.abs(back - boxes).max() < 1e-3
    tensor = torch.from_numpy(boxes).double()
    back_t = boxes_to_original(boxes_to_input(tensor, geo), geo)
    assert isinstance(back_t, torch.Tensor) and back_t.dtype == torch.float64
    assert (back_t - tensor).abs().max() < 1e-9
    assert Geometry.from_dict(geo.to_dict()) == geo


def test_forward_numbers() -> None:
    geo = Geometry(100, 80, True, (10, 20, 50, 100), 40, 20)  # scale 0.5 both ways
    out = boxes_to_input(np.array([[60.0, 30.0, 70.0, 50.0]]), geo)
    # flipped: x in [10, 20]; minus crop (10, 20): [0, 10] x [10, 30]; times 0.5
    np.testing.assert_allclose(out, [[0.0, 5.0, 5.0, 15.0]])


@pytest.mark.parametrize("resize", ["stretch", "fit"])
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_image_and_boxes_move_together(laterality: str, resize: str) -> None:
    image = np.zeros((300, 200), np.float32)
    image[40:260, :140] = 0.4  # the breast against the left edge
    if laterality == "R":
        image = np.ascontiguousarray(image[:, ::-1])
    box = np.array([[60.0, 100.0, 90.0, 140.0]], np.float32)
    if laterality == "R":
        box = np.array([[110.0, 100.0, 140.0, 140.0]], np.float32)
    x0, y0, x1, y1 = box[0].astype(int)
    image[y0:y1, x0:x1] = 1.0  # a mass filling its box exactly
    geo = make_geometry(image, laterality, (150, 100), crop_breast=True, resize=resize)
    out = apply_to_image(image, geo)
    assert out.shape == (150, 100) and out.dtype == np.float32
    assert geo.flip == (laterality == "R")
    bx0, by0, bx1, by1 = boxes_to_input(box, geo)[0]
    ys, xs = np.nonzero(out > 0.99)
    assert xs.min() >= bx0 - 1 and xs.max() + 1 <= bx1 + 1 and ys.min() >= by0 - 1 and ys.max() + 1 <= by1 + 1
    assert out[int(by0) + 2 : int(by1) - 2, int(bx0) + 2 : int(bx1) - 2].min() > 0.99
    assert out[:, -2:].max() == 0 and out[75, :3].min() > 0.3  # chest wall on the left, margin on the right


def test_fit_keeps_the_aspect_ratio_and_pads_with_background() -> None:
    """A 200 x 100 crop into 150 x 150: scale 0.75 both ways, 150 x 75 against the left edge, the rest 0."""
    image = np.full((240, 160), 0.5, np.float32)
    geo = Geometry(240, 160, False, (20, 30, 120, 230), 150, 150, "fit")
    assert geo.inner_size == (150, 75) and geo.offset == (0, 0) and geo.scale_x == geo.scale_y == 0.75
    out = apply_to_image(image, geo)
    assert out.shape == (150, 150) and out[:, :75].min() == 0.5 and out[:, 75:].max() == 0
    wide = Geometry(240, 160, False, (0, 100, 160, 180), 150, 150, "fit")  # 80 x 160 crop: 75 x 150, centred
    assert wide.inner_size == (75, 150) and wide.offset == (0, 37)
    np.testing.assert_allclose(boxes_to_input(np.array([[0.0, 100.0, 160.0, 180.0]]), wide), [[0, 37, 150, 112]])
    stretched = Geometry(240, 160, False, (20, 30, 120, 230), 150, 150)
    assert (stretched.scale_x, stretched.scale_y) == (1.5, 0.75)
    with pytest.raises(ValueError, match="resize: expected one of"):
        Geometry(240, 160, False, (0, 0, 160, 240), 150, 150, "crop")


def test_breast_bbox_ignores_label_and_adds_margin() -> None:
    image = np.zeros((512, 400), np.float32)
    image[50:450, 0:250] = 0.5  # breast
    image[10:30, 330:390] = 1.0  # bright label in the far corner
    x0, y0, x1, y1 = breast_bbox(image, margin=0.02)
    assert (x0, y0) == (0, 40) and 250 <= x1 <= 262 and 450 <= y1 <= 462
    assert breast_bbox(image, margin=0) == (0, 50, 250, 450)  # the component's far edges, not one search cell short
    assert breast_bbox(np.zeros((64, 32), np.float32)) == (0, 0, 32, 64)


def test_a_crop_shrunk_one_way_and_grown_the_other_is_resampled_bilinearly() -> None:
    """A tall crop stretched to 2944 x 1920 shrinks its height and grows its width: area interpolation is for
    shrinking both ways only."""
    image = np.random.default_rng(0).random((400, 100), dtype=np.float32)
    geometry = make_geometry(image, "L", (200, 300), crop_breast=False)
    expected = cv2.resize(image, (300, 200), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(apply_to_image(image, geometry), expected)


def test_breast_bbox_finds_a_12_bit_breast_beside_a_label_at_the_16_bit_maximum() -> None:
    """A burned-in label at 65535 in a 12-bit image (``scale_to_unit`` then divides by 65535): the tissue, at most
    4095 / 65535, fell under the threshold's floor and the crop was the label's corner alone."""
    image = np.zeros((512, 400), np.float32)
    yy, xx = np.mgrid[:512, :400]
    breast = ((yy - 256) / 220.0) ** 2 + (xx / 260.0) ** 2 < 1  # a half ellipse against the chest wall (left)
    image[breast] = (1500 + 2500 * np.exp(-xx[breast] / 200.0)) / 65535  # 12-bit tissue, brighter near the wall
    image[12:40, 340:380] = 1.0  # the label
    x0, y0, x1, y1 = breast_bbox(image, margin=0.02)
    assert x0 == 0 and 255 <= x1 <= 270 and y0 <= 45 and y1 >= 466


def _breast_against_the_wall(laterality: str, height: int = 600, width: int = 400) -> np.ndarray:
    """A smooth half ellipse of tissue against the chest wall (left for L), dimmer towards the skin, on black."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    inside = np.clip(1 - ((yy - height / 2) / (0.45 * height)) ** 2 - (xx / (0.6 * width)) ** 2, 0, 1)
    image = (0.6 * inside).astype(np.float32)
    return image if laterality == "L" else np.ascontiguousarray(image[:, ::-1])


def _with_strip(image: np.ndarray, laterality: str, edge: str, depth: int, level: float = 1.0) -> np.ndarray:
    """``image`` with an even bright band ``depth`` pixels deep along ``edge`` (top, bottom, the chest wall's or the
    far one), as a scanned film's border or the light box leaves."""
    out = image.copy()
    on_left = (edge == "wall") == (laterality == "L")
    side = np.s_[:, :depth] if on_left else np.s_[:, -depth:]
    band = {"top": np.s_[:depth], "bottom": np.s_[-depth:]}.get(edge, side)
    out[band] = level
    return out


@pytest.mark.parametrize("edge", ["top", "bottom", "wall", "far"])
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_a_bright_strip_along_an_edge_neither_cuts_the_breast_crop_nor_flips_the_laterality(
    laterality: str, edge: str
) -> None:
    """A saturated band 60 pixels deep (15% of the width) along one edge raised the tissue scale of the breast search:
    the crop lost the breast's dimmer half, and a band along the far edge outweighed the breast (the laterality
    flipped, the crop was the band). The band is left out: the crop is the one without it, cut only where the band
    covers the breast (at the chest wall)."""
    from wsod_mammo.data.images import infer_laterality

    plain = _breast_against_the_wall(laterality)
    image = _with_strip(plain, laterality, edge, 60)
    assert infer_laterality(plain) == infer_laterality(image) == laterality
    before, after = breast_bbox(plain), breast_bbox(image)
    if edge != "wall":
        assert after == before
    else:
        x0, y0, x1, y1 = after if laterality == "L" else (400 - after[2], after[1], 400 - after[0], after[3])
        bx0, by0, bx1, by1 = before if laterality == "L" else (400 - before[2], before[1], 400 - before[0], before[3])
        assert x0 == 60 and x1 >= bx1 and abs(y0 - by0) <= 4 and abs(y1 - by1) <= 4  # from the band's inner edge
    geometry = make_geometry(image, laterality, (300, 200))
    assert geometry.crop[0] == (60 if edge == "wall" else 0) and geometry.crop[2] >= 200


def test_strips_along_several_edges_and_an_uneven_one_are_all_left_out() -> None:
    """A film border along the top and the far edge at once (meeting at a corner), and a dimmer, noisy band along the
    bottom: the crop is the breast's, as without them."""
    plain = _breast_against_the_wall("L")
    image = _with_strip(_with_strip(plain, "L", "top", 40), "L", "far", 50, level=0.9)
    noise = np.random.default_rng(0).normal(0.0, 0.02, (30, 400)).astype(np.float32)
    image[-30:] = np.clip(0.8 + noise, 0, 1)
    assert breast_bbox(image) == breast_bbox(plain)


def test_tissue_saturated_along_the_chest_wall_is_no_strip() -> None:
    """A dense breast filling the whole height (a crop as tight as NYU's samples), saturated in its first 40 columns
    (an export's window clips it): those columns are even and bright as a film's border, but the tissue runs on past
    them, as bright, so they are breast and the crop keeps them."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :400]
    breast = ((yy - 256) / 300.0) ** 2 + (xx / 260.0) ** 2 < 1  # taller than the image: fills its first columns
    image = np.where(breast, np.clip(0.9 + rng.uniform(-0.15, 0.15, (512, 400)), 0, 1), 0).astype(np.float32)
    image[:, :40] = 1.0
    x0, y0, x1, y1 = breast_bbox(image, margin=0)
    assert (x0, y0, y1) == (0, 0, 512) and x1 >= 258


def test_clip_boxes_drops_empty() -> None:
    boxes = np.array([[-5, 2, 10, 8], [30, 30, 40, 40]], np.float32)
    clipped, keep = clip_boxes(boxes, 20, 20)
    np.testing.assert_array_equal(clipped, [[0, 2, 10, 8]])
    assert keep.tolist() == [True, False]


def _smooth_image(height: int, width: int) -> np.ndarray:
    """Smooth, and brighter to the right (a missed flip shows as a ramp of errors)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return (0.4 + 0.2 * np.sin(x / 23) * np.cos(y / 31) + 0.3 * x / width).astype(np.float32)


@pytest.mark.parametrize("out_size", [(120, 90), (600, 400)])  # input frame smaller, larger than the crop
@pytest.mark.parametrize("resize", ["stretch", "fit"])
@pytest.mark.parametrize("flip", [False, True])
def test_map_to_original_inverts_apply_to_image(flip: bool, resize: str, out_size: tuple[int, int]) -> None:
    geo = Geometry(300, 200, flip, (20, 30, 170, 280), *out_size, resize)
    image = _smooth_image(300, 200)
    back = map_to_original(apply_to_image(image, geo), geo.to_dict())
    assert isinstance(back, np.ndarray) and back.shape == (300, 200) and back.dtype == np.float32
    x0, x1 = (200 - 170, 200 - 20) if flip else (20, 170)  # the crop box in the unflipped original
    inside = np.zeros_like(image, bool)
    inside[30:280, x0:x1] = True
    assert back[~inside].max() == 0.0  # zero outside the crop box
    core = (slice(34, 276), slice(x0 + 4, x1 - 4))  # away from the crop's edges, where resampling clamps
    assert np.abs(back[core] - image[core]).max() < 0.03


@pytest.mark.parametrize("out_size", [(120, 90), (600, 400)])
@pytest.mark.parametrize("resize", ["stretch", "fit"])
@pytest.mark.parametrize("flip", [False, True])
def test_a_box_shaped_map_lands_on_boxes_to_original(flip: bool, resize: str, out_size: tuple[int, int]) -> None:
    geo = Geometry(300, 200, flip, (20, 30, 170, 280), *out_size, resize)
    inner_h, inner_w = geo.inner_size
    box = np.array([[0.2 * inner_w, 0.3 * inner_h, 0.6 * inner_w, 0.7 * inner_h]]).round()
    box[:, [1, 3]] += geo.offset[1]
    bx0, by0, bx1, by1 = box[0].astype(int)
    map_hw = torch.zeros(out_size)
    map_hw[by0:by1, bx0:bx1] = 1.0
    back = map_to_original(map_hw, geo)
    assert isinstance(back, torch.Tensor) and back.shape == (300, 200)
    ys, xs = np.nonzero(back.numpy() >= 0.5)
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
    expected = boxes_to_original(box, geo)[0]
    assert np.abs(found - expected).max() <= 1.0, (found, expected)
    with pytest.raises(ValueError, match="map: expected shape"):
        map_to_original(np.zeros((5, 5)), geo)


@pytest.mark.parametrize("resize", ["stretch", "fit"])
def test_padding_mask_follows_the_image_into_the_input_frame(resize: str) -> None:
    mask = np.zeros((300, 200), bool)
    mask[:, 150:] = True  # a padded band on the right of a right breast: on the left once flipped
    geometry = Geometry(300, 200, True, (0, 20, 120, 280), 64, 48, resize)
    out = apply_to_mask(mask, geometry)
    indicator = apply_to_image(mask.astype(np.float32), geometry)
    assert out.dtype == bool and out.shape == (64, 48) and out.any()
    assert out[indicator == 1].all() and not out[indicator == 0].any()  # incl. the fit border
    assert apply_to_mask(mask, Geometry(300, 200, False, (0, 0, 120, 300), 64, 48, resize)) is None  # cropped off
    assert apply_to_mask(None, geometry) is None


def _textured_breast(height: int, width: int, breast: tuple[int, int, int, int], laterality: str) -> np.ndarray:
    """A dark image with a textured breast in ``breast`` (x0, y0, x1, y1, given for L: against the left edge),
    mirrored for R: no two pixels alike, so a pixel copied from the wrong place shows."""
    rng = np.random.default_rng(1)
    image = rng.uniform(0.0, 0.02, (height, width)).astype(np.float32)
    x0, y0, x1, y1 = breast
    image[y0:y1, x0:x1] = rng.uniform(0.6, 1.0, (y1 - y0, x1 - x0))
    return image if laterality == "L" else np.ascontiguousarray(image[:, ::-1])


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_native_copies_a_smaller_crop_at_scale_1_against_the_chest_wall(laterality: str) -> None:
    """A smaller crop: its pixels as they are (flipped for R), at the left edge, centred vertically, 0 elsewhere."""
    image = _textured_breast(300, 200, (0, 40, 140, 260), laterality)
    geo = make_geometry(image, laterality, (400, 250), resize="native")
    x0, y0, x1, y1 = geo.crop
    assert (geo.scale_x, geo.scale_y) == (1.0, 1.0) and geo.inner_size == (y1 - y0, x1 - x0)
    assert x0 == 0 and geo.offset == (0, (400 - (y1 - y0)) // 2)
    out = apply_to_image(image, geo)
    flipped = image[:, ::-1] if laterality == "R" else image
    ox, oy = geo.offset
    assert np.array_equal(out[oy : oy + y1 - y0, : x1 - x0], flipped[y0:y1, x0:x1])
    out[oy : oy + y1 - y0, : x1 - x0] = 0
    assert not out.any()  # padding: background 0
    assert geo.content_box == (0, oy, x1 - x0, oy + y1 - y0)
    assert Geometry.from_dict(geo.to_dict()) == geo and geo.to_dict()["scale_x"] == 1.0


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_native_cuts_a_larger_crop_to_the_chest_wall_and_the_rows_with_most_breast(laterality: str) -> None:
    """A crop larger than the frame both ways: the frame's width from the chest wall, and the frame's height of rows
    that hold the most breast (here rows 150..350, below a narrow top; the centred window would be 100..300)."""
    image = _textured_breast(400, 300, (0, 150, 250, 350), laterality)
    narrow = np.random.default_rng(2).uniform(0.6, 1.0, (100, 60)).astype(np.float32)
    if laterality == "L":
        image[50:150, :60] = narrow
    else:
        image[50:150, -60:] = narrow[:, ::-1]
    geo = make_geometry(image, laterality, (200, 150), resize="native")
    assert geo.crop == (0, 150, 150, 350) and geo.inner_size == (200, 150) and geo.offset == (0, 0)
    flipped = image[:, ::-1] if laterality == "R" else image
    assert np.array_equal(apply_to_image(image, geo), flipped[150:350, :150])


def test_native_geometry_refuses_a_crop_larger_than_its_frame() -> None:
    assert Geometry(300, 200, False, (0, 10, 150, 210), 200, 150, "native").scale_x == 1.0
    with pytest.raises(ValueError, match="resize=native: the crop .* is larger than the 200 x 150 frame"):
        Geometry(300, 200, False, (0, 10, 151, 210), 200, 150, "native")


@pytest.mark.parametrize("frame", [(400, 250), (200, 150)])  # larger than the crop, smaller (cut)
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_native_boxes_round_trip_exactly(laterality: str, frame: tuple[int, int]) -> None:
    image = _textured_breast(400, 300, (0, 50, 250, 350), laterality)
    geo = make_geometry(image, laterality, frame, resize="native")
    boxes = np.array([[10.0, 160.0, 60.0, 210.5], [0.25, 200.0, 140.75, 260.0], [100.0, 100.0, 101.0, 399.0]])
    if laterality == "R":
        boxes[:, [0, 2]] = 300 - boxes[:, [2, 0]]
    inside = boxes_to_input(boxes, geo)
    flipped = boxes.copy()
    if laterality == "R":
        flipped[:, [0, 2]] = 300 - boxes[:, [2, 0]]
    (ox, oy), (cx, cy) = geo.offset, geo.crop[:2]
    assert np.array_equal(inside, flipped + [ox - cx, oy - cy, ox - cx, oy - cy])  # a shift, nothing else
    assert np.array_equal(boxes_to_original(inside, geo.to_dict()), boxes)
    tensor = torch.from_numpy(boxes)
    assert torch.equal(boxes_to_original(boxes_to_input(tensor, geo), geo), tensor)


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_native_boxes_beyond_the_kept_window_are_clipped_or_dropped_as_at_the_frame_edge(laterality: str) -> None:
    """The window of a larger crop fills the frame along each cut axis, so a box beyond it leaves the frame:
    ``clip_boxes`` (what the datasets apply) cuts it at the edge or drops it."""
    image = _textured_breast(400, 300, (0, 50, 250, 350), laterality)
    geo = make_geometry(image, laterality, (200, 150), resize="native")
    x0, y0, x1, y1 = geo.crop
    assert (x1 - x0, y1 - y0) == (150, 200) and y0 > 60
    boxes = np.array([[20.0, y0 - 40, 60, y0 - 10], [20, y1 - 10, 60, y1 + 30], [x1 + 5, 200, x1 + 50, 240]])
    if laterality == "R":
        boxes[:, [0, 2]] = 300 - boxes[:, [2, 0]]
    clipped, keep = clip_boxes(boxes_to_input(boxes, geo), 200, 150)
    assert keep.tolist() == [False, True, False]
    np.testing.assert_array_equal(clipped, [[20 - x0, 190, 60 - x0, 200]])


def test_native_map_and_padding_mask_go_back_at_scale_1() -> None:
    """``map_to_original`` puts a native frame's pixels back where they came from, unresampled; the padding mask
    follows the image and is False in the frame's padding."""
    image = _textured_breast(300, 200, (0, 40, 140, 260), "R")
    geo = make_geometry(image, "R", (400, 250), resize="native")
    back = map_to_original(apply_to_image(image, geo), geo)
    x0, y0, x1, y1 = geo.crop
    region = (slice(y0, y1), slice(200 - x1, 200 - x0))  # the crop in the unflipped original
    assert np.array_equal(back[region], image[region])
    back[region] = 0
    assert not back.any()
    mask = np.zeros((300, 200), bool)
    mask[:, :100] = True  # the far side of a right breast
    out = apply_to_mask(mask, geo)
    assert np.array_equal(out, apply_to_image(mask.view(np.uint8), geo).view(bool)) and out.any()
    assert not out[: geo.offset[1]].any() and not out[:, x1 - x0 :].any()


def test_the_pixel_spacing_travels_with_the_geometry_and_old_dicts_have_none() -> None:
    """A cache sidecar carries the DICOM's spacing (lesion sizes in mm); one written before it reads as unknown."""
    geo = Geometry(100, 80, True, (2, 3, 70, 90), 64, 48, spacing_mm=(0.085, 0.07))
    data = json.loads(json.dumps(geo.to_dict()))
    assert data["spacing_mm"] == [0.085, 0.07] and Geometry.from_dict(data) == geo
    del data["spacing_mm"]
    assert Geometry.from_dict(data).spacing_mm is None


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_a_box_in_pixel_edge_coordinates_comes_back_out_of_the_input_frame_as_it_went_in(laterality: str) -> None:
    """One convention everywhere: pixel column ``i`` spans ``[i, i + 1)``. A mass over columns 150..159 of a 160-wide
    image (against its right edge) and rows 50..79 is the CSV box ``(150, 50, 160, 80)``; a map of exactly that
    mass in the input frame (flipped for R, halved) gives, back in the image's pixels, that box: no pixel more or
    less on either side (an inclusive ``xmax`` would read 159, a centre convention 149.5..159.5)."""
    from wsod_mammo.detection.boxes import box_iou, saliency_to_boxes

    image = np.full((256, 160), 0.5, np.float32)
    mass = np.zeros_like(image)
    mass[50:80, 150:160] = 1.0
    box = np.array([[150.0, 50.0, 160.0, 80.0]])
    geo = make_geometry(image, laterality, (128, 80), crop_breast=False)
    saliency = torch.from_numpy(apply_to_image(mass, geo))[None]
    (found,) = saliency_to_boxes(saliency, (128, 80), 0.5)
    np.testing.assert_array_equal(found.boxes.numpy(), boxes_to_input(box, geo))
    np.testing.assert_array_equal(boxes_to_original(found.boxes.double(), geo).numpy(), box)
    assert box_iou(torch.from_numpy(box), torch.from_numpy(box)).item() == 1.0
