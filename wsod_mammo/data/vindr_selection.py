"""Which of the VinDr-Mammo records a run uses: the images with a finding of the classes and the normal ones
(``selection``), the classes and options checked against the data, the training split's studies held out for
validation, and the counts and one-class warnings said of the splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsod_mammo.data.vindr import NO_FINDING, SPLITS, ImageRecord, Selection


def select_records(
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    selection: Selection = "balanced",
    seed: int = 42,
    normal_max_birads: int = 5,
) -> list[ImageRecord]:
    """Pick the positives (a finding of ``classes``) and negatives (``No Finding``, of a breast assessed at most
    ``normal_max_birads``: ``ImageRecord.is_negative``) per split.

    ``all``: every positive and every negative. ``balanced``: every positive and as many negatives, drawn
    with a seeded generator. ``paper``: one entry per finding row of the classes (an image with two mass
    rows appears twice), matched by as many negatives (1,978 training and 474 test on VinDr-Mammo).
    Images with only other findings are left out. Order: positives then negatives, per split.
    """
    if selection not in ("balanced", "all", "paper"):
        raise ValueError(f"selection: expected 'balanced', 'all' or 'paper', got {selection!r}")
    check_normal_max_birads(normal_max_birads)
    check_classes(records, classes)
    rng = np.random.default_rng(seed)
    chosen: list[ImageRecord] = []
    for split in SPLITS:
        in_split = [r for r in records if r.split == split]
        positives = [r for r in in_split if r.has_class(classes)]
        negatives = [r for r in in_split if r.is_negative(normal_max_birads)]
        if selection == "paper":
            positives = [r for r in positives for f in r.findings if any(c in classes for c in f.categories)]
        if selection != "all" and len(negatives) > len(positives):
            keep = np.sort(rng.choice(len(negatives), size=len(positives), replace=False))
            negatives = [negatives[i] for i in keep]
        chosen += positives + negatives
    return chosen


def unassessed_normals_left_out(records: Sequence[ImageRecord], normal_max_birads: int) -> str | None:
    """What ``normal_max_birads`` below 5 does to ``No Finding`` images whose ``breast_birads`` is empty (a dataset
    of one's own, an external test set): their assessment is unknown, so none is a negative, and a test set without
    BI-RADS lost every negative without a word (Table I's AUC and TNR n/a). The warning's text per split; None when
    no such image is left out."""
    if normal_max_birads >= 5:
        return None
    parts = []
    for split in SPLITS:
        normals = [r for r in records if r.split == split and r.is_normal]
        unknown = sum(r.breast_birads is None for r in normals)
        if unknown:
            kept = sum(r.is_negative(normal_max_birads) for r in normals)
            parts.append(f"{unknown} of the {split} split's {len(normals)} ({kept} kept)")
    if not parts:
        return None
    return (
        f"normal_max_birads={normal_max_birads} leaves out the No Finding images whose breast_birads is empty (their "
        f"assessment unknown): {'; '.join(parts)}; normal_max_birads: 5 keeps every No Finding image as a negative"
    )


def check_classes(records: Sequence[ImageRecord], classes: Sequence[str]) -> None:
    """ValueError naming a class no finding of the data has, with the categories found: a misspelt class
    (``mass``) made every image a negative (``selection: all``) or an empty split blamed on the data; and naming the
    categories that differ from a class only in case or spacing (``['mass']`` rows beside ``['Mass']`` ones)."""
    found = sorted({c for r in records for f in r.findings for c in f.categories} - {NO_FINDING})
    unknown = [c for c in classes if c not in found]
    if unknown and records:
        raise ValueError(f"classes: {unknown} match no finding category of the data (names are case-sensitive); "
                         f"its categories: {found}")  # fmt: skip
    # a converted CSV writing some rows ['mass'] or ['MASS'] beside ['Mass'] lost those rows unsaid: an image of
    # them alone left out of the test set, a box of them beside a Mass box no ground truth (a hit on it an FP)
    spelt = {_folded(name): name for name in classes}
    variants = sorted(c for c in found if c not in classes and _folded(c) in spelt)
    if variants:
        images = sum(any(c in variants for f in r.findings for c in f.categories) for r in records)
        raise ValueError(
            f"finding categories {variants} differ from the classes {sorted({spelt[_folded(c)] for c in variants})} "
            f"only in case or spacing (names are case-sensitive): the {images} image(s) with them would lose those "
            f"findings (left out, or their boxes no ground truth); write them as the class is written"
        )


def _folded(name: str) -> str:
    """A category name as case and spacing aside leave it: ``' MASS '`` and ``'mass'`` fold as ``'Mass'`` does."""
    return " ".join(name.split()).casefold()


def check_distinct_classes(classes: Sequence[str]) -> None:
    """ValueError naming a class given twice: two outputs of one name (``predictions.json``'s ``{name: probability}``
    kept the second's under it)."""
    if repeated := sorted({name for name in classes if list(classes).count(name) > 1}):
        raise ValueError(f"data.classes: each class once, found {repeated} more than once in {list(classes)}")


def check_normal_max_birads(value: int) -> None:
    """ValueError unless ``value`` is a BI-RADS assessment a negative may have at most (1-5)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise ValueError(f"normal_max_birads: expected an integer from 1 to 5, got {value!r}")


def split_train_val(
    records: Sequence[ImageRecord], val_fraction: float = 0.1, seed: int = 42
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Hold out about ``val_fraction`` of the training split's studies (never a study on both sides)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in [0, 1), got {val_fraction}")
    training = [r for r in records if r.split == "training"]
    studies = sorted({r.study_id for r in training})
    n_val = int(round(val_fraction * len(studies)))
    if val_fraction > 0 and n_val == 0 and len(studies) > 1:
        n_val = 1
    order = np.random.default_rng(seed).permutation(len(studies))
    val_studies = {studies[i] for i in order[:n_val]}
    train = [r for r in training if r.study_id not in val_studies]
    val = [r for r in training if r.study_id in val_studies]
    return train, val


def describe_splits(splits: dict[str, list[ImageRecord]], classes: Sequence[str]) -> str:
    """``train 24 images (10 with Mass, 14 normal); val ...``: the counts a user checks first. Images the
    selection lists more than once (the paper's repeats) are also counted once, as ``N distinct``; normals that
    are views of a breast assessed BI-RADS 3-5 (``normal_max_birads`` leaves them out) are counted apart."""
    parts = []
    for name, records in splits.items():
        distinct = len({r.image_id for r in records})
        positive = sum(r.has_class(classes) for r in records)
        normal = sum(r.is_normal for r in records)
        suspicious = sum(r.is_normal and (r.breast_birads or 0) >= 3 for r in records)
        repeats = f", {distinct} distinct" if distinct != len(records) else ""
        of_which = f", {suspicious} of them views of a BI-RADS 3-5 breast" if suspicious else ""
        parts.append(
            f"{name} {len(records)} images ({positive} with {'/'.join(classes)}, {normal} normal{of_which}{repeats})"
        )
    return "; ".join(parts)


def one_class_warning(records: Sequence[ImageRecord], classes: Sequence[str], split: str = "val") -> str | None:
    """What is wrong when ``split`` has images of one kind only for a class (all with it, or none with it): its
    AUROC is undefined there; None when every class has both."""
    if not records:
        return None
    lacking = []
    for name in classes:
        positive = sum(r.has_class([name]) for r in records)
        if positive in (0, len(records)):
            lacking.append(f"no image {'with' if positive == 0 else 'without'} {name}")
    if not lacking:
        return None
    return (
        f"{split} split ({len(records)} images) has {'; '.join(lacking)}: AUROC is undefined there (NaN, or left out "
        "of the mean of several classes) and cannot select best.ckpt; another --data.seed or --data.val_fraction may "
        "give a split with both kinds"
    )
