"""One synthetic mammogram for `wsod synth`: breast-shaped tissue with multi-scale texture, a pectoral muscle on MLO
views, soft-edged masses of varied size, contrast, elongation and lobulation, calcification-like specks and a bright
label in a corner; and its 12-bit DICOM file, encoded in several of the ways real files are (MONOCHROME1, rescale,
multi-valued windows, either pixel spacing tag).

OpenCV and pydicom are imported where they are used, so that ``wsod synth --help`` starts in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAMMO_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
MAX_VALUE = 4095  # 12-bit


@dataclass(frozen=True)
class _Blob:
    x: float
    y: float
    radius: float
    aspect: float
    angle: float
    lobes: int
    lobe_amp: float
    phase: float
    contrast: float

    def extent(self) -> tuple[float, float]:
        """Half-width and half-height of the blob's support (where its profile is above zero)."""
        a, b = self.radius * (1 + self.lobe_amp), self.radius * self.aspect * (1 + self.lobe_amp)
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        return float(np.hypot(a * cos, b * sin)), float(np.hypot(a * sin, b * cos))


MASS_RADIUS = (0.04, 0.08)  # mass radius range, as fractions of the image width


def _noise(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int]) -> np.ndarray:
    import cv2

    grid = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _breast(rng: np.random.Generator, height: int, width: int, view: str) -> tuple[np.ndarray, np.ndarray]:
    """Tissue image (H, W) in [0, 1] of a left breast (chest wall at x = 0) and its inside-distance map."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    u /= width
    v /= height
    semi_x, semi_y = rng.uniform(0.6, 0.85), rng.uniform(0.40, 0.46)
    center_y = rng.uniform(0.48, 0.52) if view == "CC" else rng.uniform(0.52, 0.56)
    radial = (u / semi_x) ** 2 + ((v - center_y) / semi_y) ** 2  # < 1 inside the breast
    inside = np.clip(1.0 - radial, 0.0, 1.0)
    thickness = np.sqrt(np.clip(inside * 8.0, 0.0, 1.0))  # falls off at the skin line
    texture = sum(w * _noise(rng, height, width, c) for w, c in ((0.6, (6, 4)), (0.3, (24, 16)), (0.15, (96, 60))))
    density = rng.uniform(0.04, 0.08) * np.clip(texture, -2.5, 2.5) + 0.1 * np.clip(inside * 2, 0, 1)
    tissue = thickness * (rng.uniform(0.35, 0.45) + density)
    if view == "MLO":  # pectoral muscle: a bright triangle in the upper chest-wall corner
        muscle = (u / rng.uniform(0.25, 0.35) + v / rng.uniform(0.35, 0.45)) < 1.0
        tissue = np.where(muscle, np.maximum(tissue, 0.62 + 0.05 * texture), tissue)
    return np.clip(tissue, 0.0, 1.0).astype(np.float32), inside


def _stamp(image: np.ndarray, blob: _Blob) -> None:
    """Add a soft-edged, lobulated elliptical blob to ``image`` in place (only its window is touched)."""
    height, width = image.shape
    half_w, half_h = blob.extent()
    x0, x1 = max(0, int(blob.x - half_w) - 1), min(width, int(np.ceil(blob.x + half_w)) + 1)
    y0, y1 = max(0, int(blob.y - half_h) - 1), min(height, int(np.ceil(blob.y + half_h)) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx + 0.5 - blob.x, yy + 0.5 - blob.y
    cos, sin = np.cos(blob.angle), np.sin(blob.angle)
    along, across = dx * cos + dy * sin, (-dx * sin + dy * cos) / blob.aspect
    theta = np.arctan2(across, along)
    rho = np.hypot(along, across) / (blob.radius * (1 + blob.lobe_amp * np.sin(blob.lobes * theta + blob.phase)))
    profile = np.clip(1.0 - rho**2, 0.0, 1.0) ** 1.5
    image[y0:y1, x0:x1] += blob.contrast * profile


def _random_blob(rng: np.random.Generator, inside: np.ndarray, radius: float, contrast: float, **kw: float) -> _Blob:
    height, width = inside.shape
    ys, xs = np.nonzero(inside > kw.pop("depth", 0.35))
    pick = rng.integers(len(xs))
    return _Blob(
        x=float(xs[pick] + rng.uniform()),
        y=float(ys[pick] + rng.uniform()),
        radius=radius,
        aspect=kw.get("aspect", 1.0),
        angle=float(rng.uniform(0, np.pi)),
        lobes=int(rng.integers(3, 7)),
        lobe_amp=kw.get("lobe_amp", 0.0),
        phase=float(rng.uniform(0, 2 * np.pi)),
        contrast=contrast,
    )


def render_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    view: str,
    n_masses: int,
    n_calcs: int = 0,
    mass_radius: tuple[float, float] = MASS_RADIUS,
) -> tuple[np.ndarray, list[tuple[float, float, float, float]], list[tuple[float, float, float, float]]]:
    """One left-oriented image ``(H, W)`` float32 in [0, 1] with its mass boxes and calcification boxes.

    Boxes are xyxy pixel-edge coordinates of each blob's support, unclipped (a mass at the chest wall
    may reach slightly past the edge, as some VinDr boxes do).
    """
    image, inside = _breast(rng, height, width, view)
    masses = []
    for _ in range(n_masses):
        radius = width * rng.uniform(*mass_radius)
        blob = _random_blob(
            rng, inside, radius, float(rng.uniform(0.3, 0.5)), aspect=float(rng.uniform(0.6, 1.0)),
            lobe_amp=float(rng.uniform(0.0, 0.15)),
        )  # fmt: skip
        _stamp(image, blob)
        half_w, half_h = blob.extent()
        masses.append((blob.x - half_w, blob.y - half_h, blob.x + half_w, blob.y + half_h))
    calcs = []
    for index in range(int(rng.integers(3, 9)) + 4 * n_calcs):
        speck = _random_blob(rng, inside, max(0.8, width * rng.uniform(0.003, 0.008)), float(rng.uniform(0.2, 0.35)))
        _stamp(image, speck)
        if index < n_calcs:
            pad = 3 * speck.radius
            calcs.append((speck.x - pad, speck.y - pad, speck.x + pad, speck.y + pad))
    image += rng.normal(0.0, 0.01, image.shape).astype(np.float32)  # quantum noise
    mx0, my0 = int(0.82 * width), int(0.03 * height)  # the label / skin marker, away from the breast
    image[my0 : my0 + max(2, height // 30), mx0 : mx0 + max(3, width // 10)] = 0.95
    return np.clip(image, 0.0, 1.0, out=image), masses, calcs


def write_dicom(path: Path, image: np.ndarray, ids: dict[str, str], laterality: str, view: str, style: int) -> None:
    """Write ``image`` in [0, 1] as a 12-bit DICOM whose decoding gives it back (to 1/4095).

    ``style`` varies the encoding: odd -> MONOCHROME1 (inverted stored values); ``style % 3 == 1`` ->
    a rescale intercept of -100; ``style % 2 == 0`` -> multi-valued window tags (the first one applies); and the
    pixel spacing (``synthetic_spacing_mm``): ``style % 5 == 4`` as PixelSpacing, the others as the detector's
    ImagerPixelSpacing.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    monochrome1, offset = style % 2 == 1, 100 if style % 3 == 1 else 0
    top = MAX_VALUE - offset  # modality values span [0, top]; the window maps them to [0, 1]
    shown = 1.0 - image if monochrome1 else image
    stored = (np.rint(shown * top) + offset).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MAMMO_SOP_CLASS  # type: ignore[assignment]  # pydicom makes a str a UID
    meta.MediaStorageSOPInstanceUID = ids["image_id"]  # type: ignore[assignment]  # pydicom makes a str a UID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["wsod-mammo"])
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MAMMO_SOP_CLASS, ids["image_id"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ids["study_id"], ids["series_id"]
    ds.Modality, ds.ImageLaterality, ds.ViewPosition = "MG", laterality, view
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -offset, "US"
    center, width = top / 2 + 0.5, top + 1
    ds.WindowCenter = [center, center * 0.9] if style % 2 == 0 else center
    ds.WindowWidth = [width, width * 0.8] if style % 2 == 0 else width
    spacing = synthetic_spacing_mm(image.shape[1], style)
    if style % 5 == 4:
        ds.PixelSpacing = [spacing, spacing]
    else:
        ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def synthetic_spacing_mm(width: int, style: int) -> float:
    """mm per pixel of a synthetic image: its width spans 100 mm, times 0.7, 1.1 or 1.6 by ``style``, so that its
    masses (radius 4-8% of the width) measure about 5 to 35 mm, every row of Table II per mass size (real VinDr
    pixels are about 0.07-0.1 mm; these images are a few hundred pixels wide)."""
    return round(100.0 / width * (0.7, 1.1, 1.6)[style % 3], 4)
