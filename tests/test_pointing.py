"""The pointing game and the energy inside the masses, per image, placed on the frame as the boxes are."""

from __future__ import annotations

import math

import pytest
import torch

from wsod_mammo.detection.boxes import upsample_map
from wsod_mammo.detection.pointing import cell_centres, pointing_and_energy

FRAME = (256, 128)  # (H, W): a map of 8 x 4 cells of 32 pixels


def _map_with_peak(row: int, col: int, shape: tuple[int, int] = (8, 4)) -> torch.Tensor:
    cells = torch.zeros(shape)
    cells[row, col] = 1.0
    return cells


def test_cell_centres_are_where_upsampling_puts_each_cell_whole() -> None:
    for cell0 in (None, 2.0):
        centres = cell_centres(8, 256, cell0)
        for row in (0, 3, 7):
            up = upsample_map(_map_with_peak(row, 1), FRAME, cell0)[:, 48]  # column of cell 1's centre: 48
            peak_pixels = torch.nonzero(up == up.max()).flatten().double() + 0.5  # continuous centres
            # a plateau at the frame's edge (the first cell's value repeats up to its centre), else one or two pixels
            low, high = float(peak_pixels.min()) - 0.51, float(peak_pixels.max()) + 0.51
            assert low <= float(centres[row]) <= high and high - low < 40, (cell0, row)
    assert cell_centres(8, 256).tolist()[:2] == [16.0, 48.0]  # plain resizing: cell k at 32 k + 16
    assert cell_centres(8, 256, 2.0).tolist()[:2] == [2.5, 34.5]  # GMIC's receptive fields: cell 0 on pixel 2


def test_a_peak_on_the_mass_hits_one_beside_it_misses_within_tolerance_it_hits() -> None:
    mass = torch.tensor([[40.0, 100.0, 90.0, 150.0]])  # x1 y1 x2 y2: holds cell (3, 1)'s centre (48, 112)
    maps = torch.stack([_map_with_peak(3, 1), _map_with_peak(6, 3), _map_with_peak(4, 2)])
    # cell (4, 2)'s centre (80, 144) lies in the box; (6, 3)'s (112, 208) lies 58 px below it
    hits, _ = pointing_and_energy(maps, [mass, mass, mass], FRAME)
    assert hits.tolist() == [1.0, 0.0, 1.0]
    near = torch.tensor([[40.0, 100.0, 100.0, 200.0]])  # (112, 208) is 12 px right and 8 px below: 14.4 px
    assert pointing_and_energy(maps[1:2], [near], FRAME)[0].tolist() == [1.0]
    assert pointing_and_energy(maps[1:2], [near], FRAME, tolerance=14.0)[0].tolist() == [0.0]


def test_tied_peaks_count_the_share_that_hits_and_a_flat_map_points_nowhere() -> None:
    cells = _map_with_peak(3, 1) + _map_with_peak(6, 3) + _map_with_peak(0, 0) + _map_with_peak(7, 0)
    mass = torch.tensor([[40.0, 100.0, 90.0, 150.0]])
    hits, _ = pointing_and_energy(cells[None], [mass], FRAME)
    assert hits.tolist() == [0.25]
    flat_hits, flat_energy = pointing_and_energy(torch.ones(1, 8, 4), [mass], FRAME)
    assert flat_hits.tolist() == [0.0] and flat_energy.tolist() == [0.0]


def test_without_a_mass_in_view_nothing_is_scored() -> None:
    hits, energy = pointing_and_energy(_map_with_peak(3, 1)[None], [torch.zeros(0, 4)], FRAME)
    assert math.isnan(float(hits[0])) and math.isnan(float(energy[0]))


def test_a_peak_in_the_padding_is_not_the_images() -> None:
    """``resize: fit`` pads the frame: the highest cell there is outside the image; the image's own peak counts."""
    cells = _map_with_peak(3, 1) * 0.8 + _map_with_peak(7, 3)  # the highest cell lies in the padding (x > 96)
    mass = torch.tensor([[40.0, 100.0, 90.0, 150.0]])
    assert pointing_and_energy(cells[None], [mass], FRAME)[0].tolist() == [0.0]
    assert pointing_and_energy(cells[None], [mass], FRAME, regions=[(0, 0, 96, 256)])[0].tolist() == [1.0]


