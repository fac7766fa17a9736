"""DetectionMetric: hand-computed figures, positives-only, threshold choice, and DDP sync (merged and real)."""

import json
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from wsod_mammo.detection.detection_result import DetectionResult
from wsod_mammo.detection.metrics import DetectionMetric
from wsod_mammo.detection.normal_ratings import NormalImageRatings
from wsod_mammo.detection.strata import restrict_lesions

SIZE = (20, 20)  # maps at the input size: boxes are the blobs themselves


def _hand_batch() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Image 0 (mass): a faint blob on the mass and a bright one off it; image 1 (normal): one bright blob."""
    maps = torch.zeros(2, *SIZE)
    maps[0, 2:8, 2:8] = 0.6  # box [2, 2, 8, 8] == the ground truth
    maps[0, 12:15, 12:15] = 1.0  # box [12, 12, 15, 15]: a false positive
    maps[1, 5:10, 5:10] = 1.0
    probs = torch.tensor([0.8, 0.1])
    gt = [torch.tensor([[2.0, 2.0, 8.0, 8.0]]), torch.zeros(0, 4)]
    return maps, probs, gt, torch.tensor([1, 0])


def test_hand_computed_figures_on_all_images():
    metric = DetectionMetric(thresholds=(0.7, 0.5), fppi_points=(0.5, 1.0))
    metric.update(*_hand_batch(), image_size=SIZE)
    result = metric.compute()
    assert isinstance(result, DetectionResult) and (result.num_gt, result.num_images) == (1, 2)
    high, low = result.per_threshold
    # At 0.7 the faint mass blob is gone: two false positives, no hit.
    assert (high.threshold, high.tpr, high.fppi) == (0.7, 0.0, 1.0)
    # At 0.5: FP (score 0.8), TP (0.6 * 0.8 = 0.48), the normal image's FP (0.1) -> curve through (0.5, 1).
    assert (low.tpr, low.fppi) == (1.0, 1.0)
    assert low.fppi_curve.tolist() == [0.0, 0.5, 0.5, 1.0]
    assert low.tpr_curve.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert low.score_thresholds[1:].tolist() == pytest.approx([0.8, 0.48, 0.1])
    assert low.tpr_at_fppi.tolist() == [1.0, 1.0]
    assert result.best_threshold(1.0) == 0.5 and metric.best_threshold(0.25) == 0.7  # tie at TPR 0: first
    # free of thresholds: the mass image's peak (the bright blob, 7.8 px from the mass) hits within the default 15
    # px; its energy inside the mass is 0.6 x 36 of 0.6 x 36 + 9; the normal image has nothing to point at
    assert result.pointing is not None and result.energy is not None
    assert result.pointing[0] == 1.0 and math.isnan(float(result.pointing[1]))
    assert float(result.energy[0]) == pytest.approx(21.6 / 30.6) and math.isnan(float(result.energy[1]))
    strict = DetectionMetric(pointing_tolerance=0.0)
    strict.update(*_hand_batch(), image_size=SIZE)
    assert strict.compute().pointing[0] == 0.0  # type: ignore[index]


def test_the_pointing_game_keeps_the_peak_inside_the_image_region():
    """With ``resize: fit``, the mass image's bright blob lies in the padding: the image's own peak is on the mass."""
    maps, probs, gt, labels = _hand_batch()
    metric = DetectionMetric(pointing_tolerance=0.0)
    metric.update(maps, probs, gt, labels, SIZE, regions=[(0, 0, 10, 20), None])
    result = metric.compute()
    assert result.pointing is not None and result.energy is not None
    assert result.pointing[0] == 1.0 and float(result.energy[0]) == pytest.approx(1.0)


def test_positives_only_ignores_normal_images():
    metric = DetectionMetric(thresholds=(0.5,), positives_only=True, score_threshold=0.3)
    metric.update(*_hand_batch(), image_size=SIZE)
    result = metric.compute()
    assert (result.num_gt, result.num_images) == (1, 1)
    (point,) = result.per_threshold
    assert (point.tpr, point.fppi) == (1.0, 1.0)
    assert len(point.fppi_curve) == 3  # origin + two boxes of the mass image


def test_a_mass_the_input_frame_leaves_out_counts_as_missed():
    """A mass that a crop or a `native` window leaves out wholly was dropped from the count: TPR 1.0 for finding
    the one mass in view of two, rising with every mass a frame cut away."""
    metric = DetectionMetric(thresholds=(0.5,), positives_only=True, score_threshold=0.3)
    metric.update(*_hand_batch(), image_size=SIZE, unseen_gt=[1, 0])
    result = metric.compute()
    assert (result.num_gt, result.num_images) == (2, 1)
    (point,) = result.per_threshold
    assert (point.tpr, point.fppi) == (0.5, 1.0)


def test_a_blob_outside_the_image_region_is_no_false_positive():
    """With ``resize="fit"`` the frame's padding is not the image: the regions keep boxes off it (the mass image's
    bright false positive at x 12..15 lies in its padding here), indexed like the maps when normals are left out."""
    maps, probs, gt, labels = _hand_batch()
    order = [1, 0]  # the normal image first: positives_only drops it, the region of the mass image must follow
    metric = DetectionMetric(thresholds=(0.5,), positives_only=True)
    regions = [None, (0, 0, 10, 20)]
    metric.update(maps[order], probs[order], [gt[i] for i in order], labels[order], SIZE, regions=regions)
    (point,) = metric.compute().per_threshold
    assert (point.tpr, point.fppi) == (1.0, 0.0)


def test_normal_images_only_give_nan_tpr_and_fppi():
    maps, probs, gt, labels = _hand_batch()
    metric = DetectionMetric()
    metric.update(maps[1:], probs[1:], gt[1:], labels[1:], SIZE)
    result = metric.compute()
    assert not result.tpr_defined and math.isnan(result.per_threshold[0].tpr)
    assert result.per_threshold[0].fppi == 1.0
    assert torch.isnan(result.per_threshold[0].tpr_at_fppi).all()
    assert result.best_threshold() == 0.5


def test_one_point_curve_keeps_its_shape():
    metric = DetectionMetric(fppi_points=(1.0,))
    metric.update(torch.zeros(1, 4, 4), torch.ones(1), [torch.zeros(0, 4)], torch.zeros(1), (4, 4))
    (point,) = metric.compute().per_threshold
    assert point.fppi_curve.shape == (1,) and point.tpr_at_fppi.shape == (1,)


def _random_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, 8, 6, generator=gen) * 0.2
    labels = (torch.arange(n) % 2 == 0).long()
    gts = []
    for i in range(n):
        r, c = int(torch.randint(0, 5, (1,), generator=gen)), int(torch.randint(0, 3, (1,), generator=gen))
        maps[i, r : r + 3, c : c + 3] += torch.rand(1, generator=gen) + 0.5
        shift = float(torch.rand(1, generator=gen)) * 8  # some hit, some miss
        box = torch.tensor([[c * 4 + shift, r * 4.0, c * 4 + 12 + shift, r * 4 + 12.0]])
        gts.append(box if labels[i] else torch.zeros(0, 4))
    return maps, torch.rand(n, generator=gen), gts, labels


def _feed(metric: DetectionMetric, data, start: int, stop: int) -> DetectionMetric:
    """Images ``start:stop`` of ``data``; a mass of an image whose index is a multiple of 4 is BI-RADS 5, the
    others BI-RADS 4."""
    maps, probs, gts, labels = data
    birads = [[5 if i % 4 == 0 else 4] * len(gts[i]) for i in range(start, stop)]
    metric.update(maps[start:stop], probs[start:stop], gts[start:stop], labels[start:stop], (32, 24),
                  gt_categories=birads)  # fmt: skip
    return metric


def _birads5(result: DetectionResult) -> tuple[torch.Tensor, torch.Tensor]:
    """The FROC curve (fppi, tpr) of the BI-RADS 5 masses alone (``restrict_lesions``)."""
    assert result.gt_category is not None
    part = restrict_lesions(result, result.gt_category == 5, 1.0).per_threshold[0]
    return part.fppi_curve, part.tpr_curve


def _assert_same(a: DetectionResult, b: DetectionResult) -> None:
    assert (a.num_gt, a.num_images) == (b.num_gt, b.num_images)
    for x, y in zip(a.per_threshold, b.per_threshold, strict=True):
        assert torch.equal(x.fppi_curve, y.fppi_curve) and torch.equal(x.tpr_curve, y.tpr_curve)
        assert torch.equal(x.tpr_at_fppi, y.tpr_at_fppi) and (x.tpr, x.fppi) == (y.tpr, y.fppi)


def test_merged_halves_equal_one_metric():
    data = _random_data(12)
    full = _feed(DetectionMetric(thresholds=(0.4, 0.6)), data, 0, 12).compute()
    assert 0 < full.per_threshold[0].tpr < 1 and full.num_gt == 6  # hits and misses: a non-trivial comparison
    first = _feed(DetectionMetric(thresholds=(0.4, 0.6)), data, 0, 5)
    second = _feed(_feed(DetectionMetric(thresholds=(0.4, 0.6)), data, 5, 9), data, 9, 12)
    first.merge_state(second)
    merged = first.compute()
    _assert_same(merged, full)
    assert torch.equal(torch.stack(_birads5(merged)), torch.stack(_birads5(full)))


def _feed_normals(metric: NormalImageRatings, data, images: list[int]) -> NormalImageRatings:
    """The normal images among ``images`` of ``data`` (named ``image<i>``) into ``metric``, in 32 x 24 frames."""
    maps, probs, _, labels = data
    metric.update(maps[images], probs[images], labels[images] == 0, (32, 24), [f"image{i}" for i in images])
    return metric


def _ddp_worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        data = _random_data(12)
        metric = DetectionMetric(thresholds=(0.4, 0.6), pointing_tolerance=0.0)  # a 32 x 24 frame: no tolerance
        if rank == 0:
            _feed(_feed(metric, data, 0, 4), data, 4, 7)
        else:
            _feed(metric, data, 7, 12)
        result = metric.compute()
        # validation's normal images, 7 samples on one rank and 6 on the other, image 1 again as padding would
        normals = _feed_normals(NormalImageRatings((0.4, 0.6)), data, [0, 1, 2, 3, 4, 5, 6] if rank == 0 else
                                [7, 8, 9, 10, 11, 1])  # fmt: skip
        normal_ratings = normals.compute()
        if rank == 0:
            curves = [(r.fppi_curve, r.tpr_curve, torch.tensor([r.tpr, r.fppi])) for r in result.per_threshold]
            torch.save({"curves": curves, "n": result.num_images, "gt": result.num_gt, "birads5": _birads5(result),
                        "pointing": result.pointing, "energy": result.energy, "normal_ratings": normal_ratings},
                       out_file)  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_real_two_process_gloo_sync_equals_single_process(tmp_path):
    out_file = str(tmp_path / "rank0.pt")
    # spawn (not fork: a forked child can deadlock on the parent's thread pools); ~15 s on 2 busy cores.
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), out_file), nprocs=2, join=True)
    synced = torch.load(out_file, weights_only=True)
    full = _feed(DetectionMetric(thresholds=(0.4, 0.6), pointing_tolerance=0.0), _random_data(12), 0, 12).compute()
    assert (synced["n"], synced["gt"]) == (12, 6)
    fppi5, tpr5 = _birads5(full)
    assert 0 < float(tpr5.max()) < 1  # BI-RADS 5 masses (images 0, 4, 8) found and missed: which box found which lesion
    assert torch.equal(synced["birads5"][0], fppi5) and torch.equal(synced["birads5"][1], tpr5)  # crossed ranks
    assert full.pointing is not None and full.energy is not None
    pointed = ~torch.isnan(full.pointing)
    assert int(pointed.sum()) == 6 and 0 < float(full.pointing[pointed].mean()) < 1  # hits and misses

    def by_energy(result: dict) -> torch.Tensor:  # the ranks' images come interleaved: pair each hit with its energy
        pairs = torch.stack([result["energy"], result["pointing"]], 1)[~torch.isnan(result["energy"])]
        return pairs[torch.argsort(pairs[:, 0])]

    assert torch.equal(by_energy(synced), by_energy({"energy": full.energy, "pointing": full.pointing}))
    alone = _feed_normals(NormalImageRatings((0.4, 0.6)), _random_data(12), list(range(12))).compute()
    assert alone.shape == (6, 2) and torch.isfinite(alone).all()  # every normal image once, rated at both thresholds
    synced_rows, alone_rows = (sorted(map(tuple, r.tolist())) for r in (synced["normal_ratings"], alone))
    assert synced_rows == alone_rows
    for (fppi, tpr, point), reference in zip(synced["curves"], full.per_threshold, strict=True):
        assert torch.equal(fppi, reference.fppi_curve) and torch.equal(tpr, reference.tpr_curve)
        assert point.tolist() == pytest.approx([reference.tpr, reference.fppi])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="gt_boxes"):
        DetectionMetric().update(torch.zeros(2, 4, 4), torch.ones(2), [torch.zeros(0, 4)], torch.zeros(2), (4, 4))
    with pytest.raises(ValueError, match="thresholds"):
        DetectionMetric(thresholds=())


def test_an_image_seen_twice_counts_once_with_its_id():
    """DDP padding and ``selection: paper`` repeat samples; keyed by image_id the figures are the distinct images'."""
    data = _random_data(6)
    ids = [f"img{i}" for i in range(6)]
    once = DetectionMetric(thresholds=(0.4, 0.6))
    once.update(*data, (32, 24), image_ids=ids)
    twice = DetectionMetric(thresholds=(0.4, 0.6))
    twice.update(*data, (32, 24), image_ids=ids)
    maps, probs, gts, labels = data
    twice.update(maps[:2], probs[:2], gts[:2], labels[:2], (32, 24), image_ids=ids[:2])  # the padding repeats
    result, reference = twice.compute(), once.compute()
    assert reference.num_gt == 3 and result.num_samples == 8 and reference.num_samples == 6
    _assert_same(result, reference)
    assert torch.equal(result.image_gt, reference.image_gt)
    torch.testing.assert_close(result.pointing, reference.pointing, equal_nan=True)  # each image scored once
    torch.testing.assert_close(result.energy, reference.energy, equal_nan=True)
    unkeyed = DetectionMetric(thresholds=(0.4, 0.6))
    unkeyed.update(*data, (32, 24))
    unkeyed.update(maps[:2], probs[:2], gts[:2], labels[:2], (32, 24))
    assert unkeyed.compute().num_gt == 4  # without ids the repeat counts again (what the callback did before)


