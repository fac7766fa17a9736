"""Benchmark: what decoding compressed DICOMs in a helper process costs, side by side with decoding in the process.

``read_dicom`` sends compressed (encapsulated) pixel data to a helper process (``data/decoder_process.py``), so
that a decoder crash on a damaged stream costs one file, not the run; the decoded pixels then cross a pipe. This
times, at full size (a 4096 x 3328 12-bit mammogram, as a Hologic exports it), the stored values of a JPEG Lossless
(GDCM) and a JPEG 2000 lossless (OpenJPEG) file decoded in this process vs in the helper (started beforehand:
its one-off start is printed apart), and the whole ``read_dicom``; medians over ``--rounds``, the two alternating;
then the helper's resident memory between files (it gives the decode buffers back after each).

    python tests/benchmarks/bench_decode.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SIZE = (4096, 3328)


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _files(folder: Path) -> dict[str, Path]:
    """The same synthetic 12-bit mammogram as JPEG Lossless (GDCM's encoder) and JPEG 2000 lossless (pydicom's)."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: dicom_objects
    from dicom_objects import gdcm_transcode  # type: ignore[import-not-found]

    from wsod_mammo.data.synthetic_image import render_image, write_dicom

    image = render_image(np.random.default_rng(0), *SIZE, "CC", 1)[0]
    plain = folder / "plain.dcm"
    write_dicom(plain, image, {"image_id": "1.2.3.4", "study_id": "1.2.3", "series_id": "1.2.3.5"}, "L", "CC", 0)
    ds = pydicom.dcmread(plain)
    ds.compress(JPEG2000Lossless)
    ds.save_as(folder / "j2k.dcm")
    return {"JPEG Lossless": gdcm_transcode(plain, folder / "lossless.dcm", JPEGLosslessSV1),
            "JPEG 2000": folder / "j2k.dcm"}  # fmt: skip


def _decode_here(path: Path) -> np.ndarray:
    """The stored values decoded in this process, as ``read_dicom`` did before the helper."""
    import pydicom

    from wsod_mammo.data.dicom import decode_pixels

    return decode_pixels(pydicom.dcmread(path), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from wsod_mammo.data import decoder_process
    from wsod_mammo.data.dicom import read_dicom

    with tempfile.TemporaryDirectory() as tmp:
        files = _files(Path(tmp))
        start = _seconds(lambda: decoder_process.decode_in_helper(files["JPEG Lossless"]))
        print(f"image {SIZE[0]} x {SIZE[1]}; the helper's start and first file: {start:.2f} s")
        print(f"{'file (median ms)':<16}{'in process':>12}{'in helper':>11}{'ratio':>8}{'read_dicom':>12}")
        for name, path in files.items():
            here, helper, whole = [], [], []
            for _ in range(args.rounds):
                here.append(_seconds(functools.partial(_decode_here, path)))
                helper.append(_seconds(functools.partial(decoder_process.decode_in_helper, path)))
                whole.append(_seconds(functools.partial(read_dicom, path)))
            a, b = 1000 * statistics.median(here), 1000 * statistics.median(helper)
            print(f"{name:<16}{a:>12.1f}{b:>11.1f}{b / a:>7.2f}x{1000 * statistics.median(whole):>12.1f}")
            assert np.array_equal(_decode_here(path), decoder_process.decode_in_helper(path))
        time.sleep(1.0)  # the helper gives its memory back after each reply
        print(f"the helper's memory between files: {_rss_mib(decoder_process.helper_pid())}")


def _rss_mib(pid: int | None) -> str:
    """``"<resident> MiB (peak <peak> MiB)"`` of process ``pid`` (Linux's /proc)."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except (OSError, ValueError):
        return "unknown (no /proc)"
    rss, peak = (int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
    return f"{rss:.0f} MiB (peak {peak:.0f} MiB)"


if __name__ == "__main__":
    main()
