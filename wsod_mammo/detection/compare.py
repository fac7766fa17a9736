"""Paired bootstrap between two methods (or runs) on the same test images: ``wsod report --compare A B``.

Each side is ``RUN_DIR:method`` (or ``method``, from the first run given), read from the run's
``detection_images.json`` (written by ``wsod test``). Both sides are resampled with the same image draws (class-
stratified, seeded), so the interval of the difference accounts for the images both methods share: it is much
narrower than the two separate intervals suggest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsod_mammo.detection.bootstrap import (
    SEED,
    interval,
    interval_text,
    resample_weights,
    resampled_best_within,
)
from wsod_mammo.detection.mass_kinds import mass_kind, row_labels
from wsod_mammo.detection.report import count, find_run_dir

IMAGES_FILE = "detection_images.json"


def read_images_file(spec: str, default_run: Path) -> tuple[str, str, Path, dict[str, Any]]:
    """``(label, method or head, path, content)`` of the image record ``RUN_DIR:name`` or ``name`` (in
    ``default_run``) reads; the label names the run as the comparison prints it."""
    run, _, name = spec.rpartition(":")
    run_dir = find_run_dir(Path(run) if run else default_run)  # a study's run folder, as the listed runs
    path = run_dir / IMAGES_FILE
    if not path.is_file():
        raise ValueError(f"--compare {spec}: {path} does not exist (written by `wsod test`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(
            f"--compare {spec}: {path} is not a `wsod test` image record as expected ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"--compare {spec}: {path} is not a `wsod test` image record as expected (not an object)")
    named = Path(run) if run else default_run  # as typed: `cam_seed42`, not the run id found below it
    return f"{named.resolve().name}:{name}", name, path, data  # resolved: the run `wsod report .` names is the folder


def load_side(spec: str, default_run: Path, subset: str) -> tuple[str, dict[str, Any], float, int]:
    """``(label, records, fppi_budget, bootstrap seed)`` of ``RUN_DIR:method`` or ``method`` (in ``default_run``);
    the seed is the test report's (``SEED`` for a report written before it was recorded)."""
    label, method, path, data = read_images_file(spec, default_run)
    return (label, *side_in(data, method, subset, spec, path))


def side_in(data: dict[str, Any], method: str, subset: str, spec: str, path: Path) -> tuple[dict[str, Any], float, int]:
    """``(records, fppi_budget, bootstrap seed)`` of ``method`` on ``subset``'s images in an image record already
    read (:func:`read_images_file`'s ``data``, from ``path``); ``spec`` names the side in errors."""
    try:
        methods = data["subsets"].get(subset, {})
        budget, seed = float(data["fppi_budget"]), int(data.get("bootstrap_seed", SEED))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        reason = f"no {error} key" if isinstance(error, KeyError) else f"{type(error).__name__}: {error}"
        raise ValueError(f"--compare {spec}: {path} is not a `wsod test` image record as expected ({reason})") from None
    if method not in methods:
        raise ValueError(
            f"--compare {spec}: {path} has no method {method!r} on {subset} images; it has {sorted(methods)}"
        )
    return methods[method], budget, seed


def mass_flags(records: dict[str, Any], masses: str, label: str) -> list[bool]:
    """Which of one side's masses (in its ``gt_image`` order) are of ``masses`` (a row of Table II per finding
    BI-RADS or per mass size: ``BI-RADS 5``, ``< 10 mm``); ``label`` names the side in errors."""
    kind = mass_kind(masses)
    key = "gt_birads" if kind == "birads" else "gt_size_mm"
    if key not in records:
        raise ValueError(f"--masses: {label}'s test report records no {key} per mass (written before it did); test "
                         "that run again")  # fmt: skip
    return [name == masses for name in row_labels(kind, records[key])]


def masses_only(records: dict[str, Any], masses: str, label: str) -> dict[str, Any]:
    """``records`` counting only the masses of one row of Table II per finding BI-RADS or per mass size (``masses``:
    ``BI-RADS 5``, ``< 10 mm``), by the test report's rule: every image and false positive stays, a box that found
    another mass is dropped. ``label`` names the side in errors (a report written before masses were recorded)."""
    if "box_gt" not in records:
        raise ValueError(f"--masses: {label}'s test report records no masses per box (written before they were); "
                         "test that run again")  # fmt: skip
    keep = mass_flags(records, masses, label)
    image_gt = [0] * len(records["image_keys"])
    for image, kept in zip(records["gt_image"], keep, strict=True):
        image_gt[image] += kept
    boxes = [gt < 0 or keep[gt] for gt in records["box_gt"]]
    return records | {
        "image_gt": image_gt,
        **{name: [v for v, b in zip(records[name], boxes, strict=True) if b]
           for name in ("box_image", "box_scores", "box_tp", "box_gt")},
    }  # fmt: skip


