"""Overlay pictures: readable size, ground truth and predictions drawn, and normal images among those drawn."""

from __future__ import annotations

import numpy as np
import torch

from wsod_mammo.detection.overlay import MIN_LONG_SIDE, render_overlay
from wsod_mammo.training.callbacks import SaliencyOverlays


def test_overlay_panels_are_at_least_1024_pixels_long_with_gt_and_predictions_drawn() -> None:
    image = torch.zeros(192, 128)  # a flat image: any green or orange pixel comes from a drawn box
    maps = {"gradcampp": torch.zeros(192, 128)}
    gt = torch.tensor([[20.0, 40.0, 60.0, 90.0]])
    boxes = {"gradcampp": (torch.tensor([[70.0, 100.0, 120.0, 180.0]]), torch.tensor([0.87]))}
    picture = render_overlay(image, gt, maps, boxes, "title")
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    assert picture.shape[0] >= MIN_LONG_SIDE  # the image's long side (its height) is drawn >= 1024 px
    b, g, r = (picture[..., c].astype(int) for c in range(3))
    assert ((g > 180) & (r < 80) & (b < 80)).sum() > 100  # ground truth, green
    assert ((r > 200) & (g > 100) & (g < 180) & (b < 60)).sum() > 100  # prediction, orange


def test_an_overlay_without_known_truth_draws_no_ground_truth_in_its_legend() -> None:
    """Predict knows nothing of its images: a green "ground truth" line in the legend beside no green box would
    read as "no mass here"; a test image without masses keeps it (its truth is known: none)."""

    def green_pixels(ground_truth: bool) -> int:
        image, maps = torch.zeros(192, 128), {"cam": torch.zeros(192, 128)}
        boxes = {"cam": (torch.tensor([[70.0, 100.0, 120.0, 180.0]]), torch.tensor([0.87]))}
        picture = render_overlay(image, torch.zeros(0, 4), maps, boxes, "t", ground_truth=ground_truth)
        b, g, r = (picture[..., c].astype(int) for c in range(3))
        return int(((g > 180) & (r < 80) & (b < 80)).sum())

    assert green_pixels(ground_truth=True) > 20  # the legend's line
    assert green_pixels(ground_truth=False) == 0


def test_overlays_take_half_normal_images() -> None:
    callback = SaliencyOverlays(num_images=3)
    callback._drawn = {True: 0, False: 0}
    assert callback._pick(torch.tensor([1.0, 1.0, 1.0, 0.0])) == [0, 1, 3]
    assert callback._pick(torch.tensor([0.0, 1.0])) == []  # both quotas full


def test_overlays_are_chosen_from_the_whole_test_set_each_image_once() -> None:
    """The quotas fill in the test set's order, a repeated image (``selection: paper``) counting once; a dataset that
    lists no records leaves the choice to the batches (None)."""
    from types import SimpleNamespace

    def record(image_id: str, mass: bool) -> SimpleNamespace:
        return SimpleNamespace(image_id=image_id, label=lambda classes: np.asarray([float(mass)], np.float32))

    records = [record("n1", False), record("m1", True), record("m1", True), record("n2", False), record("m2", True),
               record("n3", False)]  # fmt: skip
    dataset = SimpleNamespace(records=records, classes=["Mass"])
    trainer = SimpleNamespace(test_dataloaders=[SimpleNamespace(dataset=dataset)])
    assert SaliencyOverlays(num_images=3)._test_set_choice(trainer) == {"n1": 0, "m1": 1, "m2": 2}
    assert SaliencyOverlays(num_images=4)._test_set_choice(trainer) == {"n1": 0, "m1": 1, "n2": 2, "m2": 3}
    unlisted = SimpleNamespace(test_dataloaders=SimpleNamespace(dataset=list(range(4))))
    assert SaliencyOverlays(num_images=3)._test_set_choice(unlisted) is None


def test_wandb_gets_every_process_overlays_in_their_order(tmp_path, monkeypatch) -> None:
    """Under DDP each process draws its own share: the first process logs all that were written, after a barrier,
    in the overlays' order (one failed to write is left out)."""
    from types import SimpleNamespace

    from lightning.pytorch.loggers import WandbLogger

    logged, barriers = [], []
    monkeypatch.setattr(WandbLogger, "log_image", lambda self, key, images, **kw: logged.append((key, images)))
    callback = SaliencyOverlays(num_images=3)
    callback._directory, callback._written = tmp_path, []  # this process drew none of them
    callback._numbers = {"b": 0, "a": 1, "c": 2}
    for name in ("001_a.png", "000_b.png"):  # drawn by the others; c could not be written
        (tmp_path / name).write_bytes(b"png")
    strategy = SimpleNamespace(barrier=lambda name=None: barriers.append(name))
    trainer = SimpleNamespace(loggers=[WandbLogger(offline=True)], strategy=strategy, is_global_zero=True)
    callback.on_test_end(trainer, None)
    assert len(barriers) == 1
    assert logged == [("test/overlays", [str(tmp_path / "000_b.png"), str(tmp_path / "001_a.png")])]


def test_overlays_of_an_unvalidated_method_cut_where_the_test_report_did() -> None:
    """A method validation chose no threshold for is binarized at DetectionMetrics' ``default_threshold`` in the
    test report; the overlays must draw the boxes it counted, not boxes at another cut."""
    from lightning.pytorch import Trainer

    from wsod_mammo.training.callbacks import DetectionMetrics, unvalidated_threshold

    options = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    reported = Trainer(callbacks=[DetectionMetrics(default_threshold=0.3), SaliencyOverlays()], **options)
    assert unvalidated_threshold(reported) == 0.3
    assert unvalidated_threshold(Trainer(callbacks=[SaliencyOverlays()], **options)) == 0.5