def test_intervals_do_not_depend_on_the_order_the_images_come_in() -> None:
    """Under DDP the gathered images are interleaved by rank: the same images in another order (one GPU vs two) must
    give the same intervals, not only the same figures."""
    from wsod_mammo.detection.bootstrap import detection_intervals
    from wsod_mammo.detection.compare import paired_bootstrap
    from wsod_mammo.detection.image_keys import image_keys
    from wsod_mammo.training.table2_report import _image_records

    generator = torch.Generator().manual_seed(0)
    labels = (torch.arange(24) % 2 == 0).long()
    maps = 0.1 * torch.rand(24, *SIZE, generator=generator)
    found = torch.rand(24, generator=generator) < 0.6  # the mass is found in about 60% of the mass images
    maps[labels.bool() & found, 2:9, 2:9] = 1.0
    maps[torch.rand(24, generator=generator) < 0.4, 12:16, 12:16] = 0.8  # a false positive in about 40% of images
    gt = [torch.tensor([[2.0, 2.0, 9.0, 9.0]]) if label else torch.zeros(0, 4) for label in labels]
    probs, ids = 0.5 + 0.5 * torch.rand(24, generator=generator), [f"img{i}" for i in range(24)]
    order = torch.randperm(24, generator=generator).tolist()
    study_keys = image_keys([f"study{i // 4}" for i in range(24)]).tolist()
    studies = dict(zip(image_keys(ids).tolist(), study_keys, strict=True))
    figures, by_study = [], []
    for perm in (list(range(24)), order):
        metric = DetectionMetric(thresholds=(0.5,), operating_fppi=1.0)  # as the DetectionMetrics callback makes it
        metric.update(maps[perm], probs[perm], [gt[i] for i in perm], labels[perm], SIZE, [ids[i] for i in perm])
        figures.append(detection_intervals(result := metric.compute(), 1.0, seed=7))
        by_study.append(detection_intervals(result, 1.0, seed=7, groups=studies))
    assert figures[0] == figures[1] and figures[0]["tpr"]["low"] < figures[0]["tpr"]["high"]
    assert by_study[0] == by_study[1] and by_study[0] != figures[0]  # whole studies drawn: other resamples
    # `wsod report --compare` redraws from detection_images.json, with the seed the test report used: its interval
    # for a method is the one the method's own report gave, image by image and study by study
    records = json.loads(json.dumps(_image_records(result)))
    assert paired_bootstrap(records, records, 1.0, seed=7)["a"] == pytest.approx(figures[1]["tpr"])
    records = json.loads(json.dumps(_image_records(result, studies)))
    assert paired_bootstrap(records, records, 1.0, seed=7)["a"] == pytest.approx(by_study[1]["tpr"])