def test_energy_is_the_share_of_the_upsampled_map_inside_the_masses() -> None:
    generator = torch.Generator().manual_seed(0)
    cells = torch.rand(8, 4, generator=generator)
    masses = torch.tensor([[10.0, 20.0, 70.0, 90.0], [50.0, 60.0, 120.0, 200.0]])  # overlapping: their union
    region = (0, 0, 112, 240)
    _, energy = pointing_and_energy(cells[None], [masses], FRAME, cell0_center=2.0, regions=[region])
    normalized = (cells - cells.min()) / (cells.max() - cells.min())
    full = upsample_map(normalized, FRAME, 2.0).double()[: region[3], : region[2]]
    yc = torch.arange(region[3]).double()[:, None] + 0.5
    xc = torch.arange(region[2]).double()[None, :] + 0.5
    union = torch.zeros_like(full, dtype=torch.bool)
    for x1, y1, x2, y2 in masses.tolist():
        union |= (yc >= y1) & (yc <= y2) & (xc >= x1) & (xc <= x2)
    assert float(energy[0]) == pytest.approx(float(full[union].sum() / full.sum()), rel=1e-5)
    everything = torch.tensor([[0.0, 0.0, 128.0, 256.0]])
    assert pointing_and_energy(cells[None], [everything], FRAME)[1].tolist() == [pytest.approx(1.0)]


def _method_result(hit_images: tuple[int, ...], tolerance: float = 15.0):
    """8 mass images in a 200 x 200 frame (a map of 10 x 10 cells): the mass at the top left, the map's peak on it
    in ``hit_images`` and at the bottom right in the others, with a weaker glow on the mass everywhere."""
    from wsod_mammo.detection.metrics import DetectionMetric

    maps = torch.zeros(8, 10, 10)
    maps[:, 1, 1] = 0.5
    for i in range(8):
        maps[i, 1, 1] = 1.0 if i in hit_images else 0.5
        maps[i, 8, 8] = 0.0 if i in hit_images else 1.0
    gt = [torch.tensor([[10.0, 10.0, 50.0, 50.0]]) for _ in range(8)]
    metric = DetectionMetric(thresholds=(0.5,), operating_fppi=1.0, positives_only=True, pointing_tolerance=tolerance)
    metric.update(maps, torch.full((8,), 0.9), gt, torch.ones(8, dtype=torch.long), (200, 200),
                  [f"m{i}" for i in range(8)])  # fmt: skip
    return metric.compute()