def test_each_box_is_labelled_with_its_own_score(monkeypatch) -> None:
    from matplotlib.axes import Axes

    texts, text = [], Axes.text
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, *a, **k: texts.append(s) or text(self, x, y, s, *a, **k))
    boxes = torch.tensor([[2.0, 2, 10, 10], [20.0, 20, 30, 30]])
    maps = {"m": torch.rand(40, 32)}
    render_overlay(torch.rand(40, 32), torch.zeros(0, 4), maps, {"m": (boxes, torch.tensor([0.9, 0.2]))})
    assert texts == ["0.90", "0.20"]


def test_ground_truth_notes_go_under_their_boxes_in_the_first_panel_only(monkeypatch) -> None:
    from matplotlib.axes import Axes

    from wsod_mammo.detection.mass_kinds import mass_note

    assert [mass_note(4, 13.4), mass_note(0, 9.6), mass_note(5, None), mass_note(0, float("nan"))] == [
        "BI-RADS 4, 13 mm", "10 mm", "BI-RADS 5", ""]  # fmt: skip
    calls, text = [], Axes.text

    def recorded(self, x, y, s, *args, **kwargs):
        calls.append((y, s))
        return text(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(Axes, "text", recorded)
    gt = torch.tensor([[2.0, 2, 10, 10], [20.0, 20, 30, 30]])
    render_overlay(torch.rand(40, 32), gt, {"m": torch.rand(40, 32)}, {}, gt_notes=["BI-RADS 4, 13 mm", ""])
    assert calls == [(9.5, "BI-RADS 4, 13 mm")]  # under the first box (its bottom edge), once; none for a blank note


def test_the_heatmap_panel_is_placed_as_the_boxes_are() -> None:
    """Under alignment receptive_field the panel's heat must lie where the boxes of that map lie."""
    from wsod_mammo.detection.boxes import saliency_to_boxes
    from wsod_mammo.detection.overlay import method_panels

    saliency = torch.zeros(6, 5)
    saliency[2, 2] = 1.0
    panel = method_panels({"m": saliency}, (48, 40), 0.25)["m"]
    ys, xs = torch.nonzero(panel >= 0.5, as_tuple=True)
    ((boxes, _),) = saliency_to_boxes(saliency[None], (48, 40), 0.5, torch.tensor([0.9]), cell0_center=0.25)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], boxes[0].tolist(), atol=1.0)


def _orange(picture: np.ndarray) -> np.ndarray:
    b, g, r = (picture[..., c].astype(int) for c in range(3))
    return (r > 200) & (g > 100) & (g < 180) & (b < 60)


def test_a_box_on_the_image_border_is_drawn_whole() -> None:
    """A prediction reaching the right and bottom borders (x2 = W, y2 = H: pixel-corner coordinates) had those
    edges drawn half a pixel outside the panel and cut away; now it shows as much orange as the same box inside."""
    image, maps = torch.zeros(192, 128), {"cam": torch.zeros(192, 128)}
    inside = (torch.tensor([[28.0, 52.0, 88.0, 152.0]]), torch.tensor([0.5]))
    on_border = (torch.tensor([[68.0, 92.0, 128.0, 192.0]]), torch.tensor([0.5]))
    drawn = [_orange(render_overlay(image, torch.zeros(0, 4), maps, {"cam": b})).sum() for b in (inside, on_border)]
    assert drawn[1] > 0.97 * drawn[0]  # without the change about half (1784 of 3510 pixels)


def test_a_two_line_title_over_portrait_panels_is_not_cut_at_the_top() -> None:
    """The constrained layout of portrait panels put the titles' top few pixels above the figure: the first line
    of ``wsod predict``'s title (the image id) lost its top. The top rows of the picture are background."""
    image = torch.zeros(400, 260)
    picture = render_overlay(
        image, torch.zeros(0, 4), {"gradcam": torch.zeros(400, 260)}, {}, "Hdlk_id\np(mass) = 0.93"
    )
    assert (picture[:3] == 255).all()


def test_a_png_that_cannot_be_written_says_why_and_leaves_no_part_behind(tmp_path) -> None:
    """OpenCV's imwrite only returns False: on a full disk the error read "could not write the PNG", no reason. The
    kernel's own ENOSPC (a write to /dev/full, where the partial file would be) now reaches the message."""
    import os
    from pathlib import Path

    import pytest

    from wsod_mammo.detection.overlay import write_png

    path = Path(tmp_path) / "overlays" / "a.png"
    path.parent.mkdir()
    partial = path.with_name(f"a.png.{os.getpid()}.partial.png")
    partial.symlink_to("/dev/full")
    with pytest.raises(OSError, match=r"a.png: could not write the PNG \(No space left on device\)") as error:
        write_png(path, np.zeros((8, 8, 3), np.uint8))
    assert error.value.errno == 28 and not path.exists() and not partial.is_symlink()
    write_png(path, np.zeros((8, 8, 3), np.uint8))
    assert path.stat().st_size > 0 and list(path.parent.iterdir()) == [path]


def test_a_png_whose_name_nears_the_file_systems_limit_is_written(tmp_path) -> None:
    """`wsod predict` of a file with a 245-character name: its overlay's name (249 bytes) fits the 255-byte limit,
    its temporary name (with `.<pid>.partial.png`) did not, and the overlay was lost as "File name too long"."""
    from pathlib import Path

    from wsod_mammo.detection.overlay import write_png

    for name in ("L" * 245 + ".png", "é" * 125 + ".png"):  # 249 and 254 bytes
        path = Path(tmp_path) / name
        write_png(path, np.zeros((8, 8, 3), np.uint8))
        assert path.stat().st_size > 0
    assert len(list(Path(tmp_path).iterdir())) == 2  # nothing else left
