"""An enhanced image's functional groups read as a classic image's tags, for its one frame.

Enhanced IODs (Breast Projection X-Ray Image, the SOP class of synthesized 2D views and of some vendors' projections;
Enhanced CT/MR) keep what a classic mammogram holds at the top level in functional groups: the window in the Frame
VOI LUT macro (PS3.3 C.7.6.16.2.10), the rescale in Pixel Value Transformation (C.7.6.16.2.9), the side in Frame
Anatomy's Frame Laterality (C.7.6.16.2.8), the spacing in Pixel Measures (C.7.6.16.2.1). Unread, such a file was
shown by the min-max of its pixels instead of its window, its side guessed from the image and its spacing unknown,
without a word. Here a one-frame object's shared groups, then its frame's own (which take precedence, as the
standard says), are copied to the top level, where :mod:`dicom_display` and :mod:`dicom` read them.
"""

from __future__ import annotations

import pydicom

# functional group sequence -> the attributes of its item that a classic image holds at the top level
GROUPS = {
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction", "WindowCenterWidthExplanation",
                            "VOILUTSequence"),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "PixelMeasuresSequence": ("PixelSpacing",),
    "FrameAnatomySequence": ("FrameLaterality",),
}  # fmt: skip
LATERALITY_OF = {"FrameLaterality": "ImageLaterality"}  # an attribute that a classic image names otherwise


def flatten_functional_groups(ds: pydicom.Dataset) -> None:
    """Copy the one frame's functional-group attributes of :data:`GROUPS` to ``ds``'s top level (shared groups
    first, the frame's own after them); a data set without functional groups is left as it is."""
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(keyword)
        if not groups:
            continue
        for sequence, attributes in GROUPS.items():
            items = groups[0].get(sequence)
            if not items:
                continue
            for attribute in attributes:
                if attribute in items[0]:
                    setattr(ds, LATERALITY_OF.get(attribute, attribute), items[0][attribute].value)
