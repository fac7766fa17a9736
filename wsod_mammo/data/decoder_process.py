"""Compressed pixel data decoded in a helper process, so that a decoder crash costs one file, not the run.

The decoders behind compressed DICOM pixel data (GDCM, OpenJPEG, through pydicom) are C and C++: a damaged JPEG
stream can make them abort (an uncaught C++ exception) or segfault, which kills the process that called them. A
``wsod predict`` over an archive then lost every image's result (its DataLoader worker died, and the run with it,
without naming the file). Here each process that reads DICOMs (the main one, each DataLoader worker) keeps one
helper process (``python -m wsod_mammo.data.decoder_process``, about 0.3 s to start, once) that decodes the
encapsulated (compressed) files it is sent by path and sends the stored values back through a pipe; one that dies
on a file is named in a :class:`~wsod_mammo.data.dicom.DicomError` and started again for the next file.
Uncompressed pixel data is a copy of bytes, read in the calling process as before.

Protocol, over the helper's stdin and stdout: a path (8-byte little-endian length, then its bytes); the reply is
``A`` + the length of a JSON header ``{"dtype", "shape"}`` + the header + the pixel bytes, or ``E`` + the length of
a message + the message (the DicomError it raised). The helper ignores Ctrl-C (its caller decides what a Ctrl-C
stops) and exits when its stdin closes (its caller ended, however it ended).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import gc
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import numpy as np

# a decode that takes longer is stopped (a decoder looping on a damaged stream); a 4096 x 3328 JPEG 2000 takes ~2 s
TIMEOUT_S = 300.0
_LENGTH = struct.Struct("<Q")
# signals that mean the decoder itself failed on the file (not a signal sent to the job from outside)
CRASH_SIGNALS = {signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL}


class DecoderCrashed(Exception):
    """The helper process died or hung on a file; the message says how (``dicom`` names the file). ``damaged``:
    the decoder failed on the file itself (it crashed or hung), not a signal sent to the job from outside."""

    def __init__(self, message: str, damaged: bool) -> None:
        super().__init__(message)
        self.damaged = damaged


class DecoderProcess:
    """The calling process's helper: started on first use, and again after one died; a process forked from the
    caller (a DataLoader worker) starts its own rather than share the parent's pipes."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def decode(self, path: Path) -> np.ndarray:
        """The stored values of ``path``'s pixel data. ``DecoderCrashed`` when the helper died or hung on it;
        ``ValueError`` with the helper's message when the file cannot be decoded."""
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                _send(process.stdin, os.fsencode(path))
                kind = _receive(process.stdout, 1, TIMEOUT_S)
                header = json.loads(_receive(process.stdout, _length(process.stdout)))
                body = _receive(process.stdout, _length(process.stdout))
            except (BrokenPipeError, EOFError, TimeoutError) as err:
                raise self._ended(err) from None
            except BaseException:  # a Ctrl-C mid-reply: its rest would be read as the next file's pixels
                self._discard()
                raise
            if kind == b"E":
                raise ValueError(body.decode("utf-8", "replace"))
            return np.frombuffer(body, np.dtype(header["dtype"])).reshape(header["shape"])

    @property
    def pid(self) -> int | None:
        """The helper's process id; None where this process has none running."""
        process = self._process
        return process.pid if process is not None and self._pid == os.getpid() and process.poll() is None else None

    def close(self) -> None:
        """End the helper (it exits when its stdin closes)."""
        process, self._process = self._process, None
        if process is not None and self._pid == os.getpid() and process.stdin is not None:
            process.stdin.close()
            process.wait()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._pid != os.getpid():  # forked: the pipes are the parent's helper's
            self._process, self._pid = None, os.getpid()
        if self._process is None or self._process.poll() is not None:
            command = [sys.executable, "-m", "wsod_mammo.data.decoder_process"]
            # this package first on the helper's path, wherever the caller imported it from (a notebook's sys.path)
            package_root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
            # unbuffered: ``select`` then sees every byte of a reply that has not been read
            self._process = subprocess.Popen(command, bufsize=0, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             env={**os.environ, "PYTHONPATH": path})  # fmt: skip
        return self._process

    def _discard(self) -> None:
        """Stop the helper and forget it, whatever it was doing: the next file starts a new one."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def _ended(self, err: Exception) -> DecoderCrashed:
        """How the helper ended (killed first if it hung), and forget it: the next file starts a new one."""
        process, self._process = self._process, None
        assert process is not None
        if isinstance(err, TimeoutError):
            process.kill()
            process.wait()
            return DecoderCrashed(f"decoding took over {TIMEOUT_S:.0f} s and was stopped: a damaged stream?", True)
        code = process.wait()
        if code < 0 and -code in CRASH_SIGNALS:
            name = signal.Signals(-code).name
            return DecoderCrashed(f"the decoder crashed on them, {name}: the compressed stream is damaged", True)
        if code < 0:
            return DecoderCrashed(f"the decoder process was stopped by {signal.Signals(-code).name}", False)
        return DecoderCrashed(f"the decoder process exited with status {code}", False)


def _send(stream: IO[bytes], data: bytes) -> None:
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:  # an unbuffered pipe may take part of it
        view = view[stream.write(view) or 0 :]


def _length(stream: IO[bytes]) -> int:
    return int(_LENGTH.unpack(_receive(stream, _LENGTH.size))[0])


def _receive(stream: IO[bytes], size: int, timeout: float | None = None) -> bytearray:
    """Exactly ``size`` bytes (writable: the pixels' array is made on them without a copy); EOFError when the other
    end closed first, TimeoutError when none came within ``timeout`` seconds."""
    if timeout is not None and not select.select([stream], [], [], timeout)[0]:
        raise TimeoutError
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        got = stream.readinto(view[done:])  # type: ignore[attr-defined]
        if not got:
            raise EOFError
        done += got
    return buffer


_DECODER = DecoderProcess()
atexit.register(_DECODER.close)


def decode_in_helper(path: Path) -> np.ndarray:
    """``path``'s stored pixel values, decoded in this process's helper (see the module's docstring)."""
    return _DECODER.decode(path)


def helper_pid() -> int | None:
    """The process id of this process's helper; None before its first compressed file (or after a fork)."""
    return _DECODER.pid


def _serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The helper's loop: decode each path it is sent, until its stdin closes."""
    from wsod_mammo.data.dicom import DicomError, decode_file_pixels

    while True:
        try:
            size = _length(requests)
        except EOFError:
            return
        path = Path(os.fsdecode(bytes(_receive(requests, size))))
        try:
            pixels = np.ascontiguousarray(decode_file_pixels(path))
        except DicomError as err:
            _reply(replies, b"E", b"{}", str(err).encode("utf-8", "surrogateescape"))
            continue
        except Exception as err:  # noqa: BLE001 - whatever the decoder raised goes back as the file's reason
            message = f"{path}: pixel data cannot be decoded ({type(err).__name__}: {err})"
            _reply(replies, b"E", b"{}", message.encode("utf-8", "surrogateescape"))
            continue
        header = json.dumps({"dtype": pixels.dtype.str, "shape": list(pixels.shape)}).encode()
        _reply(replies, b"A", header, pixels.data.cast("B"))
        del pixels
        _give_memory_back()


def _give_memory_back() -> None:
    """Return the freed decode buffers to the system (glibc keeps them: a helper held 182 MB after a 4096 x 3328
    JPEG 2000 file, 72 MB with this), so a helper per DataLoader worker stays small between files."""
    gc.collect()  # pydicom's data sets hold cycles: the file's bytes and the decoded array wait for the collector
    if (trim := _malloc_trim()) is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs ``ldconfig``: 1.3 ms a file); None where the C
    library is not glibc (musl, macOS): nothing to trim this way."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _reply(stream: IO[bytes], kind: bytes, header: bytes, body: bytes | memoryview) -> None:
    stream.write(kind + _LENGTH.pack(len(header)) + header + _LENGTH.pack(len(body)))
    stream.write(body)
    stream.flush()


def main() -> None:
    """Entry of the helper process: replies on a private copy of stdout, whose descriptor then points at stderr,
    so that nothing a decoder prints can mix into a reply."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