def side_tensors(records: dict[str, Any], order: dict[int, int]) -> tuple[torch.Tensor, ...]:
    """Ground truth per image in ``order`` (``{image key: index}``) and boxes ``(image, score, found a mass)`` with
    their image index mapped into that order: one side of a paired comparison on the other side's images."""
    position = torch.tensor([order[k] for k in records["image_keys"]], dtype=torch.long)
    gt = torch.zeros(len(order), dtype=torch.long)
    gt[position] = torch.tensor(records["image_gt"], dtype=torch.long)
    box_image = position[torch.tensor(records["box_image"], dtype=torch.long)]
    scores = torch.tensor(records["box_scores"], dtype=torch.float32)
    return gt, box_image, scores, torch.tensor(records["box_tp"], dtype=torch.bool)


def same_images(a: dict[str, Any], b: dict[str, Any], labels: tuple[str, str]) -> None:
    """Raise, naming both sides, where two sides' ``image_keys`` are not the same images: a paired comparison
    needs every image on both sides."""
    keys_a, keys_b = set(a["image_keys"]), set(b["image_keys"])
    if keys_a != keys_b:
        raise ValueError(
            f"--compare: {labels[0]} and {labels[1]} were tested on different images: {len(keys_a)} and {len(keys_b)} "
            f"images, {len(keys_a - keys_b)} only in the first, {len(keys_b - keys_a)} only in the second"
        )


def without_studies(a: dict[str, Any], b: dict[str, Any], labels: tuple[str, str]) -> list[str]:
    """The labels of the sides whose test report recorded no studies (written before it did): where any does, a
    paired comparison draws images one by one, and says why (:func:`why_images`)."""
    return [label for label, side in zip(labels, (a, b), strict=True) if "study_keys" not in side]


def paired_draws(
    a: dict[str, Any], b: dict[str, Any], seed: int, labels: tuple[str, str]
) -> tuple[dict[int, int], Tensor, list[str]]:
    """What a paired comparison of two sides' detections draws: A's image order (``{image key: index}``), the
    ``(1 + B, N)`` weights of the full sample then of A's test report's class-stratified resamples of whole studies
    (A's keys and ``seed``: its report's draws), and the sides whose report recorded no studies (then images are
    drawn one by one). The image sets must be equal (``labels`` name the two sides in that error)."""
    same_images(a, b, labels)
    order = {k: i for i, k in enumerate(a["image_keys"])}
    keys = torch.tensor(list(order), dtype=torch.long)
    without = without_studies(a, b, labels)
    groups = None if without else torch.tensor(a["study_keys"], dtype=torch.long)
    strata = (torch.tensor(a["image_gt"], dtype=torch.long) > 0).long()
    resamples = resample_weights(strata, seed=seed, keys=keys, groups=groups)
    return order, torch.cat([torch.ones(1, len(order)), resamples]), without


def paired_result(values_a: Tensor, values_b: Tensor, num_images: int, without: list[str]) -> dict[str, Any]:
    """A's and B's figure and A - B, each ``{value, low, high}``, from ``(1 + B,)`` values, the full sample's first;
    the shares of resamples where A's is not above B's (``p_a_not_better``) and not below (``p_a_not_worse``), the
    number of resamples, of images, and what was drawn (``without``: :func:`without_studies`)."""
    difference = values_a - values_b
    drawn = difference[1:]
    return {
        "a": interval(values_a[1:], float(values_a[0])),
        "b": interval(values_b[1:], float(values_b[0])),
        "difference": interval(drawn, float(difference[0])),
        "p_a_not_better": float((drawn <= 0).double().mean()),
        "p_a_not_worse": float((drawn >= 0).double().mean()),
        "resamples": int(drawn.numel()),
        "num_images": num_images,
        "resampled": "images" if without else "studies",
        "without_studies": without,  # the sides whose report records no studies (written before it did)
    }