def _callback_batch() -> tuple[dict, dict]:
    """A mass image (its mass at 0.5 of its map's peak, a distractor at the peak) and a normal image with three bright
    blobs, 12 x 10 maps on 12 x 10 images (no resampling); y_fusion 1, y_global 0.25."""
    maps = torch.zeros(2, 1, 12, 10)
    maps[0, 0, 6:9, 4:7] = 0.5  # the mass: found at threshold 0.3, not at 0.7
    maps[0, 0, 0:2, 0:2] = 1.0  # a false positive above it
    for row, value in ((0, 1.0), (4, 0.9), (8, 0.8)):
        maps[1, 0, row : row + 2, 7:9] = value
    no_box = torch.zeros(0, dtype=torch.long)
    batch = {"image": torch.zeros(2, 1, 12, 10), "label": torch.tensor([[1.0], [0.0]]), "image_id": ["mass", "normal"],
             "boxes": [torch.tensor([[4.0, 6.0, 7.0, 9.0]]), torch.zeros(0, 4)],
             "box_labels": [torch.zeros(1, dtype=torch.long), no_box], "meta": [{}, {}]}  # fmt: skip
    outputs = {"maps": {"cam": maps}, "y_fusion": torch.ones(2, 1), "y_global": torch.full((2, 1), 0.25)}
    return outputs, batch


