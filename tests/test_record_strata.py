"""An image record restricted to one stratum is the record of the test report's figures of that stratum."""

from __future__ import annotations

import re

import pytest
import torch
from test_strata import BUDGET, _lesion_images, _lesion_result

from wsod_mammo.detection.mass_kinds import UNKNOWN
from wsod_mammo.detection.record_strata import density_only, stratum_only, with_densities
from wsod_mammo.detection.strata import restrict, strata_of
from wsod_mammo.training.table2_report import _image_records


@pytest.mark.parametrize("seed", [0, 1])
def test_a_densitys_record_is_the_record_of_the_result_restricted_to_its_images(seed: int) -> None:
    """Every list of the restricted record (image keys, studies, boxes and the images they lie on, masses and the boxes
    that found them, pointing) is what the test report's ``restrict`` gives that density: the study's interval of a
    density redraws exactly the images and boxes its run's report counted."""
    result = _lesion_result(_lesion_images(seed=seed, count=30))
    keys = result.image_keys.tolist()
    densities = {k: ("DENSITY C" if i % 3 else "DENSITY A") for i, k in enumerate(keys) if i % 7}  # some unknown
    groups = {k: i // 2 for i, k in enumerate(keys)}
    record = with_densities(_image_records(result, groups), densities)
    assert record["density"].count(UNKNOWN) == sum(1 for i in range(30) if i % 7 == 0)
    for label, keep in strata_of(result.image_keys, densities).items():
        expected = _image_records(restrict(result, keep, BUDGET), groups)
        got = density_only(record, label, "run:cam")
        assert set(got) - set(expected) <= {"density", "pointing_by_kind"}  # restrict keeps no pointing per kind
        assert got["density"] == [label] * int(keep.sum())
        if "pointing_by_kind" in got:  # its rows of the kept images, renumbered
            rows = [i for i in record["pointing_by_kind"]["image"] if keep[i]]
            assert got["pointing_by_kind"]["image"] == [int(keep[:i].sum()) for i in rows]
        for name, values in expected.items():
            assert got[name] == values, (label, name)
        assert got["box_image"] and any(g >= 0 for g in got["box_gt"])  # boxes and hits on both sides of a split
    with pytest.raises(ValueError, match="run:cam has no test image of density 'DENSITY D'"):
        density_only(record, "DENSITY D", "run:cam")
    with pytest.raises(ValueError, match="run:cam's test report records no breast density per image"):
        stratum_only(_image_records(result, groups), "density", "DENSITY A", "run:cam")
    assert with_densities(record, {}) is record


def test_a_classification_record_keeps_each_heads_probabilities_of_the_densitys_images() -> None:
    record = {"image_keys": [5, 6, 7, 8], "study_keys": [1, 1, 2, 2], "target": [1.0, 0.0, 1.0, 0.0],
              "breast_keys": [10, 11, 12, 13], "heads": {"fusion": [0.9, 0.2, 0.8, 0.3]}}  # fmt: skip
    dense = density_only(with_densities(record, {6: "DENSITY D", 7: "DENSITY D"}), "DENSITY D", "run")
    assert dense == {"image_keys": [6, 7], "study_keys": [1, 2], "target": [0.0, 1.0], "breast_keys": [11, 12],
                     "heads": {"fusion": [0.2, 0.8]}, "density": ["DENSITY D"] * 2}  # fmt: skip


def test_over_seeds_each_stratums_interval_counts_the_test_set(tmp_path, caplog) -> None:
    """table2_by_density.md and table2_by_birads.md over three seeds: each cell's interval is Hillis's single-treatment
    one from the seeds' TPRs of that stratum over the first seed's report's draws (each seed's record restricted as its
    report restricted its result), the means the reports'; wafroc_by_kind.md's and pointing_by_kind.md's alike, their
    means each seed's report's mean. A run tested before records named densities puts every section of those
    tables back on Student-t over the seeds (the per-kind tables have density sections), said in the title and a
    warning, the same means, and leaves table2_by_birads.md as it was."""
    import json

    from test_afroc import _all_images_result, _write_report

    from wsod_mammo.detection.compare import load_side, resampled_tprs
    from wsod_mammo.detection.obuchowski_rockette import single_treatment_interval
    from wsod_mammo.detection.study_report import write_study_outputs

    birads = [4, 5, 4, 5, 4, 5]
    found = {1: ({0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6}, {6: 0.65, 8: 0.3}), 2: ({0: 0.85, 1: 0.8, 2: 0.6, 4: 0.7},
             {6: 0.7, 8: 0.2}), 3: ({0: 0.9, 1: 0.7, 3: 0.8, 5: 0.6}, {6: 0.6, 9: 0.3})}  # fmt: skip
    runs = {}
    for seed, (masses, normals) in found.items():
        results = {
            (m, s): _all_images_result(masses, normals, birads) for m in ("cam", "gradcam") for s in ("mass", "all")
        }
        keys = results[("cam", "all")].image_keys.tolist()
        densities = {k: "DENSITY A" if i % 2 else "DENSITY C" for i, k in enumerate(keys)}  # a view a study
        _write_report(tmp_path / f"cam_{seed}", results, densities=densities)
        runs[("cam", seed)] = tmp_path / f"cam_{seed}" / "detection.json"
    write_study_outputs(tmp_path / "study", runs)
    for file, kind, stratum in (("table2_by_density.md", "density", "DENSITY C"), ("table2_by_birads.md", "birads",
                                                                                 "BI-RADS 4")):  # fmt: skip
        text = (tmp_path / "study" / file).read_text()
        assert "[95% interval, over the seeds and the test set: Obuchowski-Rockette" in text
        loaded = [load_side(f"{runs[('cam', seed)].parent}:cam", tmp_path, "mass") for seed in found]
        sides = [stratum_only(side, kind, stratum, label) for label, side, _, _ in loaded]
        values = resampled_tprs(sides, loaded[0][2], loaded[0][3], [label for label, *_ in loaded])
        expected = single_treatment_interval(values[:, 0], torch.cov(values[:, 1:]))
        means = [json.loads(runs[("cam", s)].read_text())[f"by_{'density' if kind == 'density' else 'finding_birads'}"]
                 ["mass"][stratum]["cells"]["cam"]["tpr"] for s in found]  # fmt: skip
        assert expected["estimate"] == pytest.approx(sum(means) / 3) and expected["high"] > expected["low"]
        cell = f"{expected['estimate']:.2f} [{max(expected['low'], 0):.2f}, {min(expected['high'], 1):.2f}] @ "
        section = text.split(f"## {stratum}")[1].split("##")[0]
        (row,) = [line for line in section.splitlines() if line.startswith("| cam |")]
        assert row.split(" | ")[1].startswith(cell), (file, row, cell)
    by_kind = ("table2_by_density.md", "wafroc_by_kind.md", "pointing_by_kind.md")
    counted = {name: (tmp_path / "study" / name).read_text() for name in by_kind}
    assert all("interval, over the seeds and the test set: Obuchowski" in counted[n] for n in by_kind[:1])
    assert all("interval over the seeds and the test set: Obuchowski" in counted[n] for n in by_kind[1:])
    images = tmp_path / "cam_2" / "detection_images.json"
    record = json.loads(images.read_text())
    for methods in record["subsets"].values():
        for method in methods.values():
            del method["density"]
    images.write_text(json.dumps(record))
    with caplog.at_level("WARNING"):
        write_study_outputs(tmp_path / "study", runs)
    assert "table2_by_density.md (DENSITY A): its intervals are Student-t over the seeds only" in caplog.text
    assert "records no breast density per image" in caplog.text
    assert "[95% interval, Student-t over seeds]" in (tmp_path / "study" / "table2_by_density.md").read_text()
    assert "over the seeds and the test set" in (tmp_path / "study" / "table2_by_birads.md").read_text()
    for name in by_kind:  # the same means from the reports, the seeds' spread alone around them
        seeds_only = (tmp_path / "study" / name).read_text()
        assert "Student-t over seeds" in seeds_only or "interval over seeds;" in seeds_only, name
        cells = [re.findall(r"(\d\.\d+) \[(\d\.\d+), (\d\.\d+)\]", text) for text in (counted[name], seeds_only)]
        assert len(cells[0]) == len(cells[1]) >= 4 and cells[0] != cells[1], name
        assert [mean for mean, *_ in cells[0]] == [mean for mean, *_ in cells[1]], name


def test_over_seeds_table1_by_density_counts_the_test_set(tmp_path) -> None:
    """table1_by_density.md over two seeds: each density's figures over the seeds and the test set, from each run's
    classification record restricted to that density's images and redrawn as its report drew them (whole studies,
    class-stratified, its seed), the means the reports' own."""
    import json

    from test_compare_auc import _cases, _write_run

    from wsod_mammo.detection.bootstrap import classification_figures, resample_weights
    from wsod_mammo.detection.obuchowski_rockette import single_treatment_interval
    from wsod_mammo.detection.study_report import write_study_outputs
    from wsod_mammo.training.table1_report import _figures_with_intervals

    keys, target, (good, noise), groups = _cases()
    densities = {int(k): "DENSITY B" if (int(k) // 2) % 2 else "DENSITY C" for k in keys}  # whole studies
    runs, probabilities = {}, {1: 0.7 * good + 0.3 * noise, 2: 0.5 * good + 0.5 * noise}
    for seed, p in probabilities.items():
        run = tmp_path / f"cam_{seed}"
        _write_run(run, {"fusion": p, "global": p, "local": p}, keys, target, groups)
        images = json.loads((run / "detection_images.json").read_text())
        images["classification"] = with_densities(images["classification"], densities)
        (run / "detection_images.json").write_text(json.dumps(images))
        by_density = {}
        for label, keep in strata_of(keys, densities).items():
            studies = torch.tensor([groups[int(k)] for k in keys[keep]])
            figures = _figures_with_intervals(p[keep], target[keep], keys[keep], 7, studies)
            heads = dict.fromkeys(("global", "local", "fusion"), figures)
            by_density[label] = {"studies": int(studies.unique().numel()), "images": int(keep.sum()),
                                 "positive": int(target[keep].sum()), "heads": heads}  # fmt: skip
        report = {"table1": {}, "mass": {"cam": {"tpr": 0.5, "fppi": 0.5}}, "table1_by_density": by_density}
        (run / "detection.json").write_text(json.dumps(report))
        runs[("cam", seed)] = run / "detection.json"
    write_study_outputs(tmp_path / "study", runs)
    table = (tmp_path / "study" / "table1_by_density.md").read_text()
    assert "mean [95% interval over the seeds and the test set: Obuchowski-Rockette" in table
    keep = torch.tensor([densities[int(k)] == "DENSITY C" for k in keys])
    studies = torch.tensor([groups[int(k)] for k in keys[keep]])
    draws = resample_weights(target[keep], seed=7, keys=keys[keep], groups=studies)
    draws = torch.cat([torch.ones(1, int(keep.sum())), draws])
    figures = [classification_figures(draws, p[keep], target[keep]) for p in probabilities.values()]
    values = torch.stack([f["auc"] for f in figures]).double()
    expected = single_treatment_interval(values[:, 0], torch.cov(values[:, 1:]))
    reported = [json.loads(r.read_text())["table1_by_density"]["DENSITY C"]["heads"]["fusion"]["auc"]["value"]
                for r in runs.values()]  # fmt: skip
    assert expected["estimate"] == pytest.approx(sum(reported) / 2) and expected["high"] > expected["low"]
    cell = f"{expected['estimate']:.3f} [{max(expected['low'], 0):.3f}, {min(expected['high'], 1):.3f}]"
    section = table.split("## DENSITY C")[1]
    (row,) = [line for line in section.splitlines() if line.startswith("| cam | fusion |")]
    assert row.split(" | ")[3] == cell, (row, cell)


def test_compare_over_one_density_gives_each_side_its_per_density_tables_row(tmp_path, capsys) -> None:
    """``wsod report RUN --compare A B --density 'DENSITY C'``: each side's TPR, wAFROC and pointing game with their
    intervals are its run's table2_by_density.md, wafroc_by_kind.md and pointing_by_kind.md rows of that density
    (the same restriction, the same draws), the difference paired; what it cannot do is one line naming why."""
    import json

    from test_afroc import _all_images_result, _write_report

    from wsod_mammo.detection.report_cli import main

    birads = [4, 5, 4, 5, 4, 5]
    results = {("cam", s): _all_images_result({0: 0.9, 1: 0.8, 2: 0.4}, {6: 0.6, 8: 0.3}, birads)
               for s in ("mass", "all")}  # fmt: skip
    results |= {("gradcam", s): _all_images_result({0: 0.9, 2: 0.8, 4: 0.7, 1: 0.5}, {6: 0.5}, birads)
                for s in ("mass", "all")}  # fmt: skip
    keys = results[("cam", "all")].image_keys.tolist()
    _write_report(tmp_path / "run", results, densities={k: "DENSITY A" if i % 2 else "DENSITY C" for i, k in
                                                        enumerate(keys)})  # fmt: skip
    report = json.loads((tmp_path / "run" / "detection.json").read_text())
    run = str(tmp_path / "run")

    def printed(*args: str) -> str:
        main([run, "--compare", "gradcam", "cam", "--density", "DENSITY C", *args])
        return capsys.readouterr().out

    def line(side: str, method: str, figure: dict) -> str:
        return f"{side} run:{method}: {figure['value']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"

    tpr = printed()
    cells = report["by_density"]["mass"]["DENSITY C"]["cells"]
    assert "mass images of DENSITY C, paired bootstrap (95%) over studies" in tpr
    wafroc = printed("--figure", "wafroc")
    rows = report["wafroc_by_kind"]["density"]["DENSITY C"]["methods"]
    assert "wAFROC figure of merit on 6 test images of DENSITY C, paired bootstrap (95%) over studies" in wafroc
    pointing = printed("--figure", "pointing")
    hits = report["pointing_by_kind"]["kinds"]["density"]["DENSITY C"]["methods"]
    assert "with a mass in view, of DENSITY C" in pointing
    for side, method in (("A", "gradcam"), ("B", "cam")):
        assert line(side, method, cells[method]["tpr_interval"]) in tpr, (tpr, cells)
        assert line(side, method, rows[method]["wafroc"]) in wafroc, (wafroc, rows)
        assert line(side, method, hits[method]["hit"]) in pointing, (pointing, hits)
    assert rows["gradcam"]["wafroc"]["value"] != rows["cam"]["wafroc"]["value"]  # the pair tells them apart
    for figure, table, key in (("tpr", cells, "tpr_interval"), ("pointing", hits, "hit"), ("wafroc", rows, "wafroc")):
        main([run, "--compare", f"{run},{run}:gradcam", f"{run},{run}:cam", "--density", "DENSITY C", "--figure",
              figure])  # fmt: skip
        out = capsys.readouterr().out  # over runs (one run twice a side): each run's figure its density row's
        assert "of DENSITY C, 2 runs a side" in out, (figure, out)
        assert (
            f"A: mean {table['gradcam'][key]['value']:.3f} (run:gradcam {table['gradcam'][key]['value']:.3f}, " in out
        )
    for args, message in (
        (["--masses", "BI-RADS 4"], "--masses and --density: one stratum at a time"),
        (["--level", "breast"], "--density: Table I per breast density rates images; drop --level breast"),
    ):
        with pytest.raises(ValueError, match=message):
            printed(*args)
    with pytest.raises(ValueError, match="--density: it selects what --compare counts; give --compare A B too"):
        main([run, "--density", "DENSITY C"])
    with pytest.raises(ValueError, match="run:gradcam has no test image of density 'DENSITY D'"):
        main([run, "--compare", "gradcam", "cam", "--density", "DENSITY D"])


def test_compare_of_heads_over_one_density_gives_table1_by_densitys_auc(tmp_path, capsys) -> None:
    """``--compare A:fusion B:fusion --density 'DENSITY C'``: each side's AUC and interval are Table I's of that
    density's images (as the test report draws them: its studies, its seed); over several runs a side the same
    images, named."""
    import json

    from test_compare_auc import _cases, _write_run

    from wsod_mammo.detection.report_cli import main
    from wsod_mammo.training.table1_report import _figures_with_intervals

    keys, target, (good, noise), groups = _cases()
    densities = {int(k): "DENSITY B" if (int(k) // 2) % 2 else "DENSITY C" for k in keys}
    for name, p in (("a", good), ("b", noise), ("a2", 0.5 * good + 0.5 * noise), ("b2", noise.flip(0))):
        _write_run(tmp_path / name, {"fusion": p}, keys, target, groups)
        images = json.loads((tmp_path / name / "detection_images.json").read_text())
        images["classification"] = with_densities(images["classification"], densities)
        (tmp_path / name / "detection_images.json").write_text(json.dumps(images))
    main([str(tmp_path / "a"), "--compare", f"{tmp_path / 'a'}:fusion", f"{tmp_path / 'b'}:fusion", "--density",
          "DENSITY C"])  # fmt: skip
    out = capsys.readouterr().out
    keep = torch.tensor([densities[int(k)] == "DENSITY C" for k in keys])
    studies = torch.tensor([groups[int(k)] for k in keys[keep]])
    assert f"AUC of Mass on {int(keep.sum())} distinct test images of DENSITY C (" in out
    for side, name, p in (("A", "a", good), ("B", "b", noise)):
        auc = _figures_with_intervals(p[keep], target[keep], keys[keep], 7, studies)["auc"]
        assert f"{side} {name}:fusion: {auc['value']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]" in out, out
    runs = [",".join(str(tmp_path / n) for n in pair) + ":fusion" for pair in (("a", "a2"), ("b", "b2"))]
    main([str(tmp_path / "a"), "--compare", *runs, "--density", "DENSITY C"])
    assert f"AUC on {int(keep.sum())} distinct test images of DENSITY C (" in capsys.readouterr().out