def paired_bootstrap(
    a: dict[str, Any], b: dict[str, Any], fppi_budget: float, seed: int = SEED, labels: tuple[str, str] = ("A", "B")
) -> dict[str, Any]:
    """TPR at ``fppi <= fppi_budget`` of A and B, and of A - B, each ``{value, low, high}``, over the same resamples
    (:func:`paired_draws`, :func:`paired_result`); ``p_a_not_better``: the share of resamples where A's TPR is not
    above B's."""
    order, weights, without = paired_draws(a, b, seed, labels)
    gt_a, *boxes_a = side_tensors(a, order)
    _, *boxes_b = side_tensors(b, order)
    tprs = []
    for box_image, box_scores, box_tp in (boxes_a, boxes_b):
        tprs.append(resampled_best_within(weights, gt_a, box_image, box_scores, box_tp, (fppi_budget,))[0][:, 0])
    return paired_result(tprs[0], tprs[1], len(order), without) | {"fppi_budget": fppi_budget}


def resampled_tprs(sides: list[dict[str, Any]], fppi_budget: float, seed: int, labels: list[str]) -> torch.Tensor:
    """``(len(sides), 1 + B)``: each side's TPR at ``fppi <= fppi_budget``, over the full sample then over the same
    resamples (the first side's report's draws, :func:`paired_draws`), for a covariance of several runs' TPRs over
    the test set. The sides must rate the same images (ValueError naming the two that do not)."""
    rows = []
    for side, label in zip(sides, labels, strict=True):
        order, weights, _ = paired_draws(sides[0], side, seed, (labels[0], label))
        gt, box_image, box_scores, box_tp = side_tensors(side, order)
        rows.append(resampled_best_within(weights, gt, box_image, box_scores, box_tp, (fppi_budget,))[0][:, 0])
    return torch.stack(rows)


def compare(
    spec_a: str,
    spec_b: str,
    default_run: Path,
    subset: str = "mass",
    masses: str | None = None,
    density: str | None = None,
) -> str:
    """The comparison of two sides as one printed paragraph; ``masses``: counting only the masses of one row of
    Table II per finding BI-RADS or per mass size (:func:`masses_only`); ``density``: over that breast density's
    images (``table2_by_density.md``'s)."""
    from wsod_mammo.detection.record_strata import in_density  # it imports this module

    label_a, a, budget, seed = load_side(spec_a, default_run, subset)
    label_b, b, _, _ = load_side(spec_b, default_run, subset)
    a, b = in_density(a, density, label_a), in_density(b, density, label_b)
    counted = "" if density is None else f" of {density}"
    if masses is not None:
        a, b = masses_only(a, masses, label_a), masses_only(b, masses, label_b)
        found = sum(a["image_gt"])
        if not found:
            raise ValueError(f"--masses: {label_a} has no mass of {masses!r} on its {subset} images")
        counted = f", counting the {count(found, 'mass', 'masses')} of {masses}"
    # A's test report's seed: A's interval is the one its report gives
    r = paired_bootstrap(a, b, budget, seed, (label_a, label_b))
    return (
        f"TPR at FPPI <= {budget:g} on {count(r['num_images'], 'mass image' if subset == 'mass' else 'test image')}"
        f"{counted}, paired bootstrap (95%) over {r['resampled']}{why_images(r['without_studies'])}:\n"
        + paired_lines((label_a, label_b), r)
    )


def paired_lines(labels: tuple[str, str], r: dict[str, Any]) -> str:
    """The lines every paired comparison prints: each side's figure and the difference with their 95% intervals, and
    the share of resamples where A is not better (``n/a`` for a figure without a value or interval)."""
    a, b, difference = (interval_text(r[side], 3) for side in ("a", "b", "difference"))
    return (
        f"  A {labels[0]}: {a}\n  B {labels[1]}: {b}\n"
        f"  A - B: {difference}; share of resamples with A <= B: {r['p_a_not_better']:.3f}\n"
    )


def why_images(without: list[str]) -> str:
    """Why a comparison drew images: the sides whose test report was written before reports recorded studies."""
    if not without:
        return ""
    return f" ({' and '.join(without)}: a test report from before intervals drew studies; test again to draw them)"