def test_the_callback_validates_on_mass_images_and_tests_at_the_validated_threshold() -> None:
    """Validation picks the threshold on the population Table II reports (mass images): counting the normal image's
    three false positives would make both thresholds miss at FPPI 1 and keep the first (0.7), which finds no mass.
    Boxes are scored by the fusion head's probability, as predict scores them."""
    from types import SimpleNamespace

    from wsod_mammo.training.callbacks import DetectionMetrics

    logged = {}
    module = SimpleNamespace(detection_thresholds={}, tied_thresholds=set(), device=torch.device("cpu"),
                             test_saliency=["cam"],
                             log=lambda name, value, **_: logged.__setitem__(name, value))  # fmt: skip
    trainer = SimpleNamespace(sanity_checking=False)
    callback = DetectionMetrics(methods=["cam"], thresholds=[0.7, 0.3], fppi_budget=1.0)
    outputs, batch = _callback_batch()
    callback.on_validation_epoch_start(trainer, module)
    callback.on_validation_batch_end(trainer, module, outputs, batch, 0)
    callback.on_validation_epoch_end(trainer, module)
    assert module.detection_thresholds == {"cam": 0.3} and logged["val/detection/cam/tpr@fppi1"] == 1.0
    assert module.tied_thresholds == set()  # a choice, not a tie
    callback.on_test_epoch_start(trainer, module)
    callback.on_test_batch_end(trainer, module, outputs, batch, 0)
    result = callback._metrics["cam", "mass"].compute().per_threshold[0]
    assert result.threshold == 0.3 and result.tpr == 1.0
    assert sorted(result.box_scores.tolist()) == [0.5, 1.0]  # peak x y_fusion (x y_global would give 0.125, 0.25)


