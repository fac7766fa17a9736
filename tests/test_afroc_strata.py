"""The wAFROC and AFROC figures of merit per kind of mass and per breast density (``wafroc_by_kind.md|csv``)."""

from __future__ import annotations

import json

import pytest
import torch
from test_afroc import _all_images_result, _by_definition, _random_study, _tensors, _write_report, copied

from wsod_mammo.detection.afroc import figures_of_merit, image_subset, lesion_subset, ratings


def _kept_masses(study: tuple[list, ...], keep: list[bool]) -> tuple[list, ...]:
    """The study as it would be with only the masses ``keep``: a mass image left without any is gone with its
    boxes, a box that found a mass left out finds nothing."""
    image_gt, box_image, box_scores, box_gt, gt_image = study
    kept_gt = [sum(keep[m] for m, i in enumerate(gt_image) if i == image) for image in range(len(image_gt))]
    images = [i for i in range(len(image_gt)) if image_gt[i] == 0 or kept_gt[i] > 0]
    return _only(study, images, keep, kept_gt)


def _kept_images(study: tuple[list, ...], images: list[int]) -> tuple[list, ...]:
    """The study with only ``images`` and their masses and boxes."""
    image_gt, _, _, _, gt_image = study
    return _only(study, images, [i in images for i in gt_image], image_gt)


