"""What a path is before any DICOM parser touches it: regular file, plausible DICOM start.

A scan walks folders that users fill with anything. Opening a FIFO blocks for ever, a
device (``/dev/zero``, or a symlink to it) never ends, and pydicom's ``force=True``
parses a zero-filled file at about 0.5 s/MB. So: only regular files are opened, a
file's first bytes must look like DICOM (a preamble, or a plausible first data element),
and a forced parse may read a bounded number of bytes.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from typing import BinaryIO

from guideplan.core.errors import DicomError


class NotRegularFileError(DicomError):
    """The path is a FIFO, a device, a socket or a dangling link: it is never opened."""


class HeaderTooLargeError(DicomError):
    """A forced parse read more than its bound without reaching the pixel data."""


#: Groups a DICOM data set (without file meta) plausibly starts with.
_FIRST_GROUPS = {0x0002, 0x0004, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028}
_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
    b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip


def kind_of(st_mode: int) -> str:
    """A human name for a file type ("FIFO", "character device" ...)."""
    if stat.S_ISFIFO(st_mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(st_mode):
        return "character device"
    if stat.S_ISBLK(st_mode):
        return "block device"
    if stat.S_ISSOCK(st_mode):
        return "socket"
    if stat.S_ISDIR(st_mode):
        return "folder"
    return "special file"


def not_regular_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` must not be opened (None for a regular file), following symlinks."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "dangling symbolic link" if os.path.islink(path) else "file vanished"
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    if stat.S_ISREG(st.st_mode):
        return None
    link = " (through a symbolic link)" if os.path.islink(path) else ""
    return f"not a regular file: a {kind_of(st.st_mode)}{link}; skipped without opening it"


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading; never blocks on a FIFO, never reads a device.

    ``O_NONBLOCK`` makes opening a FIFO return at once; the type is then checked on the
    open descriptor, so a file swapped for a FIFO after the scan's check is refused too.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(
                f"'{path}' is not a regular file (a {kind_of(mode)}).",
                hint="Only image files are read; remove it from the folder or ignore it.",
            )
        if flags & getattr(os, "O_NONBLOCK", 0) and hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def plausible_dicom_start(head: bytes) -> bool:
    """True if ``head`` (the first >= 132 bytes, or the whole file) can begin DICOM.

    Either the 128-byte preamble and "DICM", or (old ACR-NEMA style files without a
    preamble) a first data element of a plausible group with a known explicit VR or a
    sane implicit length, in either byte order.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    for order in "<>":
        group, element = struct.unpack_from(order + "HH", head, 0)
        if group not in _FIRST_GROUPS or element > 0x0FFF:
            continue
        if head[4:6] in _VRS:
            return True
        (length,) = struct.unpack_from(order + "I", head, 4)
        if length < (1 << 20):
            return True
    return False


class BoundedReader(io.RawIOBase):
    """A read-only view of a binary file that refuses to read more than ``limit`` bytes.

    Seeks are free (pydicom skips deferred values by seeking); only bytes actually read
    count, so a parser lost in garbage stops after ``limit`` bytes, not at the file's end.
    """

    def __init__(self, fp: BinaryIO, limit: int, name: str = "") -> None:
        super().__init__()
        self._fp = fp
        self._limit = limit
        self._read = 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._fp.read(size if size is not None and size >= 0 else self._limit + 1)
        self._count(len(data))
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _count(self, n: int) -> None:
        self._read += n
        if self._read > self._limit:
            raise HeaderTooLargeError(
                f"no DICOM header ends within the first {max(self._limit >> 20, 1)} MiB "
                "of data (the file is not DICOM, or is damaged)",
                hint="Remove the file from the folder, or copy it again from the source.",
            )