def test_validation_leaves_the_pointing_game_per_kind_to_the_test() -> None:
    """The per-kind rows are the test report's: validation, which logs none of them, does not score them."""
    from types import SimpleNamespace

    from wsod_mammo.training.callbacks import DetectionMetrics

    module = SimpleNamespace(detection_thresholds={}, tied_thresholds=set(), device=torch.device("cpu"),
                             test_saliency=["cam"], log=lambda *_, **__: None)  # fmt: skip
    trainer = SimpleNamespace(sanity_checking=False)
    callback = DetectionMetrics(methods=["cam"], thresholds=[0.7, 0.3], fppi_budget=1.0)
    outputs, batch = _callback_batch()
    batch["meta"] = [{"box_birads": [4], "box_size_mm": [12.0]}, {"box_birads": [], "box_size_mm": []}]
    callback.on_validation_epoch_start(trainer, module)
    callback.on_validation_batch_end(trainer, module, outputs, batch, 0)
    assert callback._metrics["cam", "mass"].compute().kind_pointing is None
    callback.on_validation_epoch_end(trainer, module)
    callback.on_test_epoch_start(trainer, module)
    callback.on_test_batch_end(trainer, module, outputs, batch, 0)
    kinds = callback._metrics["cam", "mass"].compute().kind_pointing
    assert kinds is not None and kinds.image.tolist() == [0, 0]  # the mass image: its BI-RADS and its size


