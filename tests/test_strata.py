"""A subset's detection figures from the whole set's result equal the metric computed on the subset alone."""

from __future__ import annotations

import math

import pytest
import torch

from wsod_mammo.detection.image_keys import image_keys
from wsod_mammo.detection.metrics import DetectionMetric
from wsod_mammo.detection.strata import UNKNOWN, restrict, restrict_lesions, strata_of

SIZE = (24, 24)
BUDGET = 1.0


def _images(seed: int, count: int) -> list[tuple[str, torch.Tensor, float, torch.Tensor, int]]:
    """``count`` images (id, map, probability, gt boxes, label): masses with a blob on them or beside them, normals
    with blobs of their own, at random brightness."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for i in range(count):
        heat = torch.zeros(*SIZE)
        label = i % 3 != 2
        gt = torch.zeros(0, 4)
        if label:
            y, x = (int(v) for v in torch.randint(2, 14, (2,), generator=generator))
            gt = torch.tensor([[x, y, x + 6, y + 6]], dtype=torch.float32)
            shift = int(torch.randint(0, 2, (1,), generator=generator)) * 8  # on the mass, or off it: a miss
            heat[y + shift : y + shift + 5, x : x + 5] = float(torch.rand(1, generator=generator)) * 0.5 + 0.5
        for _ in range(int(torch.randint(0, 3, (1,), generator=generator))):  # false positives
            y, x = (int(v) for v in torch.randint(0, 20, (2,), generator=generator))
            heat[y : y + 3, x : x + 3] = torch.maximum(heat[y : y + 3, x : x + 3], torch.rand(1, generator=generator))
        images.append((f"image{i}", heat, float(torch.rand(1, generator=generator)), gt, int(label)))
    return images


def _result(images: list, positives_only: bool = False):
    metric = DetectionMetric(thresholds=(0.5,), positives_only=positives_only, operating_fppi=BUDGET)
    ids, maps, probabilities, gt, labels = zip(*images, strict=True)
    metric.update(torch.stack(maps), torch.tensor(probabilities), list(gt), torch.tensor(labels), SIZE, list(ids))
    return metric.compute()


@pytest.mark.parametrize("positives_only", [False, True])
def test_a_subset_of_the_images_gives_the_figures_of_the_metric_on_that_subset(positives_only: bool) -> None:
    images = _images(seed=0, count=30)
    whole = _result(images, positives_only)
    subset = {f"image{i}" for i in range(30) if i % 4 in (0, 3)}
    alone = _result([image for image in images if image[0] in subset], positives_only)
    keep = torch.tensor([k in image_keys(sorted(subset)).tolist() for k in whole.image_keys.tolist()])
    part = restrict(whole, keep, BUDGET)
    assert (part.num_images, part.num_gt) == (alone.num_images, alone.num_gt) and part.num_gt > 0
    assert sorted(part.image_keys.tolist()) == sorted(alone.image_keys.tolist())
    got, expected = part.per_threshold[0], alone.per_threshold[0]
    for name in ("fppi_curve", "tpr_curve", "score_thresholds", "tpr_at_fppi"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
    assert (got.tpr, got.fppi) == (expected.tpr, expected.fppi)
    # each box still points at its own image: the per-image hits the bootstrap reweighs are the subset's own
    per_image = {k: float(got.box_tp[got.box_image == i].sum()) for i, k in enumerate(part.image_keys.tolist())}
    expected_hits = alone.per_threshold[0]
    assert per_image == {
        k: float(expected_hits.box_tp[expected_hits.box_image == i].sum())
        for i, k in enumerate(alone.image_keys.tolist())
    }
    assert torch.equal(restrict(whole, torch.ones(whole.num_images, dtype=torch.bool), BUDGET).image_gt, whole.image_gt)


def test_strata_are_sorted_with_unknown_last_and_cover_every_image() -> None:
    keys = image_keys(["a", "b", "c", "d", "e"])
    labels = dict(zip(keys.tolist()[:4], ["DENSITY C", "DENSITY A", "", "DENSITY C"], strict=True))  # "e" has none
    strata = strata_of(keys, labels)
    assert list(strata) == ["DENSITY A", "DENSITY C", UNKNOWN]
    assert [m.tolist() for m in strata.values()] == [
        [False, True, False, False, False],
        [True, False, False, True, False],
        [False, False, True, False, True],
    ]


def test_a_flag_per_image_is_required() -> None:
    whole = _result(_images(seed=1, count=6))
    with pytest.raises(ValueError, match="expected 6 flags"):
        restrict(whole, torch.ones(5, dtype=torch.bool), BUDGET)


CELL = 10  # lesion-stratum images: a 4 x 4 grid of cells, each empty or holding one blob or one mass
GRID = (4 * CELL, 4 * CELL)


def _lesion_images(seed: int, count: int) -> list[dict]:
    """Images whose every blob either covers one mass exactly or lies in a cell of its own (a false positive), plus
    a peak pixel in cell 0 that fixes each map's normalization (erasing a blob changes no other box's score).
    Masses carry a BI-RADS (3, 4, 5); some are found (a blob on them), some not, some out of frame (unseen)."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for i in range(count):
        heat = torch.zeros(*GRID)
        heat[0, 0] = 1.0
        boxes, birads, found = [], [], []
        cells = (torch.randperm(15, generator=generator) + 1).tolist()
        for cell in cells[: int(torch.randint(0, 4, (1,), generator=generator))]:
            y, x = (cell // 4) * CELL + 2, (cell % 4) * CELL + 2
            boxes.append([x, y, x + 6, y + 6])
            birads.append(int(torch.randint(3, 6, (1,), generator=generator)))
            found.append(bool(torch.rand(1, generator=generator) < 0.6))
            if found[-1]:
                heat[y : y + 6, x : x + 6] = float(torch.rand(1, generator=generator)) * 0.4 + 0.55
        for cell in cells[8 : 8 + int(torch.randint(0, 3, (1,), generator=generator))]:  # false positives
            y, x = (cell // 4) * CELL + 3, (cell % 4) * CELL + 3
            heat[y : y + 4, x : x + 4] = float(torch.rand(1, generator=generator)) * 0.4 + 0.55
        unseen = [int(torch.randint(3, 6, (1,), generator=generator)) for _ in range(int(i % 5 == 0))]
        images.append({"id": f"image{i}", "map": heat, "p": float(torch.rand(1, generator=generator)) * 0.5 + 0.5,
                       "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "birads": birads,
                       "found": found, "unseen": unseen})  # fmt: skip
    return images


def _lesion_result(images: list[dict], categories: bool = True):
    metric = DetectionMetric(thresholds=(0.5,), operating_fppi=BUDGET)
    metric.update(torch.stack([im["map"] for im in images]), torch.tensor([im["p"] for im in images]),
                  [im["boxes"] for im in images], torch.ones(len(images)), GRID, [im["id"] for im in images],
                  unseen_gt=[len(im["unseen"]) for im in images],
                  gt_categories=[im["birads"] + im["unseen"] for im in images] if categories else None)  # fmt: skip
    return metric.compute()


def _only(images: list[dict], birads: int) -> list[dict]:
    """The images with only the masses of ``birads``: the others' boxes gone and the blobs that found them erased."""
    kept = []
    for im in images:
        heat = im["map"].clone()
        for box, value, found in zip(im["boxes"].tolist(), im["birads"], im["found"], strict=True):
            if value != birads and found:
                x0, y0, x1, y1 = (int(v) for v in box)
                heat[y0:y1, x0:x1] = 0
        mine = [k for k, value in enumerate(im["birads"]) if value == birads]
        unseen = [u for u in im["unseen"] if u == birads]
        kept.append(im | {"map": heat, "boxes": im["boxes"][mine], "birads": [birads] * len(mine),
                          "found": [im["found"][k] for k in mine], "unseen": unseen})  # fmt: skip
    return kept


def test_a_lesion_stratum_gives_the_figures_of_its_masses_alone_with_every_false_positive() -> None:
    """Per BI-RADS: TPR over that stratum's masses (out of frame ones missed), FPPI over every image's false
    positives, and a box that found a mass of another stratum counted neither way: the figures of the same images
    with the other masses and the boxes on them taken away."""
    images = _lesion_images(seed=3, count=40)
    whole = _lesion_result(images)
    assert whole.gt_category is not None and sorted(set(whole.gt_category.tolist())) == [3, 4, 5]
    for birads in (3, 4, 5):
        part = restrict_lesions(whole, whole.gt_category == birads, BUDGET)
        alone = _lesion_result(_only(images, birads))
        assert part.num_gt == alone.num_gt > 0 and part.num_images == alone.num_images == 40
        assert torch.equal(part.image_gt, alone.image_gt)
        got, expected = part.per_threshold[0], alone.per_threshold[0]
        assert 0 < got.tpr < 1  # hits and misses in every stratum: a comparison that can fail
        for name in ("fppi_curve", "tpr_curve", "score_thresholds", "tpr_at_fppi"):
            assert torch.equal(getattr(got, name), getattr(expected, name)), (birads, name)
        assert (got.tpr, got.fppi) == (expected.tpr, expected.fppi)
    found = [(im["id"], v) for im in images for v, f in zip(im["birads"], im["found"], strict=True) if f]
    hits = whole.per_threshold[0].box_tp.sum()
    assert int(hits) == len(found)  # every blob on a mass found it: the strata's hits add up to the whole's


def test_lesion_strata_survive_restricting_the_images_and_need_the_matches() -> None:
    images = _lesion_images(seed=4, count=30)
    whole = _lesion_result(images)
    half = torch.arange(30) % 2 == 0
    subset = restrict(whole, half, BUDGET)
    alone = _lesion_result([im for k, im in enumerate(images) if k % 2 == 0])
    for birads in (3, 5):
        got = restrict_lesions(subset, subset.gt_category == birads, BUDGET).per_threshold[0]
        expected = restrict_lesions(alone, alone.gt_category == birads, BUDGET).per_threshold[0]
        assert torch.equal(got.tpr_curve, expected.tpr_curve) and torch.equal(got.fppi_curve, expected.fppi_curve)
    with pytest.raises(ValueError, match="one per ground-truth box"):
        restrict_lesions(whole, torch.ones(3, dtype=torch.bool), BUDGET)
    unknown = _lesion_result(images, categories=False)
    assert unknown.gt_category is not None and set(unknown.gt_category.tolist()) == {0}


def test_a_category_per_ground_truth_box_is_required() -> None:
    images = _lesion_images(seed=5, count=4)
    wrong = [im["birads"] for im in images]  # the unseen masses left out
    metric = DetectionMetric(thresholds=(0.5,))
    first = images[0]
    total, given = len(first["birads"]) + len(first["unseen"]), len(first["birads"])
    assert total > given  # image0 has a mass out of frame
    with pytest.raises(ValueError, match=f"image0 has {total} ground-truth boxes .* but {given} gt_categories"):
        metric.update(torch.stack([im["map"] for im in images]), torch.ones(4), [im["boxes"] for im in images],
                      torch.ones(4), GRID, [im["id"] for im in images],
                      unseen_gt=[len(im["unseen"]) for im in images], gt_categories=wrong)  # fmt: skip


def test_table2_by_finding_birads_rows_each_kind_unknown_last_and_only_where_the_data_names_one() -> None:
    from wsod_mammo.detection.table2_strata import by_finding_birads, has_finding_birads

    images = _lesion_images(seed=6, count=30)
    images[1]["birads"] = [0] * len(images[1]["birads"])  # masses whose finding_birads cell is empty
    whole = _lesion_result(images)
    assert 0 in whole.gt_category.tolist()
    summary, markdown, csv = by_finding_birads({("cam", "mass"): whole, ("cam", "all"): whole}, BUDGET, seed=0)
    rows = summary["mass"]
    assert list(rows) == ["BI-RADS 3", "BI-RADS 4", "BI-RADS 5", UNKNOWN]
    assert sum(r["masses"] for r in rows.values()) == whole.num_gt
    for label, row in rows.items():
        category = int(label.split()[-1]) if label != UNKNOWN else 0
        part = restrict_lesions(whole, whole.gt_category == category, BUDGET).per_threshold[0]
        assert (row["cells"]["cam"]["tpr"], row["cells"]["cam"]["fppi"]) == (part.tpr, part.fppi)
        with_mass = {im["id"] for im in images if category in im["birads"] + im["unseen"]}
        assert row["images"] == len(with_mass)
    assert csv.splitlines()[0].startswith("subset,finding_birads,studies,images,masses,method")
    assert "| finding BI-RADS | studies | images | masses | cam |" in markdown
    assert has_finding_birads({("cam", "mass"): whole})
    assert not has_finding_birads({("cam", "mass"): _lesion_result(images, categories=False)})


def test_table2_by_mass_size_rows_the_masses_by_their_longer_side_in_order_unknown_last() -> None:
    from wsod_mammo.detection.mass_kinds import SIZE_LABELS, size_label
    from wsod_mammo.detection.table2_strata import by_mass_size, has_mass_sizes, why_no_sizes

    assert [size_label(v) for v in (9.99, 10.0, 19.9, 20.0, math.nan)] == [*SIZE_LABELS[:2], *SIZE_LABELS[1:], UNKNOWN]
    images = _lesion_images(seed=7, count=30)
    sizes = {}
    for k, im in enumerate(images):  # each mass a size of its own; image 2's from a DICOM without a spacing
        count = len(im["birads"]) + len(im["unseen"])
        sizes[im["id"]] = [math.nan] * count if k == 2 else [5.0 + 7.0 * ((k + j) % 4) for j in range(count)]
    metric = DetectionMetric(thresholds=(0.5,), operating_fppi=BUDGET)
    metric.update(torch.stack([im["map"] for im in images]), torch.tensor([im["p"] for im in images]),
                  [im["boxes"] for im in images], torch.ones(30), GRID, [im["id"] for im in images],
                  unseen_gt=[len(im["unseen"]) for im in images],
                  gt_sizes=[sizes[im["id"]] for im in images])  # fmt: skip
    whole = metric.compute()
    assert has_mass_sizes({("cam", "mass"): whole}) and not has_mass_sizes({("cam", "mass"): _lesion_result(images)})
    summary, markdown, csv = by_mass_size({("cam", "mass"): whole}, BUDGET, seed=0)
    rows = summary["mass"]
    assert list(rows) == [*SIZE_LABELS, UNKNOWN]  # in size order, not the labels' alphabetical one
    every = [v for values in sizes.values() for v in values]
    for label, row in rows.items():
        assert row["masses"] == sum(size_label(v) == label for v in every), label
        assert row["images"] == sum(any(size_label(v) == label for v in values) for values in sizes.values())
    assert "Size: the box's longer side" in markdown and csv.startswith("subset,mass_size,studies,images,masses")
    unsized = _lesion_result(images)  # no spacing anywhere: the table is left out, and the report says why
    assert why_no_sizes({("cam", "mass"): whole}) is None
    assert "prepare it again into a new cache_dir" in why_no_sizes({("cam", "mass"): unsized})


def _sized_result(images: list[dict]):
    """``_lesion_result`` with a size per mass: 6, 14 or 25 mm by its index (out-of-frame ones 8 mm)."""
    metric = DetectionMetric(thresholds=(0.5,), operating_fppi=BUDGET)
    sizes = [[(6.0, 14.0, 25.0)[j % 3] for j in range(len(im["birads"]))] + [8.0] * len(im["unseen"]) for im in images]
    metric.update(torch.stack([im["map"] for im in images]), torch.tensor([im["p"] for im in images]),
                  [im["boxes"] for im in images], torch.ones(len(images)), GRID, [im["id"] for im in images],
                  unseen_gt=[len(im["unseen"]) for im in images],
                  gt_categories=[im["birads"] + im["unseen"] for im in images], gt_sizes=sizes)  # fmt: skip
    return metric.compute()


def test_compare_counting_one_kind_of_mass_gives_that_rows_figures_and_names_what_it_cannot(tmp_path, capsys) -> None:
    """``wsod report --compare A B --masses 'BI-RADS 5'`` restricts both sides' recorded boxes as the report's table
    per BI-RADS does: A's and B's TPR are restrict_lesions' (computed apart, on tensors), over the same draws."""
    import json

    from wsod_mammo.detection.report_cli import main
    from wsod_mammo.training.table2_report import _image_records

    images = _lesion_images(seed=3, count=40)
    weaker = [im | {"map": im["map"].clone()} for im in images]
    for k, im in enumerate(weaker):  # B misses every other mass A finds
        for box, found in zip(im["boxes"].tolist(), im["found"], strict=True):
            if found and k % 2:
                x0, y0, x1, y1 = (int(v) for v in box)
                im["map"][y0:y1, x0:x1] = 0
    results = {"cam": _sized_result(images), "gradcam": _sized_result(weaker)}
    run = tmp_path / "run"
    run.mkdir()
    records = {"mass": {m: _image_records(r) for m, r in results.items()}}
    (run / "detection_images.json").write_text(json.dumps({"fppi_budget": BUDGET, "subsets": records}))
    (run / "table2_row.csv").write_text("train_method,cam,gradcam\ncam,0.50@0.50,0.33@0.67\n")
    for masses, rows in (("BI-RADS 5", lambda r: r.gt_category == 5), ("< 10 mm", lambda r: r.gt_size < 10)):
        main([str(run), "--compare", "cam", "gradcam", "--masses", masses])
        out = capsys.readouterr().out
        for side, method in (("A", "cam"), ("B", "gradcam")):
            part = restrict_lesions(results[method], rows(results[method]), BUDGET)
            assert f"{side} run:{method}: {part.per_threshold[0].tpr_within(BUDGET):.3f} [" in out, (masses, out)
        assert f"counting the {int(rows(results['cam']).sum())} masses of {masses}" in out
    with pytest.raises(ValueError, match=r"--masses: expected a row of Table II .* found 'BI-RADS five'"):
        main([str(run), "--compare", "cam", "gradcam", "--masses", "BI-RADS five"])
    with pytest.raises(ValueError, match="give --compare A B too"):
        main([str(run), "--masses", "BI-RADS 5"])
    for record in records["mass"].values():  # a report written before masses were recorded
        del record["box_gt"]
    (run / "detection_images.json").write_text(json.dumps({"fppi_budget": BUDGET, "subsets": records}))
    with pytest.raises(ValueError, match="run:cam's test report records no masses per box"):
        main([str(run), "--compare", "cam", "gradcam", "--masses", "BI-RADS 5"])
