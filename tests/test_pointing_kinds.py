"""The pointing game and energy per kind of mass (finding BI-RADS, size) and per breast density: the rows the metric
keeps per image and kind, and the test report's ``pointing_by_kind`` built from them."""

from __future__ import annotations

import json
import math

import pytest
import torch

from wsod_mammo.detection.metrics import DetectionMetric
from wsod_mammo.detection.pointing import pointing_and_energy
from wsod_mammo.detection.pointing_kinds import kind_of_code
from wsod_mammo.detection.pointing_report import figure_intervals
from wsod_mammo.detection.pointing_strata import pointing_by_kind, pointing_by_kind_text

SIZE = (40, 30)  # maps at the input size: each cell is a pixel


def _two_kinds() -> tuple[torch.Tensor, list[torch.Tensor], list[list[int]], list[list[float]]]:
    """Image 0: a BI-RADS 4 mass of 25 mm far from the peak and a BI-RADS 5 mass of 8 mm under it; image 1: one
    BI-RADS 4 mass of 12 mm under its peak; image 2: a BI-RADS 5 mass of 8 mm in view away from the peak and one
    out of frame (unseen: no kind row of its own)."""
    maps = torch.zeros(3, *SIZE)
    maps[0, 30:34, 20:24] = 1.0
    maps[0, 2:6, 2:6] = 0.4
    maps[1, 10:14, 10:14] = 1.0
    maps[2, 35:38, 2:5] = 1.0
    maps[2, 5:8, 20:23] = 0.2
    boxes = [
        torch.tensor([[2.0, 2.0, 6.0, 6.0], [20.0, 30.0, 24.0, 34.0]]),
        torch.tensor([[10.0, 10.0, 14.0, 14.0]]),
        torch.tensor([[20.0, 5.0, 23.0, 8.0]]),
    ]
    birads = [[4, 5], [4], [5, 5]]  # in-view boxes first, then the unseen one
    sizes = [[25.0, 8.0], [12.0], [8.0, 30.0]]
    return maps, boxes, birads, sizes


def _metric_result(repeat: bool = False):
    maps, boxes, birads, sizes = _two_kinds()
    metric = DetectionMetric(thresholds=(0.5,), pointing_tolerance=0.0)
    ids = ["a", "b", "c"]
    metric.update(maps, torch.ones(3), boxes, torch.ones(3), SIZE, ids, unseen_gt=[0, 0, 1], gt_categories=birads,
                  gt_sizes=sizes)  # fmt: skip
    if repeat:  # image a again, as DDP padding or selection: paper give it
        metric.update(maps[:1], torch.ones(1), boxes[:1], torch.ones(1), SIZE, ["a"], gt_categories=birads[:1],
                      gt_sizes=sizes[:1])  # fmt: skip
    return metric.compute()


def _rows(result) -> dict[tuple[int, str, str], tuple[float, float]]:
    rows = result.kind_pointing
    return {
        (int(image), *kind_of_code(int(code))): (float(hit), float(energy))
        for image, code, hit, energy in zip(rows.image, rows.code, rows.hit, rows.energy, strict=True)
    }


def test_an_image_is_scored_against_each_kind_of_its_masses_alone() -> None:
    """Image 0's peak is on its BI-RADS 5 mass: a hit among the BI-RADS 5 images and the < 10 mm ones, a miss among
    the BI-RADS 4 and >= 20 mm ones, each energy the share inside that kind's box; an image with one kind of mass
    keeps the whole game's figures; an unseen mass gives no row."""
    result = _metric_result()
    rows = _rows(result)
    maps, boxes, _, _ = _two_kinds()
    alone = {k: pointing_and_energy(maps[:1], [boxes[0][k : k + 1]], SIZE, tolerance=0.0) for k in (0, 1)}
    assert set(rows) == {(0, "birads", "BI-RADS 4"), (0, "birads", "BI-RADS 5"), (0, "size", ">= 20 mm"),
                         (0, "size", "< 10 mm"), (1, "birads", "BI-RADS 4"), (1, "size", "10-20 mm"),
                         (2, "birads", "BI-RADS 5"), (2, "size", "< 10 mm")}  # fmt: skip
    assert rows[0, "birads", "BI-RADS 5"][0] == 1.0 and rows[0, "birads", "BI-RADS 4"][0] == 0.0
    assert rows[0, "size", "< 10 mm"] == rows[0, "birads", "BI-RADS 5"]  # the same mass, the same figures
    for k, key in ((0, "BI-RADS 4"), (1, "BI-RADS 5")):
        assert rows[0, "birads", key][1] == pytest.approx(float(alone[k][1][0]), rel=1e-6)
    assert 0.0 < rows[0, "birads", "BI-RADS 4"][1] < rows[0, "birads", "BI-RADS 5"][1] < 1.0
    assert result.pointing is not None and result.energy is not None
    for image in (1, 2):  # one kind of mass in view: the whole game's figures
        assert rows[image, "birads", "BI-RADS 4" if image == 1 else "BI-RADS 5"] == (
            float(result.pointing[image]),
            float(result.energy[image]),
        )


