"""A minimal DICOM header reader for the common case, several times faster than pydicom.

Loading a series is dominated by parsing hundreds of headers. For ordinary single-frame
little-endian files this module walks the data elements with ``struct`` and keeps only
the raw bytes of the attributes volume building needs, skipping everything else
(sequences included) up to the pixel data, whose offset it records.

Anything outside that common case (no preamble, big endian, deflate, multi-frame or
enhanced images, PET, an unusual character set, a malformed element) returns ``None``
and the caller falls back to pydicom: correctness never depends on this shortcut. Tests
check that both paths give identical headers.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_UNPACK_TAG = struct.Struct("<HH").unpack_from
_UNPACK_U16 = struct.Struct("<H").unpack_from
_UNPACK_U32 = struct.Struct("<I").unpack_from

#: Explicit VRs with a 4-byte length after 2 reserved bytes.
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
TRANSFER_SYNTAX = 0x00020010
MEDIA_SOP_CLASS = 0x00020002
CHARSET = 0x00080005

#: Attributes the loader reads (see dicom_headers); their presence is checked too.
WANTED = frozenset(
    {
        0x00080005,
        0x00080008,
        0x00080016,
        0x00080018,
        0x00080020,
        0x00080060,
        0x0008103E,
        0x00100010,
        0x00100020,
        0x00180050,
        0x00181120,
        0x00181164,
        0x00185100,
        0x0020000D,
        0x0020000E,
        0x00200011,
        0x00200012,
        0x00200013,
        0x00200032,
        0x00200037,
        0x00200052,
        0x00280002,
        0x00280004,
        0x00280008,
        0x00280010,
        0x00280011,
        0x00280030,
        0x00280100,
        0x00280101,
        0x00280103,
        0x00281052,
        0x00281053,
        0x00041220,
        0x52009230,
        0x7FE00008,
        0x7FE00009,
    }
)
#: Character sets whose text this reader decodes itself (others: pydicom).
CHARSETS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


class _Fallback(Exception):
    """Leave this file to pydicom."""


class FastHeader:
    def __init__(self) -> None:
        self.values: dict[int, bytes] = {}
        self.transfer_syntax = ""
        self.media_sop_class = ""
        self.explicit = True
        self.pixel_offset: int | None = None
        self.pixel_length: int | None = None  # None: undefined (encapsulated)


def read_fast_header(fp: BinaryIO, file_size: int) -> FastHeader | None:
    """Parse up to the pixel data, or None when pydicom should handle the file."""
    try:
        return _parse(fp, file_size)
    except (_Fallback, struct.error, IndexError, UnicodeDecodeError):
        return None


def _parse(fp: BinaryIO, file_size: int) -> FastHeader:
    chunk = 1 << 16
    data = fp.read(chunk)
    if len(data) < 144 or data[128:132] != b"DICM":
        raise _Fallback
    header = FastHeader()
    pos = 132
    # File meta information: always explicit VR little endian.
    while True:
        group, _ = _UNPACK_TAG(data, pos)
        if group != 0x0002:
            break
        tag, value, pos = _element(data, pos, explicit=True)
        if tag == TRANSFER_SYNTAX:
            header.transfer_syntax = value.decode("ascii").strip("\0 ")
        elif tag == MEDIA_SOP_CLASS:
            header.media_sop_class = value.decode("ascii").strip("\0 ")
    ts = header.transfer_syntax
    if ts in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99") or not ts:
        raise _Fallback  # big endian, deflated, or unknown: pydicom
    header.explicit = ts != "1.2.840.10008.1.2"
    while pos < file_size:
        if pos + 12 > len(data):
            data = _more(fp, data, file_size)
        tag = _tag(data, pos)
        if tag == PIXEL_DATA:
            vr_skip = 12 if header.explicit else 8
            length = _UNPACK_U32(data, pos + (8 if header.explicit else 4))[0]
            header.pixel_offset = pos + vr_skip
            header.pixel_length = None if length == _UNDEFINED else length
            break
        while True:
            try:
                tag, value, new_pos = _element(data, pos, header.explicit)
                break
            except _NeedMore:
                if len(data) >= file_size:
                    raise _Fallback from None
                data = _more(fp, data, file_size)
        pos = new_pos
        if tag in WANTED:
            header.values[tag] = value
        if tag > PIXEL_DATA:
            break
    return header


class _NeedMore(_Fallback):
    pass


def _more(fp: BinaryIO, data: bytes, file_size: int) -> bytes:
    extra = fp.read(max(len(data), 1 << 16))
    if not extra:
        raise _Fallback
    return data + extra


def _tag(data: bytes, pos: int) -> int:
    group, elem = _UNPACK_TAG(data, pos)
    return (group << 16) | elem


def _element(data: bytes, pos: int, explicit: bool) -> tuple[int, bytes, int]:
    """(tag, raw value, position after the element); sequences are skipped (value b"")."""
    if pos + 8 > len(data):
        raise _NeedMore
    tag = _tag(data, pos)
    if explicit and (tag >> 16) != 0xFFFE:
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise _NeedMore
            length = _UNPACK_U32(data, pos + 8)[0]
            start = pos + 12
        else:
            length = _UNPACK_U16(data, pos + 6)[0]
            start = pos + 8
    else:
        vr = b""
        length = _UNPACK_U32(data, pos + 4)[0]
        start = pos + 8
    if length == _UNDEFINED:
        if vr not in (b"SQ", b"UN", b""):
            raise _Fallback
        end = _skip_undefined(data, start, explicit)
        return tag, b"", end
    end = start + length
    if end > len(data):
        raise _NeedMore
    return tag, (b"" if vr == b"SQ" else data[start:end]), end


def _skip_undefined(data: bytes, pos: int, explicit: bool) -> int:
    """Skip a sequence of undefined length (items, nested sequences) to its delimiter."""
    while True:
        if pos + 8 > len(data):
            raise _NeedMore
        tag = _tag(data, pos)
        length = _UNPACK_U32(data, pos + 4)[0]
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _Fallback
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # item of undefined length: its elements, then the item delimiter
            if pos + 8 > len(data):
                raise _NeedMore
            if _tag(data, pos) == _ITEM_END:
                pos += 8
                break
            _, _, pos = _element(data, pos, explicit)


def encapsulated_complete(fp: BinaryIO, offset: int, file_size: int) -> bool:
    """True if the fragments of encapsulated pixel data end with their delimiter.

    Hops from item header to item header (a few seeks), so a compressed file cut short
    is found at scan time instead of when its slice is decoded.
    """
    pos = offset
    while pos + 8 <= file_size:
        fp.seek(pos)
        head = fp.read(8)
        if len(head) < 8:
            return False
        group, elem = _UNPACK_TAG(head, 0)
        tag = (group << 16) | elem
        if tag == _SEQ_END:
            return True
        if tag != _ITEM:
            return False
        pos += 8 + _UNPACK_U32(head, 4)[0]
    return False