def _random_batches(seed: int) -> list[tuple[dict, dict]]:
    """Three batches of 6 images of 40 x 30 pixels, their maps 20 x 15 (upsampled: a pixel's value is never a
    cell's, so the highest one lies below the normalized map's 1.0): masses under blobs of random strength beside
    distractors, normal images with blobs of their own, random fusion probabilities; the last batch repeats two
    images of the first, as DDP padding and ``selection: paper`` do."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for b in range(3):
        maps = F.avg_pool2d(torch.rand(6, 1, 20, 15, generator=gen), 3, 1, 1)
        boxes, ids = [], []
        for i in range(6):
            ids.append(f"b{b}i{i}")
            if i % 2 == 0:  # a mass image: one or two masses
                found = []
                for _ in range(1 + i // 4):
                    y, x = (int(v) for v in torch.randint(1, 12, (2,), generator=gen))
                    maps[i, 0, y : y + 3, x : x + 3] += 0.6 * torch.rand(1, generator=gen)
                    found.append([2 * x, 2 * y, 2 * x + 6, 2 * y + 6])
                boxes.append(torch.tensor(found, dtype=torch.float32))
            else:
                boxes.append(torch.zeros(0, 4))
        if b == 2:  # two images of the first batch again
            first_outputs, first_batch = batches[0]
            maps[:2], boxes[:2], ids[:2] = (
                first_outputs["maps"]["cam"][:2],
                first_batch["boxes"][:2],
                ["b0i0", "b0i1"],
            )
        labels = torch.tensor([[float(len(box) > 0)] for box in boxes])
        fusion = torch.rand(6, 1, generator=gen)
        if b == 2:
            fusion[:2] = first_outputs["y_fusion"][:2]
        kinds = [torch.zeros(len(box), dtype=torch.long) for box in boxes]
        batch = {"image": torch.zeros(6, 1, 40, 30), "label": labels, "image_id": ids, "boxes": boxes,
                 "box_labels": kinds, "meta": [{}] * 6}  # fmt: skip
        batches.append(({"maps": {"cam": maps}, "y_fusion": fusion, "y_global": fusion}, batch))
    return batches


@pytest.mark.parametrize("seed", range(3))
def test_validation_logs_the_figures_of_merit_the_test_gives_at_its_threshold(seed: int) -> None:
    """Validation rates its normal images without making their boxes (``NormalImageRatings``) and its masses from
    the threshold-choosing metric of the mass images: its wAFROC and AFROC are those a test over the same images at
    the chosen threshold computes from every box, each image counted once."""
    from types import SimpleNamespace

    from wsod_mammo.detection.afroc import figures_of_merit
    from wsod_mammo.detection.afroc_report import result_ratings
    from wsod_mammo.training.callbacks import DetectionMetrics

    logged: dict[str, float] = {}
    module = SimpleNamespace(detection_thresholds={}, tied_thresholds=set(), device=torch.device("cpu"),
                             test_saliency=["cam"],
                             log=lambda name, value, **_: logged.__setitem__(name, value))  # fmt: skip
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=0)
    callback = DetectionMetrics(methods=["cam"], thresholds=[0.9999, 0.5, 0.3], fppi_budget=2.0)  # none at 0.9999
    batches = _random_batches(seed)
    callback.on_validation_epoch_start(trainer, module)
    for outputs, batch in batches:
        callback.on_validation_batch_end(trainer, module, outputs, batch, 0)
    callback.on_validation_epoch_end(trainer, module)
    every_box = DetectionMetric(thresholds=(module.detection_thresholds["cam"],), operating_fppi=2.0)
    for outputs, batch in batches:
        every_box.update(outputs["maps"]["cam"][:, 0], outputs["y_fusion"][:, 0], batch["boxes"], batch["label"][:, 0],
                         (40, 30), batch["image_id"])  # fmt: skip
    rated = result_ratings(every_box.compute())
    assert rated is not None and rated.normal.numel() == 8 and rated.lesion_image.numel() >= 9
    expected = figures_of_merit(rated)
    for name in ("wafroc", "afroc"):
        assert logged[f"val/{name}/cam"] == pytest.approx(float(expected[name][0]), abs=1e-12)
    assert 0.0 < logged["val/wafroc/cam"] < 1.0  # neither every mass above every normal image nor the reverse


def test_validation_without_normal_images_logs_its_figures_of_merit_as_nan() -> None:
    """As an undefined AUROC: a BestCheckpoint or a schedule watching val/wafroc/<method> finds the key (a NaN is the
    worst score) instead of stopping the fit with Lightning's missing-monitor error."""
    from types import SimpleNamespace

    from wsod_mammo.training.callbacks import DetectionMetrics

    logged: dict[str, float] = {}
    module = SimpleNamespace(detection_thresholds={}, tied_thresholds=set(), device=torch.device("cpu"),
                             test_saliency=["cam"],
                             log=lambda name, value, **_: logged.__setitem__(name, value))  # fmt: skip
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=0)
    callback = DetectionMetrics(methods=["cam"], thresholds=[0.7, 0.3], fppi_budget=1.0)
    outputs, batch = _callback_batch()
    outputs = {"maps": {"cam": outputs["maps"]["cam"][:1]}, "y_fusion": outputs["y_fusion"][:1]}
    batch = {**{k: v[:1] for k, v in batch.items()}}  # the mass image alone
    callback.on_validation_epoch_start(trainer, module)
    callback.on_validation_batch_end(trainer, module, outputs, batch, 0)
    callback.on_validation_epoch_end(trainer, module)
    assert logged["val/detection/cam/tpr@fppi1"] == 1.0
    assert math.isnan(logged["val/wafroc/cam"]) and math.isnan(logged["val/afroc/cam"])