def test_the_test_report_gives_each_methods_pointing_game_with_its_interval_over_studies(tmp_path) -> None:
    import json
    from types import SimpleNamespace

    from wsod_mammo.detection.bootstrap import interval, resample_weights
    from wsod_mammo.training.table1_report import Table1Figures
    from wsod_mammo.training.test_report import write_test_report

    results = {}
    for method, hits in (("cam", (0, 1, 2, 3, 4)), ("gradcam", (0, 1, 2, 3, 4, 5, 6, 7))):
        results[(method, "mass")] = _method_result(hits, tolerance=12.0)
        results[(method, "all")] = _method_result(hits, tolerance=12.0)
    trainer = SimpleNamespace(ckpt_path=None, loggers=[])
    module = SimpleNamespace(train_saliency=SimpleNamespace(name="cam"), detection_thresholds={"cam": 0.5},
                             nyu_weights_as_is=None, trained_in_process=True)  # fmt: skip
    keys = results[("cam", "mass")].image_keys
    groups = {int(k): i // 2 for i, k in enumerate(keys.tolist())}  # two views a study
    write_test_report(tmp_path, trainer, module, results, Table1Figures({}, {}, {}, None), 1.0, seed=7, groups=groups,
                      densities={})  # fmt: skip
    pointing = json.loads((tmp_path / "detection.json").read_text())["pointing_game"]
    assert pointing["images"] == 8 and pointing["tolerance_px"] == 12.0  # the metric's, as the callback set it
    hits = results[("cam", "mass")].pointing
    weights = resample_weights(
        torch.ones_like(keys), seed=7, keys=keys, groups=torch.tensor([groups[int(k)] for k in keys])
    )
    expected = interval((weights.double() @ hits.double()) / weights.sum(1).double(), 5 / 8)
    assert pointing["methods"]["cam"]["hit"] == pytest.approx(expected)
    assert 0 < expected["low"] < 5 / 8 < expected["high"] <= 1  # the resamples vary: an interval, not a point
    assert pointing["methods"]["gradcam"]["hit"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert 0 < pointing["methods"]["cam"]["energy"]["value"] < pointing["methods"]["gradcam"]["energy"]["value"] <= 1
    markdown = (tmp_path / "pointing_game.md").read_text()
    assert (
        "8 mass images with a mass in view" in markdown
        and "within 12 px of a mass" in markdown
        and "interval over studies (each with all its images)" in markdown
    )
    assert f"| cam | 0.62 [{expected['low']:.2f}, {expected['high']:.2f}] | " in markdown
    rows = (tmp_path / "pointing_game.csv").read_text().splitlines()
    assert rows[0] == "test_method,images,hit,hit_low,hit_high,energy,energy_low,energy_high"
    assert rows[1].startswith("cam,8,0.625,")


def test_a_tolerance_that_is_no_distance_is_refused_naming_the_option() -> None:
    from wsod_mammo.detection.metrics import DetectionMetric
    from wsod_mammo.training.callbacks import DetectionMetrics

    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="DetectionMetrics.pointing_tolerance: expected a distance >= 0"):
            DetectionMetrics(pointing_tolerance=bad)
        with pytest.raises(ValueError, match="pointing_tolerance expected a distance >= 0"):
            DetectionMetric(pointing_tolerance=bad)
    assert DetectionMetrics(pointing_tolerance=30).pointing_tolerance == 30.0


def test_compare_of_two_methods_pointing_game_pairs_their_reports_intervals(tmp_path, capsys) -> None:
    """``wsod report --compare cam gradcam --figure pointing``: each side's interval is its report's (same seed, same
    studies), the difference is paired; what cannot be compared says why."""
    import json
    from types import SimpleNamespace

    from wsod_mammo.detection.compare import load_side
    from wsod_mammo.detection.compare_pointing import paired_figure
    from wsod_mammo.detection.report_cli import main
    from wsod_mammo.training.table1_report import Table1Figures
    from wsod_mammo.training.test_report import write_test_report

    results = {}
    for method, hits in (("cam", (0, 1, 2, 3, 4)), ("gradcam", (0, 1, 2, 3, 4, 5, 6, 7))):
        results[(method, "mass")] = _method_result(hits)
        results[(method, "all")] = _method_result(hits)
    trainer = SimpleNamespace(ckpt_path=None, loggers=[])
    module = SimpleNamespace(train_saliency=SimpleNamespace(name="cam"), detection_thresholds={"cam": 0.5},
                             nyu_weights_as_is=None, trained_in_process=True)  # fmt: skip
    keys = results[("cam", "mass")].image_keys
    groups = {int(k): i // 2 for i, k in enumerate(keys.tolist())}
    run = tmp_path / "run"
    run.mkdir()
    write_test_report(run, trainer, module, results, Table1Figures({}, {}, {}, None), 1.0, seed=7, groups=groups,
                      densities={})  # fmt: skip
    reported = json.loads((run / "detection.json").read_text())["pointing_game"]["methods"]
    _, a, _, seed = load_side("cam", run, "mass")
    _, b, _, _ = load_side("gradcam", run, "mass")
    for figure, key in (("pointing", "hit"), ("energy", "energy")):
        result = paired_figure(a, b, figure, seed, ("cam", "gradcam"))
        assert result["a"] == pytest.approx(reported["cam"][key]) and result["b"] == pytest.approx(
            reported["gradcam"][key]
        )
        assert result["resampled"] == "studies" and result["num_images"] == 8
    result = paired_figure(a, b, "pointing", seed)
    assert result["difference"]["value"] == pytest.approx(-3 / 8) and result["p_a_not_better"] == 1.0
    main([str(run), "--compare", "cam", "gradcam", "--figure", "pointing"])
    out = capsys.readouterr().out
    assert "Pointing game on 8 images with a mass in view, paired bootstrap (95%) over studies:" in out
    assert "A - B: -0.375 [" in out and "share of resamples with A <= B: 1.000" in out
    for args, message in (
        (["--figure", "pointing"], "--figure pointing: it selects what --compare compares"),
        (["--compare", "fusion", "global", "--figure", "energy"], "--figure energy: a figure of saliency methods"),
        (
            ["--compare", "cam", "gradcam", "--figure", "pointing", "--masses", "BI-RADS 5"],
            "--masses: run:cam's test report records no pointing game per kind of mass .written before it did, or "
            "its data names no mass's BI-RADS or size.",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            main([str(run), *args])
    images = json.loads((run / "detection_images.json").read_text())
    del images["subsets"]["mass"]["cam"]["pointing"]  # a report written before the record
    (run / "detection_images.json").write_text(json.dumps(images))
    with pytest.raises(ValueError, match="cam's test report records no pointing game per image .*test that run again"):
        main([str(run), "--compare", "cam", "gradcam", "--figure", "pointing"])


def test_a_tolerance_in_mm_is_the_same_distance_on_the_breast_along_either_axis() -> None:
    """``pixel_mm``: a frame pixel 0.5 mm wide and 1 mm tall (``resize: stretch`` scales the axes apart): a peak 8 px
    beside the mass is 4 mm off it, 8 px below it 8 mm; an image without a spacing has no pointing game, but its
    energy."""
    from wsod_mammo.data.geometry import Geometry, input_pixel_sizes

    geometry = Geometry(1000, 400, False, (0, 0, 400, 1000), 500, 100, "stretch", (0.1, 0.125))
    assert geometry.input_pixel_mm == (pytest.approx(0.2), pytest.approx(0.5))  # 1000 -> 500 rows, 400 -> 100 columns
    assert input_pixel_sizes([{"geometry": geometry.to_dict()}, {}]) == [geometry.input_pixel_mm, None]
    assert Geometry(1000, 400, False, (0, 0, 400, 1000), 500, 100).input_pixel_mm is None
    frame = (64, 64)  # a map of 8 x 8 cells of 8 px: cell (r, c) is centred at (8r + 4, 8c + 4)
    mass = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    beside, below = _map_with_peak(2, 3, (8, 8)), _map_with_peak(3, 2, (8, 8))  # centres 8 px right / below
    maps = torch.stack([beside, below, beside])
    pixels = [(1.0, 0.5), (1.0, 0.5), None]
    hits, energy = pointing_and_energy(maps, [mass] * 3, frame, tolerance=5.0, pixel_mm=pixels)
    assert hits[:2].tolist() == [1.0, 0.0] and math.isnan(float(hits[2]))
    assert not torch.isnan(energy).any() and float(energy[2]) == pytest.approx(float(energy[0]))
    assert pointing_and_energy(maps, [mass] * 3, frame, tolerance=9.0, pixel_mm=pixels)[0][:2].tolist() == [1.0, 1.0]
    assert pointing_and_energy(maps, [mass] * 3, frame, tolerance=5.0)[0].tolist() == [0.0, 0.0, 0.0]  # 8 px > 5 px


def test_a_pointing_game_in_mm_reports_its_unit_and_the_images_it_left_out(tmp_path) -> None:
    """``DetectionMetric(pointing_unit="mm")`` reads each image's ``pixel_mm``; the test report says the tolerance in
    mm and how many images with a mass in view had no spacing (no pointing game for them, their energy counted)."""
    import json
    from types import SimpleNamespace

    from wsod_mammo.detection.metrics import DetectionMetric
    from wsod_mammo.training.table1_report import Table1Figures
    from wsod_mammo.training.test_report import write_test_report

    maps = torch.zeros(4, 10, 10)
    maps[:, 1, 1] = 1.0  # every peak on the mass
    gt = [torch.tensor([[10.0, 10.0, 50.0, 50.0]]) for _ in range(4)]
    results = {}
    for subset in ("mass", "all"):
        metric = DetectionMetric(pointing_tolerance=3.0, pointing_unit="mm")
        metric.update(maps, torch.full((4,), 0.9), gt, torch.ones(4, dtype=torch.long), (200, 200),
                      [f"m{i}" for i in range(4)], pixel_mm=[(0.1, 0.1), None, (0.2, 0.1), None])  # fmt: skip
        results[("cam", subset)] = metric.compute()
    r = results[("cam", "mass")]
    assert r.pointing_unit == "mm" and r.pointing is not None and r.energy is not None
    assert int(torch.isnan(r.pointing).sum()) == 2 and not bool(torch.isnan(r.energy).any())
    trainer = SimpleNamespace(ckpt_path=None, loggers=[])
    module = SimpleNamespace(train_saliency=SimpleNamespace(name="cam"), detection_thresholds={"cam": 0.5},
                             nyu_weights_as_is=None, trained_in_process=True)  # fmt: skip
    write_test_report(tmp_path, trainer, module, results, Table1Figures({}, {}, {}, None), 1.0, densities={})
    pointing = json.loads((tmp_path / "detection.json").read_text())["pointing_game"]
    assert (pointing["tolerance_mm"], pointing["images"], pointing["unscored"]) == (3.0, 4, 2)
    assert pointing["methods"]["cam"]["hit"]["value"] == 1.0
    markdown = (tmp_path / "pointing_game.md").read_text()
    assert "4 mass images with a mass in view, 2 of them without a pixel spacing: energy only" in markdown
    assert "within 3 mm of a mass" in markdown
    with pytest.raises(ValueError, match=r"pointing_unit expected one of \('px', 'mm'\), found 'cm'"):
        DetectionMetric(pointing_unit="cm")
