"""Any input -> the model's input frame: shapes, colour, folders and pages are checked before OpenCV sees them."""

from __future__ import annotations

import numpy as np
import pytest

from wsod_mammo.data.images import load_padded

SIZE = (64, 32)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (1, 40), (40, 1), (0, 5, 3)])
def test_empty_or_one_pixel_thin_arrays_are_rejected_before_opencv(shape: tuple[int, ...]) -> None:
    """An empty array used to end the whole process with a segfault inside OpenCV (the breast crop)."""
    with pytest.raises(ValueError, match=rf"at least 2x2 pixels, found shape \({shape[0]}, {shape[1]}\)"):
        load_padded(np.zeros(shape, np.uint8), SIZE)