def test_validation_with_no_mass_in_view_keeps_the_threshold_and_the_test_counts_the_mass_missed() -> None:
    """A mass the frame leaves out is ground truth no box can match: validation had TPR 0 at every threshold and
    marked the first one validated, with nothing to choose by; the test counts the mass, as a miss."""
    from types import SimpleNamespace

    from wsod_mammo.training.callbacks import DetectionMetrics

    module = SimpleNamespace(detection_thresholds={}, device=torch.device("cpu"), test_saliency=["cam"],
                             log=lambda *_, **__: None)  # fmt: skip
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True)
    callback = DetectionMetrics(methods=["cam"], thresholds=[0.7, 0.3], fppi_budget=1.0)
    outputs, batch = _callback_batch()
    batch |= {"boxes": [torch.zeros(0, 4)] * 2, "box_labels": [torch.zeros(0, dtype=torch.long)] * 2,
              "meta": [{"out_of_frame": [0]}, {}]}  # fmt: skip
    callback.on_validation_epoch_start(trainer, module)
    callback.on_validation_batch_end(trainer, module, outputs, batch, 0)
    callback.on_validation_epoch_end(trainer, module)
    assert module.detection_thresholds == {}
    callback.on_test_epoch_start(trainer, module)
    callback.on_test_batch_end(trainer, module, outputs, batch, 0)
    result = callback._metrics["cam", "mass"].compute()
    assert (result.num_gt, result.num_gt_in_view, result.per_threshold[0].tpr) == (1, 0, 0.0)


