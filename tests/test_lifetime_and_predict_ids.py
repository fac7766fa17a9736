"""A zombie owner counts as ended; image ids drop an upper-case extension."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from wsod_mammo.data.lifetime import is_running
from wsod_mammo.data.predict_data import predict_image_ids


def test_a_killed_owner_not_yet_reaped_is_not_running() -> None:
    """A trainer killed while its parent has not waited for it is a zombie: its workers must end all the same."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        child.kill()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait for the kernel to make it a zombie, without reaping it
            with open(f"/proc/{child.pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        assert not is_running(child.pid)
    finally:
        child.wait()


def test_upper_case_image_extensions_are_dropped_from_ids() -> None:
    assert predict_image_ids([Path("/x/IMG0001.DCM"), Path("/x/scan.PNG"), Path("/x/1.2.840.5")]) == [
        "IMG0001",
        "scan",
        "1.2.840.5",
    ]


def test_an_input_given_twice_gets_an_id_no_other_input_has() -> None:
    """`x.dcm` twice beside `x-2.dcm` gave ids x, x-2, x-2: two inputs shared rows, and one overlay overwrote the
    other."""
    files = [Path("/d/a/x.dcm"), Path("/d/a/x.dcm"), Path("/d/a/x-2.dcm"), Path("/d/a/x.dcm")]
    assert predict_image_ids(files) == ["x", "x-3", "x-2", "x-4"]