def test_an_image_seen_twice_has_its_kind_rows_once() -> None:
    once, twice = _metric_result(), _metric_result(repeat=True)
    assert _rows(once) == _rows(twice) and twice.kind_pointing.image.numel() == 8


def test_without_birads_or_sizes_there_are_no_kind_rows() -> None:
    maps, boxes, _, _ = _two_kinds()
    metric = DetectionMetric(thresholds=(0.5,))
    metric.update(maps, torch.ones(3), boxes, torch.ones(3), SIZE, ["a", "b", "c"])
    assert metric.compute().kind_pointing is None


def test_the_report_gives_each_stratum_its_images_figures_and_their_interval() -> None:
    """Per finding BI-RADS the mean over its images' rows, with pointing_game.md's interval rule over those images;
    per density the images of that density; BI-RADS 4 then 5, sizes small to large."""
    result = _metric_result()
    keys = result.image_keys
    densities = {int(keys[0]): "DENSITY C", int(keys[1]): "DENSITY B", int(keys[2]): "DENSITY C"}
    summary = pointing_by_kind({"cam": result}, densities, seed=3)
    assert summary is not None and summary["tolerance_px"] == 0.0
    kinds = summary["kinds"]
    assert list(kinds["birads"]) == ["BI-RADS 4", "BI-RADS 5"] and list(kinds["size"]) == ["< 10 mm", "10-20 mm",
                                                                                               ">= 20 mm"]  # fmt: skip
    assert list(kinds["density"]) == ["DENSITY B", "DENSITY C"]
    birads5 = kinds["birads"]["BI-RADS 5"]
    assert birads5["images"] == 2 and birads5["methods"]["cam"]["hit"]["value"] == 0.5  # image 0 hits, image 2 not
    rows = result.kind_pointing
    five = torch.tensor([kind_of_code(int(c)) == ("birads", "BI-RADS 5") for c in rows.code])
    assert birads5["methods"]["cam"] == figure_intervals(rows.hit[five], rows.energy[five], keys[rows.image[five]], 3)
    dense = kinds["density"]["DENSITY C"]["methods"]["cam"]
    assert dense["hit"]["value"] == pytest.approx(float(result.pointing[[0, 2]].mean()))
    markdown, csv = pointing_by_kind_text(summary, "cam", "studies")
    assert "## finding BI-RADS: pointing game" in markdown and "## mass size: energy inside the masses" in markdown
    assert csv.splitlines()[0].startswith("kind,stratum,images,unscored,test_method,hit,hit_low")
    assert len(csv.splitlines()) == 1 + 2 + 3 + 2  # a row per stratum and method


def test_a_kind_whose_masses_are_all_unknown_is_left_out() -> None:
    maps, boxes, birads, _ = _two_kinds()
    metric = DetectionMetric(thresholds=(0.5,), pointing_tolerance=0.0)
    nan = [[math.nan] * len(b) for b in birads]  # no pixel spacing: no size
    metric.update(maps, torch.ones(3), boxes, torch.ones(3), SIZE, ["a", "b", "c"], unseen_gt=[0, 0, 1],
                  gt_categories=birads, gt_sizes=nan)  # fmt: skip
    summary = pointing_by_kind({"cam": metric.compute()}, None, seed=3)
    assert summary is not None and list(summary["kinds"]) == ["birads"]


def _figure(value: float) -> dict[str, float]:
    return {"value": value, "low": value - 0.1, "high": value + 0.1}


def _study_report(path, hits: dict[str, float]) -> None:
    """A test report as the study reads it: Table II cells, the pointing game and the pointing game per BI-RADS
    (``hits``: each test method's hit rate; its energy half of it)."""
    methods = {m: {"hit": _figure(h), "energy": _figure(h / 2)} for m, h in hits.items()}
    cells = {m: {"tpr": 0.5, "fppi": 0.25, "num_images": 4, "num_gt": 5} for m in hits}
    pointing = {"tolerance_px": 15.0, "images": 4, "unscored": 0, "methods": methods}
    by_kind = {"tolerance_px": 15.0, "kinds": {"birads": {"BI-RADS 4": {"images": 2, "unscored": 0,
                                                                       "methods": methods}}}}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"table1": {}, "mass": cells, "pointing_game": pointing, "pointing_by_kind": by_kind}))


