"""Paired bootstrap of two classifiers' AUC on the same test images: ``wsod report --compare A:fusion B:fusion``.

Table I gives each run's AUC with an interval of its own; whether GMIC trained with one saliency method classifies
better than trained with another is a question about the difference, which two separate intervals overstate: the
runs were tested on the same images. Both sides are drawn with the same resamples (whole studies where the reports
recorded them, stratified by class), with the first side's seed, so each side's interval is its Table I's. Beside it,
DeLong's test of the difference, clustered by the same studies (:mod:`delong`), for the p-value papers report. And
the two sides' Brier scores over the same resamples (``calibration.md``'s): AUC says which ranks better, the Brier
score whose probabilities a reader can take at their word.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsod_mammo.detection.bootstrap import SEED, classification_figures, interval, interval_text, resample_weights
from wsod_mammo.detection.calibration import calibration_figures
from wsod_mammo.detection.compare import paired_lines, read_images_file, same_images, why_images, without_studies
from wsod_mammo.detection.delong import paired_test
from wsod_mammo.detection.record_strata import in_density
from wsod_mammo.detection.report import count

# GMIC's heads, as training.classification.HEADS names them (the detection package imports nothing of training)
HEAD_NAMES = ("global", "local", "fusion")
CLASSIFICATION = "classification"  # the image record's key for Table I's probabilities per image


def is_head(spec: str) -> bool:
    """Whether ``RUN_DIR:name`` (or ``name``) names a classifier head rather than a saliency method."""
    return spec.rpartition(":")[2] in HEAD_NAMES


def load_head(spec: str, default_run: Path) -> tuple[str, dict[str, Any], int]:
    """``(label, side, bootstrap seed)`` of ``RUN_DIR:head`` or ``head`` (in ``default_run``): :func:`head_side`."""
    label, head, path, data = read_images_file(spec, default_run)
    record = data.get(CLASSIFICATION)
    if record is None:
        raise ValueError(
            f"--compare {spec}: {path} records no probabilities per image (a test report written before they were "
            "recorded); test that run again"
        )
    try:
        return label, head_side(record, head), int(data.get("bootstrap_seed", SEED))
    except ValueError as error:
        raise ValueError(f"--compare {spec}: {path}'s {CLASSIFICATION!r} record is unusable ({error})") from None


def head_side(record: Any, head: str) -> dict[str, Any]:
    """One head's side of a comparison from an image record's ``classification``: its ``class``, ``image_keys``,
    ``target``, ``probabilities`` and, where recorded, ``study_keys``; ValueError saying what is wrong."""
    try:
        if head not in record["heads"]:
            raise ValueError(f"no head {head!r}; it has {sorted(record['heads'])}")
        side: dict[str, Any] = {
            "class": str(record["class"]),
            "image_keys": [int(k) for k in record["image_keys"]],
            "target": [float(v) for v in record["target"]],
            "probabilities": [float(p) for p in record["heads"][head]],
        }
        for name in ("study_keys", "breast_keys"):
            if name in record:
                side[name] = [int(k) for k in record[name]]
        if "density" in record:  # --compare --density: Table I per density's images
            side["density"] = [str(d) for d in record["density"]]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"no {error} key" if isinstance(error, KeyError) else str(error)) from None
    lengths = {
        name: len(side[name]) for name in ("target", "probabilities", "study_keys", "breast_keys") if name in side
    }
    if any(n != len(side["image_keys"]) for n in lengths.values()):
        listed = ", ".join(f"{n} {name}" for name, n in lengths.items())
        raise ValueError(f"{len(side['image_keys'])} image keys but {listed}")
    return side


def breast_side(side: dict[str, Any], label: str) -> dict[str, Any]:
    """One head's side rated per breast, as Table I's breast level rates it (the mean of a breast's views, positive
    where any view is): ``image_keys`` become breast keys and ``study_keys`` each breast's study. ValueError naming
    the side where its report records no breasts."""
    from wsod_mammo.detection.breasts import breast_predictions

    if "breast_keys" not in side:
        raise ValueError(f"--level breast: {label}'s test report records no breast per image (its data names no study "
                         "and side per image, or it was written before it did); test that run again")  # fmt: skip
    breast_of = dict(zip(side["image_keys"], side["breast_keys"], strict=True))
    rated = breast_predictions(torch.tensor(side["probabilities"]), torch.tensor(side["target"]),
                               torch.tensor(side["image_keys"], dtype=torch.int64), breast_of)  # fmt: skip
    if rated is None:
        raise ValueError(f"--level breast: {label} has no image to rate")
    breasts = {"class": side["class"], "image_keys": rated.keys.tolist(), "target": rated.target.tolist(),
               "probabilities": rated.probabilities.tolist()}  # fmt: skip
    if "study_keys" in side:
        study_of = dict(zip(side["breast_keys"], side["study_keys"], strict=True))
        breasts["study_keys"] = [study_of[k] for k in breasts["image_keys"]]
    return breasts


def _b_in_a_order(a: dict[str, Any], b: dict[str, Any], labels: tuple[str, str]) -> list[int]:
    """Where each of A's images is in B: the two sides must rate one class on the same images with the same labels
    (ValueError naming the sides by ``labels`` otherwise)."""
    if a["class"] != b["class"]:
        raise ValueError(
            f"--compare: {labels[0]} rates {a['class']} and {labels[1]} {b['class']}: their AUCs do not compare"
        )
    same_images(a, b, labels)
    position_b = {k: i for i, k in enumerate(b["image_keys"])}
    in_a_order = [position_b[k] for k in a["image_keys"]]
    relabelled = sum(a_t != b["target"][i] for a_t, i in zip(a["target"], in_a_order, strict=True))
    if relabelled:
        raise ValueError(f"--compare: {labels[0]} and {labels[1]} label {relabelled} of the same images differently")
    return in_a_order


def paired_auc(
    a: dict[str, Any],
    b: dict[str, Any],
    seed: int = SEED,
    labels: tuple[str, str] = ("A", "B"),
    with_brier: bool = False,
) -> dict[str, Any]:
    """AUC of A and B, and of A - B, each ``{value, low, high}``, over the same resamples; ``p_a_not_better``: the
    share of resamples where A's AUC is not above B's; ``delong``: DeLong's test of A - B, clustered by study where
    both sides recorded studies (:func:`paired_test`); ``with_brier``: also ``brier``, the same for the Brier score
    (A not better: not below B's), which ``wsod report --compare`` prints and the study's tables do not. Both sides
    must rate one class on the same images with the same labels (``labels`` name the two sides in those errors)."""
    in_a_order = _b_in_a_order(a, b, labels)
    target = torch.tensor(a["target"])
    probabilities = (torch.tensor(a["probabilities"]), torch.tensor([b["probabilities"][i] for i in in_a_order]))
    keys = torch.tensor(a["image_keys"], dtype=torch.int64)  # A's order and seed: its Table I's draws
    without = without_studies(a, b, labels)
    groups = None if without else torch.tensor(a["study_keys"], dtype=torch.int64)
    resamples = resample_weights(target, seed=seed, keys=keys, groups=groups)

    def full_and_drawn(figures: Callable[[Tensor, Tensor, Tensor], dict[str, Tensor]], name: str) -> list[Tensor]:
        """``[A's, B's]`` figure ``name``: the full sample's first, then each resample's."""
        ones = torch.ones(1, keys.numel())
        return [
            torch.cat([figures(ones, p, target)[name][:1], figures(resamples, p, target)[name]]) for p in probabilities
        ]

    auc_a, auc_b = full_and_drawn(classification_figures, "auc")
    difference = auc_a[1:] - auc_b[1:]
    drawn = difference[~torch.isnan(difference)]  # a resample without both classes has no AUC
    result = {
        "a": interval(auc_a[1:], float(auc_a[0])),
        "b": interval(auc_b[1:], float(auc_b[0])),
        "difference": interval(difference, float(auc_a[0] - auc_b[0])),
        "p_a_not_better": float((drawn <= 0).float().mean()) if drawn.numel() else float("nan"),
        "delong": paired_test(*probabilities, target, groups),
        "class": a["class"],
        "num_images": keys.numel(),
        "positive": int((target > 0.5).sum()),
        "resampled": "images" if groups is None else "studies",
        "without_studies": without,
    }
    if with_brier:
        brier_a, brier_b = full_and_drawn(calibration_figures, "brier")
        result["brier"] = {
            "a": interval(brier_a[1:], float(brier_a[0])),
            "b": interval(brier_b[1:], float(brier_b[0])),
            "difference": interval(brier_a[1:] - brier_b[1:], float(brier_a[0] - brier_b[0])),
            "p_a_not_better": float((brier_a[1:] >= brier_b[1:]).double().mean()),  # lower is better
        }
    return result


def compare_auc(spec_a: str, spec_b: str, default_run: Path, level: str = "image", density: str | None = None) -> str:
    """The comparison of two heads (of two runs, or two heads of one run) as one printed paragraph; ``level``:
    ``image`` (Table I) or ``breast`` (Table I's breast level, :func:`breast_side`); ``density``: over that breast
    density's images (``table1_by_density.md``'s)."""
    label_a, a, seed = load_head(spec_a, default_run)
    label_b, b, _ = load_head(spec_b, default_run)
    a, b = in_density(a, density, label_a), in_density(b, density, label_b)
    if level == "breast":
        a, b = breast_side(a, label_a), breast_side(b, label_b)
    r = paired_auc(a, b, seed, (label_a, label_b), with_brier=True)
    return (
        f"AUC of {r['class']} on {count(r['num_images'], 'distinct test image' if level == 'image' else 'breast')}"
        f"{'' if density is None else f' of {density}'} "
        f"({r['positive']} positive{', a breast the mean of its views' if level == 'breast' else ''}), paired "
        f"bootstrap (95%) over {r['resampled']}{why_images(r['without_studies'])}:\n"
        + paired_lines((label_a, label_b), r)
        + f"{delong_text(r['delong'], r['resampled'])}\n"
        + brier_lines((label_a, label_b), r["brier"])
    )


def brier_lines(labels: tuple[str, str], brier: dict[str, Any]) -> str:
    """The Brier scores of the two sides and their difference over the same resamples (lower is better)."""
    a, b, difference = (interval_text(brier[side], 3) for side in ("a", "b", "difference"))
    return (
        f"Brier score of the same probabilities (lower is better), the same resamples:\n  A {labels[0]}: {a}\n"
        f"  B {labels[1]}: {b}\n  A - B: {difference}; share of resamples with A >= B: {brier['p_a_not_better']:.3f}\n"
    )


def delong_text(test: dict[str, float], clustered_over: str) -> str:
    """One line: DeLong's test of A - B with its 95% normal interval, z and two-sided p."""
    name = "DeLong's test" + (", clustered by study (Obuchowski)" if clustered_over == "studies" else "")
    if test["p"] != test["p"]:
        return f"  {name}: undefined (a class, or its spread over two {clustered_over} or more, is missing)"
    return (
        f"  {name}: A - B = {test['difference']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}], "
        f"z = {test['z']:.2f}, {p_text(test['p'])}"
    )


def p_value(p: float) -> str:
    """A p-value as papers print it: ``0.042``, below 0.001 ``< 0.001``."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float) -> str:
    """``p = 0.042``, ``p < 0.001``."""
    shown = p_value(p)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"