def _only(study: tuple[list, ...], images: list[int], keep: list[bool], image_gt: list[int]) -> tuple[list, ...]:
    _, box_image, box_scores, box_gt, gt_image = study
    new_image = {old: new for new, old in enumerate(images)}
    kept = [m for m, k in enumerate(keep) if k and gt_image[m] in new_image]
    new_mass = {old: new for new, old in enumerate(kept)}
    boxes = [b for b, i in enumerate(box_image) if i in new_image]
    return ([image_gt[i] for i in images], [new_image[box_image[b]] for b in boxes], [box_scores[b] for b in boxes],
            [new_mass.get(box_gt[b], -1) for b in boxes], [new_image[gt_image[m]] for m in kept])  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_a_kind_of_mass_is_the_figure_of_the_study_holding_only_those_masses(seed) -> None:
    """Every normal image stays, a mass image with none of the kind leaves, the others keep their masses of it."""
    study = _random_study(seed)
    keep = [m % 3 != 1 for m in range(len(study[4]))]  # a mixed image keeps some of its masses
    got = figures_of_merit(lesion_subset(ratings(*_tensors(study)), torch.tensor(keep)))
    expected = _by_definition(*_kept_masses(study, keep))
    assert float(got["wafroc"][0]) == pytest.approx(expected["wafroc"], abs=1e-12)
    assert float(got["afroc"][0]) == pytest.approx(expected["afroc"], abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_a_density_is_the_figure_of_its_own_images(seed) -> None:
    study = _random_study(seed)
    images = [i for i in range(len(study[0])) if i % 2 == 0 or i == 1]  # normal image 0 and mass image 1 at least
    keep = torch.tensor([i in images for i in range(len(study[0]))])
    got = figures_of_merit(image_subset(ratings(*_tensors(study)), keep))
    expected = _by_definition(*_kept_images(study, images))
    assert float(got["wafroc"][0]) == pytest.approx(expected["wafroc"], abs=1e-12)
    assert float(got["afroc"][0]) == pytest.approx(expected["afroc"], abs=1e-12)


def test_a_resamples_figure_of_a_stratum_counts_its_images_draws() -> None:
    """Under the report's (B, N) draw counts, an image drawn twice counts twice in the stratum, as in the whole."""
    study = _random_study(3)
    rated = ratings(*_tensors(study))
    keep = torch.arange(len(study[0])) < 9
    weights = torch.ones(1, len(study[0]))
    weights[0, 1] = 2.0  # a mass image drawn twice
    weights[0, 0] = 0.0  # a normal image not drawn
    copies = [i for i in range(9) for _ in range(int(weights[0, i]))]
    expected = _by_definition(*copied(study, copies))
    got = figures_of_merit(image_subset(rated, keep), weights)
    assert float(got["wafroc"][0]) == pytest.approx(expected["wafroc"], abs=1e-12)


def test_the_test_report_gives_each_density_its_figures_of_merit(tmp_path) -> None:
    """Images 0-2 and 6-8 one density, the others another: each density's wAFROC is that of its own images; the
    Markdown, the CSV and detection.json say the same."""
    cam = _all_images_result({0: 0.9, 1: 0.8, 4: 0.4}, {6: 0.6, 9: 0.95})
    results = {("cam", s): cam for s in ("mass", "all")}
    keys = cam.image_keys.tolist()
    densities = {k: "DENSITY C" if i in (0, 1, 2, 6, 7, 8) else "DENSITY D" for i, k in enumerate(keys)}
    _write_report(tmp_path / "run", results, densities=densities)
    report = json.loads((tmp_path / "run" / "detection.json").read_text())["wafroc_by_kind"]
    assert list(report) == ["density"]  # no finding BI-RADS nor sizes in these results
    c, d = report["density"]["DENSITY C"], report["density"]["DENSITY D"]
    assert (c["normal_images"], c["mass_images"], c["masses"]) == (3, 3, 3)
    # C: masses 0.9, 0.8 above all three normals' worst (0.6 and two unmarked); mass 2 unmarked ties with two
    assert c["methods"]["cam"]["wafroc"]["value"] == pytest.approx((3 + 3 + 2 * 0.5) / 9)
    # D: mass 4 at 0.4 above two unmarked normals, below 0.95; masses 3 and 5 unmarked tie with those two
    assert d["methods"]["cam"]["wafroc"]["value"] == pytest.approx((2 + 2 * (2 * 0.5)) / 9)
    assert c["methods"]["cam"]["wafroc"]["low"] <= c["methods"]["cam"]["wafroc"]["value"]
    markdown = (tmp_path / "run" / "wafroc_by_kind.md").read_text()
    assert "## breast density" in markdown and f"| DENSITY C | 3 | 3 | 3 | {(7 / 9):.3f} [" in markdown
    rows = (tmp_path / "run" / "wafroc_by_kind.csv").read_text().splitlines()
    assert rows[0].startswith("kind,stratum,normal_images,mass_images,masses,test_method,wafroc,")
    assert rows[1].startswith("density,DENSITY C,3,3,3,cam,")


def test_the_study_averages_each_densitys_figures_over_seeds_and_narrows_them_to_the_test_methods(tmp_path) -> None:
    """wafroc_by_kind.md|csv of the study: per stratum a train x test table, the mean over seeds of the reports'
    figures; --test_methods keeps those columns; a run whose report has none leaves the table out, named."""
    from test_afroc import FAIR, GOOD, POOR

    from wsod_mammo.detection.study_report import write_study_outputs

    runs, values = {}, {}
    for seed, tests in ((1, {"cam": FAIR, "gradcam": GOOD}), (2, {"cam": POOR, "gradcam": GOOD})):
        for train in ("cam", "gradcam"):
            results = {(m, s): _all_images_result(*tests[m]) for m in tests for s in ("mass", "all")}
            keys = results[("cam", "all")].image_keys.tolist()
            densities = {k: "DENSITY C" if i in (0, 1, 2, 6, 7, 8) else "DENSITY D" for i, k in enumerate(keys)}
            run = tmp_path / f"{train}_seed{seed}"
            _write_report(run, results, train=train, densities=densities)
            runs[(train, seed)] = run / "detection.json"
            values[(train, seed)] = json.loads(runs[(train, seed)].read_text())["wafroc_by_kind"]["density"]
    text = write_study_outputs(tmp_path / "study", runs)
    assert "wAFROC per breast density, finding BI-RADS and mass size: wafroc_by_kind.md" in text
    markdown = (tmp_path / "study" / "wafroc_by_kind.md").read_text()
    section = markdown.split("## breast density: DENSITY C\n\n")[1].split("\n\n")[0]
    mean = sum(values[("gradcam", s)]["DENSITY C"]["methods"]["cam"]["wafroc"]["value"] for s in (1, 2)) / 2
    (row,) = [line for line in section.splitlines() if line.startswith("| gradcam |")]
    assert row.split(" | ")[1].startswith(f"{mean:.3f} [")
    rows = (tmp_path / "study" / "wafroc_by_kind.csv").read_text().splitlines()
    assert rows[0] == "kind,stratum,train_method,test_method,figure,mean,low,high,runs,interval_over"
    (cell,) = [r for r in rows if r.startswith("density,DENSITY C,gradcam,cam,wafroc,")]
    assert float(cell.split(",")[5]) == pytest.approx(mean) and cell.endswith(",2,seeds and test set")
    write_study_outputs(tmp_path / "narrow", runs, test_methods=["gradcam"])
    assert "| train \\ test | gradcam |" in (tmp_path / "narrow" / "wafroc_by_kind.md").read_text()
    report = json.loads(runs[("cam", 2)].read_text())
    del report["wafroc_by_kind"]  # a report written before the figures per kind
    runs[("cam", 2)].write_text(json.dumps(report))
    assert "wafroc_by_kind" not in write_study_outputs(tmp_path / "study", runs)
    assert (
        not (tmp_path / "study" / "wafroc_by_kind.md").exists()
        and not (tmp_path / "study" / "wafroc_by_kind.csv").exists()
    )


def test_compare_counting_one_kind_of_mass_pairs_the_reports_figures_of_that_kind(tmp_path, capsys) -> None:
    """``wsod report --compare A B --figure wafroc --masses 'BI-RADS 4'``: each side's figure and interval are its
    wafroc_by_kind.md row's, the difference paired over the same draws."""
    from wsod_mammo.detection.report_cli import main

    birads = [4, 4, 4, 5, 5, 5]
    cam = _all_images_result({0: 0.9, 1: 0.8, 4: 0.4}, {6: 0.6, 7: 0.2}, birads)
    gradcam = _all_images_result({0: 0.9, 1: 0.85, 2: 0.7, 3: 0.7}, {6: 0.6}, birads)
    results = {(m, s): r for m, r in (("cam", cam), ("gradcam", gradcam)) for s in ("mass", "all")}
    _write_report(tmp_path / "run", results)
    rows = json.loads((tmp_path / "run" / "detection.json").read_text())["wafroc_by_kind"]["birads"]
    for masses in ("BI-RADS 4", "BI-RADS 5"):
        main([str(tmp_path / "run"), "--compare", "gradcam", "cam", "--figure", "wafroc", "--masses", masses])
        out = capsys.readouterr().out
        assert f"counting every normal image and the masses of {masses}, paired bootstrap (95%) over studies" in out
        for side, method in (("A", "gradcam"), ("B", "cam")):
            figure = rows[masses]["methods"][method]["wafroc"]
            assert f"{side} run:{method}: {figure['value']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]" in out
    with pytest.raises(ValueError, match="--masses: run:gradcam has no mass of .< 10 mm. on its test images"):
        main([str(tmp_path / "run"), "--compare", "gradcam", "cam", "--figure", "wafroc", "--masses", "< 10 mm"])