def test_the_study_averages_each_stratums_figures_over_seeds_and_narrows_them_to_the_test_methods(tmp_path) -> None:
    """pointing_by_kind.md|csv of the study: per stratum a train x test table of each figure, the mean over seeds of
    the reports'; --test_methods keeps those columns; a run whose report has none leaves the table out."""
    from wsod_mammo.detection.study_report import write_study_outputs

    runs = {}
    for train in ("cam", "gradcam"):
        for seed in (1, 2):
            runs[(train, seed)] = tmp_path / f"{train}_seed{seed}" / "detection.json"
            _study_report(runs[(train, seed)], {"cam": 0.2 * seed, "gradcam": 0.5})
    text = write_study_outputs(tmp_path / "study", runs)
    assert "Pointing game per breast density, finding BI-RADS and mass size: pointing_by_kind.md" in text
    markdown = (tmp_path / "study" / "pointing_by_kind.md").read_text()
    assert "peaks within 15 px" in markdown
    section = markdown.split("## finding BI-RADS: BI-RADS 4\n\n### Pointing game\n\n")[1].split("\n\n")[0]
    (row,) = [line for line in section.splitlines() if line.startswith("| gradcam |")]
    assert row.split(" | ")[1].startswith("0.30 [")  # cam's maps: 0.2 and 0.4 over the two seeds
    rows = (tmp_path / "study" / "pointing_by_kind.csv").read_text().splitlines()
    assert rows[0] == "kind,stratum,train_method,test_method,figure,mean,low,high,runs,interval_over"
    (cell,) = [r for r in rows if r.startswith("birads,BI-RADS 4,gradcam,cam,energy,")]
    assert float(cell.split(",")[5]) == pytest.approx(0.15) and cell.endswith(",2,seeds")
    write_study_outputs(tmp_path / "narrow", runs, test_methods=["gradcam"])
    assert "| train \\ test | gradcam |" in (tmp_path / "narrow" / "pointing_by_kind.md").read_text()
    report = json.loads(runs[("cam", 2)].read_text())
    del report["pointing_by_kind"]  # a report written before the pointing game per kind
    runs[("cam", 2)].write_text(json.dumps(report))
    assert "pointing_by_kind" not in write_study_outputs(tmp_path / "study", runs)
    assert not (tmp_path / "study" / "pointing_by_kind.md").exists()
    assert not (tmp_path / "study" / "pointing_by_kind.csv").exists()


def test_compare_of_one_kind_of_mass_pairs_the_reports_pointing_by_kind(tmp_path, capsys) -> None:
    """``wsod report --compare A B --figure pointing --masses 'BI-RADS 5'``: each side's mean and interval are its
    pointing_by_kind.md row's (the images with such a mass, against those masses alone), the difference paired."""
    from test_afroc import _write_report

    from wsod_mammo.detection.report_cli import main

    maps, boxes, birads, sizes = _two_kinds()
    results = {}
    for method, shift in (("cam", 0), ("gradcam", 1)):  # gradcam's maps: image 2's peak on its mass
        moved = maps.clone()
        if shift:
            moved[2] = 0.0
            moved[2, 5:8, 20:23] = 1.0
        metric = DetectionMetric(thresholds=(0.5,), pointing_tolerance=0.0)
        metric.update(moved, torch.ones(3), boxes, torch.ones(3), SIZE, ["a", "b", "c"], unseen_gt=[0, 0, 1],
                      gt_categories=birads, gt_sizes=sizes)  # fmt: skip
        results[(method, "mass")] = results[(method, "all")] = metric.compute()
    _write_report(tmp_path / "run", results)
    rows = json.loads((tmp_path / "run" / "detection.json").read_text())["pointing_by_kind"]["kinds"]
    main([str(tmp_path / "run"), "--compare", "gradcam", "cam", "--figure", "pointing", "--masses", "BI-RADS 5"])
    out = capsys.readouterr().out
    assert "Pointing game on 2 images with a mass of BI-RADS 5 in view, against those masses alone" in out
    for side, method in (("A", "gradcam"), ("B", "cam")):
        figure = rows["birads"]["BI-RADS 5"]["methods"][method]["hit"]
        assert f"{side} run:{method}: {figure['value']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]" in out
    assert "A - B: 0.500 [" in out  # image 2: gradcam hits, cam does not
    with pytest.raises(ValueError, match="--figure energy: run:gradcam has no image with a mass of .BI-RADS 3."):
        main([str(tmp_path / "run"), "--compare", "gradcam", "cam", "--figure", "energy", "--masses", "BI-RADS 3"])
