"""The AFROC and weighted AFROC (wAFROC) figures of merit of a detector's boxes: one number for a whole FROC study.

TPR at a few FPPI points reads the FROC curve at chosen places; the figure of merit JAFROC analyses compare methods
by (Chakraborty & Berbaum 2004; the weighted form, Chakraborty 2017, "Observer Performance Methods for Diagnostic
Imaging", ch. 13) is the probability that a mass is rated above the highest-rated box on a normal image:

    wAFROC = 1 / (K1 K2) * sum over normal images k1, mass images k2, masses l of k2 of  W(k2, l) psi(F(k1), M(k2, l))

where ``F(k1)`` is the highest score of a box on normal image ``k1``, ``M(k2, l)`` the highest score of a box that
found mass ``l`` (IoU above the rule), ``-inf`` where there is none (two ``-inf`` tie), ``psi(x, y)`` 1 if ``y > x``,
1/2 if equal, 0 otherwise, and ``W(k2, l) = 1 / (masses of k2)``: every mass image weighs the same. AFROC weighs every
mass the same instead (``W = 1``, divided by the number of masses). Boxes that found no mass on a mass image do not
enter (they are the FROC's false positives; the figure of merit is about normal images' worst box). 0.5 is a detector
that marks nothing anywhere; 1.0 one that finds every mass with a higher score than any box on a normal image.

Both are weighted sums over images, so the bootstrap's ``(B, N)`` draw counts give every resample's figure at once
(a normal image drawn twice counts twice among ``K1``, a mass image among ``K2``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

FIGURES = {"wafroc": "wAFROC", "afroc": "AFROC"}


class Ratings(NamedTuple):
    """What the figures of merit read: ``normal (K1,)`` the normal images (index into the N images) and
    ``normal_rating (K1,)`` each one's highest box score; ``lesion_image (L,)`` each mass's image and
    ``lesion_rating (L,)`` the highest score of a box that found it (``-inf`` none, as for a normal image without
    boxes); ``num_images``: N."""

    normal: Tensor
    normal_rating: Tensor
    lesion_image: Tensor
    lesion_rating: Tensor
    num_images: int


def ratings(image_gt: Tensor, box_image: Tensor, box_scores: Tensor, box_gt: Tensor, gt_image: Tensor) -> Ratings:
    """:class:`Ratings` of N images from ``image_gt (N,)`` (masses per image, those out of the input frame
    included), the boxes ``box_image, box_scores, box_gt (P,)`` (``box_gt``: index into the masses, -1 a false
    positive) and ``gt_image (G,)`` (each mass's image), as ``DetectionResult`` and ``detection_images.json`` hold
    them. A normal image is one without masses."""
    image_gt, box_image, box_gt, gt_image = (t.reshape(-1).long() for t in (image_gt, box_image, box_gt, gt_image))
    box_scores = box_scores.reshape(-1).double()
    if gt_image.numel() != int(image_gt.sum()):
        raise ValueError(f"ratings: {int(image_gt.sum())} masses counted per image but {gt_image.numel()} mass rows")
    lowest = torch.full((gt_image.numel(),), -math.inf, dtype=torch.float64)
    found = box_gt >= 0
    lesion_rating = lowest.scatter_reduce(0, box_gt[found], box_scores[found], "amax")
    per_image = torch.full((image_gt.numel(),), -math.inf, dtype=torch.float64)
    per_image = per_image.scatter_reduce(0, box_image, box_scores, "amax")
    normal = torch.nonzero(image_gt == 0).flatten()
    return Ratings(normal, per_image[normal], gt_image, lesion_rating, int(image_gt.numel()))


def figures_of_merit(r: Ratings, weights: Tensor | None = None) -> dict[str, Tensor]:
    """``{"wafroc", "afroc"}``, each ``(B,)``, under image draw counts ``weights (B, N)`` (None: the full sample,
    ``B = 1``); NaN where a resample has no normal image or no mass."""
    if weights is None:
        weights = torch.ones(1, r.num_images)
    weights = weights.double()
    order = torch.argsort(r.normal_rating, stable=True)
    sorted_rating = r.normal_rating[order].contiguous()
    cumulative = torch.cumsum(weights[:, r.normal[order]], 1)  # (B, K1)
    cumulative = torch.cat([torch.zeros(weights.shape[0], 1, dtype=weights.dtype), cumulative], 1)
    below = torch.searchsorted(sorted_rating, r.lesion_rating.contiguous(), right=False)  # (L,) normals rated lower
    not_above = torch.searchsorted(sorted_rating, r.lesion_rating.contiguous(), right=True)  # lower or tied
    # psi summed over the drawn normal images: those rated lower count 1, ties 1/2
    wins = (cumulative[:, below] + cumulative[:, not_above]) / 2 / cumulative[:, -1:]  # (B, L)
    drawn = weights[:, r.lesion_image]  # (B, L) how often each mass's image was drawn
    masses_of_image = torch.bincount(r.lesion_image, minlength=r.num_images).double()[r.lesion_image]  # (L,)
    per_image = drawn / masses_of_image  # each mass image weighs 1 in all, split among its masses
    return {
        "wafroc": (per_image * wins).sum(1) / per_image.sum(1),
        "afroc": (drawn * wins).sum(1) / drawn.sum(1),
    }


def with_normal_images(r: Ratings, normal_rating: Tensor) -> Ratings:
    """``r`` and ``normal_rating (K,)`` more normal images, numbered after its ``num_images`` (validation rates its
    mass images with ``DetectionMetric`` and its normal images with ``NormalImageRatings``)."""
    added = torch.arange(r.num_images, r.num_images + normal_rating.numel())
    return Ratings(torch.cat([r.normal, added]), torch.cat([r.normal_rating, normal_rating.reshape(-1).double()]),
                   r.lesion_image, r.lesion_rating, r.num_images + normal_rating.numel())  # fmt: skip


def lesion_subset(r: Ratings, keep: Tensor) -> Ratings:
    """``r`` with only the masses ``keep (L,)`` (bool, in ``r.lesion_image`` order); every normal image stays."""
    keep = keep.reshape(-1).bool()
    return Ratings(r.normal, r.normal_rating, r.lesion_image[keep], r.lesion_rating[keep], r.num_images)


def image_subset(r: Ratings, keep: Tensor) -> Ratings:
    """``r`` over the images ``keep (N,)`` (bool): their normal images and the masses on them."""
    keep = keep.reshape(-1).bool()
    normals, lesions = keep[r.normal], keep[r.lesion_image]
    return Ratings(r.normal[normals], r.normal_rating[normals], r.lesion_image[lesions], r.lesion_rating[lesions],
                   r.num_images)  # fmt: skip


def wafroc_curve(r: Ratings) -> tuple[Tensor, Tensor]:
    """The wAFROC curve ``(fpf, wllf)``, each ``(T + 2,)`` from ``(0, 0)`` to ``(1, 1)``: at each distinct finite
    rating ``t`` (highest first), the share of normal images whose best box scores ``>= t`` against the mass-image-
    weighted share of masses found with a box scoring ``>= t``; the last segment joins the unmarked ones. Its
    trapezoidal area is the wAFROC figure of merit (ties 1/2: the diagonal steps)."""
    ratings_all = torch.cat([r.normal_rating, r.lesion_rating])
    thresholds = torch.unique(ratings_all[torch.isfinite(ratings_all)]).flip(0)  # (T,) descending
    masses_of_image = torch.bincount(r.lesion_image, minlength=r.num_images).double()[r.lesion_image]
    weight = 1.0 / masses_of_image / torch.unique(r.lesion_image).numel()  # (L,) each mass image sums to 1 / K2
    fpf = (r.normal_rating[None, :] >= thresholds[:, None]).double().mean(1)
    wllf = ((r.lesion_rating[None, :] >= thresholds[:, None]).double() * weight).sum(1)
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    return torch.cat([zero, fpf, one]), torch.cat([zero, wllf, one])