def test_the_callback_gives_each_mass_its_finding_birads_and_size_in_view_then_out_of_frame() -> None:
    """``target_findings`` keeps the class's boxes' BI-RADS (and sizes) in ``class_targets``' order, then the
    out-of-frame ones; a batch whose boxes no longer match its meta (a transform dropped one) is refused naming the
    image."""
    from wsod_mammo.training.batch_targets import target_findings, target_sizes

    batch = {
        "box_labels": [torch.tensor([0, 1, 0]), torch.zeros(0, dtype=torch.long)],
        "image_id": ["a", "b"],
        "meta": [{"box_birads": [5, 4, 3], "out_of_frame": [1, 0], "out_of_frame_birads": [4, 0],
                  "box_size_mm": [12.5, 30.0, None], "out_of_frame_size_mm": [8.0, 9.0]},
                 {"box_birads": [], "out_of_frame": [], "out_of_frame_birads": [], "box_size_mm": [],
                  "out_of_frame_size_mm": []}],
    }  # fmt: skip
    assert target_findings(batch, 0, "birads") == [[5, 3, 0], []]
    assert target_findings(batch, 1, "birads") == [[4, 4], []]
    sizes = target_sizes(batch, 0)
    assert sizes is not None and sizes[0][0] == 12.5 and math.isnan(sizes[0][1]) and sizes[0][2:] == [9.0]
    assert target_findings(batch | {"meta": [{}, {}]}, 0, "birads") is None  # data without BI-RADS: all unknown
    assert target_sizes(batch | {"meta": [{}, {}]}, 0) is None
    batch["box_labels"][0] = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"a: 2 boxes reach the metric but meta\['box_birads'\] has 3"):
        target_findings(batch, 0, "birads")
