"""Label maps: the label table and sparse edit differences, numpy only.

Why sparse differences: a brush dab on a 512x512x300 label map touches a few hundred
voxels, a region growing a few thousand; keeping a copy of the whole array per undo step
would cost 78 MB each. A :class:`LabelDiff` keeps only the flat indices (C order, the
``[k, j, i]`` array's ``ravel``) that change, with their old and new values. Applying and
reverting are exact, and the dabs of one stroke compose into one undo step (:meth:`then`).

Why a label table in resources: names, colours, kinds (lesion / bone / critical) and the
safety-distance setting each critical structure uses are data a department adapts; a
user copy of ``labels.json`` adds or overrides entries by id (see :func:`load_label_table`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guideplan.core.errors import GuideplanError
from guideplan.core.resources import PACKAGE_RESOURCES, user_resources_dir

#: A sub-box of a ``[k, j, i]`` array: three slices with explicit start and stop.
Box = tuple[slice, slice, slice]

#: Label value of "no label".
BACKGROUND = 0

LABEL_KINDS = ("lesion", "bone", "critical", "other")


# ======================================================================================
# sparse differences
# ======================================================================================


@dataclass(frozen=True, eq=False)
class LabelDiff:
    """What an edit changes in one label array: flat indices, old and new values.

    ``indices`` are sorted and unique; ``old[n]`` and ``new[n]`` differ for every n (no
    no-op entries), so ``len(diff)`` is the number of voxels the edit changes.
    """

    shape: tuple[int, int, int]
    indices: np.ndarray
    old: np.ndarray
    new: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.indices) == len(self.old) == len(self.new)):
            raise ValueError("indices, old and new must have the same length")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, shape: tuple[int, ...], dtype: Any = np.uint8) -> LabelDiff:
        none = np.empty(0, dtype=dtype)
        return cls(_shape3(shape), np.empty(0, dtype=np.int64), none, none.copy())

    @classmethod
    def from_values(
        cls, array: np.ndarray, indices: np.ndarray, new_values: np.ndarray | int
    ) -> LabelDiff:
        """Set ``array.flat[indices] = new_values`` as a diff (the array is not changed)."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        new = np.broadcast_to(np.asarray(new_values, dtype=array.dtype), idx.shape)
        order = np.argsort(idx, kind="stable")
        idx, new = idx[order], new[order]
        if idx.size > 1:
            # keep the last value written to a repeated index
            last = np.append(idx[1:] != idx[:-1], True)
            idx, new = idx[last], new[last]
        old = array.ravel()[idx] if array.flags.c_contiguous else array.flat[idx]
        changed = old != new
        return cls(_shape3(array.shape), idx[changed], old[changed].copy(), new[changed].copy())

    @classmethod
    def from_box(cls, array: np.ndarray, box: Box, new_block: np.ndarray) -> LabelDiff:
        """The diff that writes ``new_block`` into ``array[box]``."""
        box = normalize_box(box, array.shape)
        current = array[box]
        if new_block.shape != current.shape:
            raise ValueError(f"block shape {new_block.shape} differs from box {current.shape}")
        kk, jj, ii = np.nonzero(current != new_block)
        idx = np.ravel_multi_index(
            (kk + box[0].start, jj + box[1].start, ii + box[2].start), array.shape
        ).astype(np.int64)
        return cls(
            _shape3(array.shape),
            idx,
            current[kk, jj, ii].astype(array.dtype, copy=True),
            new_block[kk, jj, ii].astype(array.dtype, copy=True),
        )

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray) -> LabelDiff:
        """The diff turning ``before`` into ``after`` (same shape)."""
        if before.shape != after.shape:
            raise ValueError(f"shapes differ: {before.shape} and {after.shape}")
        return cls.from_box(before, full_box(before.shape), after)

    # -- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.indices.size)

    @property
    def is_empty(self) -> bool:
        return self.indices.size == 0

    @property
    def nbytes(self) -> int:
        return int(self.indices.nbytes + self.old.nbytes + self.new.nbytes)

    def bounds(self) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        """Inclusive (k, j, i) corners of the changed voxels, or None: what to redraw."""
        if self.is_empty:
            return None
        kji = np.unravel_index(self.indices, self.shape)
        lo = tuple(int(a.min()) for a in kji)
        hi = tuple(int(a.max()) for a in kji)
        return lo, hi  # type: ignore[return-value]

    def count(self, value: int) -> int:
        """Net number of voxels that gain (+) or lose (-) ``value``."""
        return int(np.count_nonzero(self.new == value) - np.count_nonzero(self.old == value))

    # -- use ----------------------------------------------------------------------------
    def apply(self, array: np.ndarray) -> None:
        """Write the new values into ``array`` in place."""
        self._check(array)
        array.ravel()[self.indices] = self.new

    def revert(self, array: np.ndarray) -> None:
        """Write the old values back into ``array`` in place."""
        self._check(array)
        array.ravel()[self.indices] = self.old

    def inverse(self) -> LabelDiff:
        return LabelDiff(self.shape, self.indices, self.new, self.old)

    def then(self, later: LabelDiff) -> LabelDiff:
        """This edit followed by ``later`` as one diff (``later`` computed after this one).

        Where both touch a voxel, the old value is ours and the new value is ``later``'s;
        voxels that end where they began drop out.
        """
        if later.shape != self.shape:
            raise ValueError("diffs of different arrays cannot be combined")
        if later.is_empty:
            return self
        if self.is_empty:
            return later
        idx = np.union1d(self.indices, later.indices)
        dtype = np.result_type(self.old.dtype, later.old.dtype)
        old = np.empty(idx.size, dtype=dtype)
        new = np.empty(idx.size, dtype=dtype)
        pos_late = np.searchsorted(idx, later.indices)
        old[pos_late] = later.old
        new[pos_late] = later.new
        pos_ours = np.searchsorted(idx, self.indices)
        old[pos_ours] = self.old  # ours is earlier: its old value wins
        only_ours = ~np.isin(self.indices, later.indices, assume_unique=True)
        new[pos_ours[only_ours]] = self.new[only_ours]
        keep = old != new
        return LabelDiff(self.shape, idx[keep], old[keep], new[keep])

    def _check(self, array: np.ndarray) -> None:
        if tuple(array.shape) != self.shape:
            raise ValueError(f"diff is for shape {self.shape}, array has {array.shape}")
        if not array.flags.c_contiguous:
            raise ValueError("label arrays must be C-contiguous to take a diff")


# ======================================================================================
# paint / erase helpers: a mask on a box -> diff
# ======================================================================================


def paint_diff(
    array: np.ndarray,
    mask: np.ndarray,
    value: int,
    box: Box | None = None,
    editable: Iterable[int] | None = None,
) -> LabelDiff:
    """Set ``value`` where ``mask`` is true (``mask`` covers ``box``, or the whole array).

    ``editable`` lists the labels that may be overwritten (e.g. ``{0}`` paints only on
    background, protecting the bone and the canal); None overwrites everything.
    """
    box = full_box(array.shape) if box is None else normalize_box(box, array.shape)
    current = array[box]
    if mask.shape != current.shape:
        raise ValueError(f"mask shape {mask.shape} differs from box {current.shape}")
    write = mask.astype(bool, copy=False) & (current != value)
    if editable is not None:
        write &= np.isin(current, np.fromiter(editable, dtype=np.int64))
    return _diff_where(array, box, write, value)


def erase_diff(
    array: np.ndarray, mask: np.ndarray, value: int | None = None, box: Box | None = None
) -> LabelDiff:
    """Clear to background where ``mask`` is true (only voxels of ``value`` if given)."""
    box = full_box(array.shape) if box is None else normalize_box(box, array.shape)
    current = array[box]
    if mask.shape != current.shape:
        raise ValueError(f"mask shape {mask.shape} differs from box {current.shape}")
    write = mask.astype(bool, copy=False) & (current != BACKGROUND)
    if value is not None:
        write &= current == value
    return _diff_where(array, box, write, BACKGROUND)


def replace_diff(
    array: np.ndarray,
    value: int,
    mask: np.ndarray,
    box: Box | None = None,
    editable: Iterable[int] | None = None,
) -> LabelDiff:
    """Make the voxels of ``value`` inside ``box`` exactly ``mask``: add and remove.

    What islands, grow/shrink, smoothing and interpolation need: the label's new shape
    replaces the old one; removed voxels become background.
    """
    box = full_box(array.shape) if box is None else normalize_box(box, array.shape)
    current = array[box]
    removed = (current == value) & ~mask
    add = mask & (current != value)
    if editable is not None:
        add &= np.isin(current, np.fromiter(editable, dtype=np.int64))
    block = current.copy()
    block[removed] = BACKGROUND
    block[add] = value
    return LabelDiff.from_box(array, box, block)


def _diff_where(array: np.ndarray, box: Box, write: np.ndarray, value: int) -> LabelDiff:
    kk, jj, ii = np.nonzero(write)
    idx = np.ravel_multi_index(
        (kk + box[0].start, jj + box[1].start, ii + box[2].start), array.shape
    ).astype(np.int64)
    old = array[box][kk, jj, ii].copy()
    new = np.full(idx.size, value, dtype=array.dtype)
    return LabelDiff(_shape3(array.shape), idx, old, new)


# ======================================================================================
# boxes
# ======================================================================================


def full_box(shape: tuple[int, ...]) -> Box:
    return (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))


def normalize_box(box: Box, shape: tuple[int, ...]) -> Box:
    """Explicit, clipped start/stop for each slice (step 1 only)."""
    out = []
    for s, n in zip(box, shape, strict=True):
        start, stop, step = s.indices(n)
        if step != 1:
            raise ValueError("boxes are contiguous: slice steps must be 1")
        out.append(slice(start, max(start, stop)))
    return tuple(out)  # type: ignore[return-value]


def box_around(
    center_kji: Iterable[float], radius_vox: Iterable[float], shape: tuple[int, ...]
) -> Box:
    """The box of voxels within ``radius_vox`` (per axis) of a continuous index, clipped."""
    out = []
    for c, r, n in zip(center_kji, radius_vox, shape, strict=True):
        lo = int(np.floor(c - r))
        hi = int(np.ceil(c + r)) + 1
        out.append(slice(min(max(lo, 0), n), min(max(hi, 0), n)))
    return tuple(out)  # type: ignore[return-value]


def mask_bounds(mask: np.ndarray, margin: Iterable[int] = (0, 0, 0)) -> Box | None:
    """Smallest box holding the true voxels of ``mask``, grown by ``margin`` voxels."""
    if not mask.any():
        return None
    out = []
    for axis, m in enumerate(margin):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(hit[0]) - m, 0), min(int(hit[-1]) + 1 + m, mask.shape[axis])))
    return tuple(out)  # type: ignore[return-value]


def _shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"label maps are 3D [k, j, i], got shape {shape}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


# ======================================================================================
# label table
# ======================================================================================


@dataclass(frozen=True)
class LabelDef:
    """One entry of the label table."""

    id: int
    name: str
    color: tuple[float, float, float]
    #: "lesion" (what the treatment must cover), "bone", "critical" (what it must spare)
    #: or "other".
    kind: str = "other"
    #: Name of the safety-distance setting that applies to this structure (planning).
    safety_key: str | None = None
    description: str = ""
    #: DICOM SEG codes: {"category": (value, scheme, meaning), "type": (...)}; optional.
    dicom: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "color": list(self.color),
            "kind": self.kind,
            "safety_key": self.safety_key,
            "description": self.description,
        }
        if self.dicom:
            out["dicom"] = {k: list(v) for k, v in self.dicom.items()}
        return out


@dataclass
class LabelTable(Mapping[int, LabelDef]):
    """Label definitions by id; lookup by name is case-insensitive."""

    entries: dict[int, LabelDef] = field(default_factory=dict)

    def __getitem__(self, label_id: int) -> LabelDef:
        return self.entries[int(label_id)]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def by_name(self, name: str) -> LabelDef:
        key = name.strip().lower()
        for entry in self.entries.values():
            if entry.name.lower() == key:
                return entry
        raise KeyError(f"no label named {name!r}")

    def id_of(self, name: str) -> int:
        return self.by_name(name).id

    def of_kind(self, kind: str) -> list[LabelDef]:
        return [self.entries[i] for i in self if self.entries[i].kind == kind]

    def updated(self, entries: Iterable[LabelDef]) -> LabelTable:
        """A copy with ``entries`` added or replacing those of the same id."""
        merged = dict(self.entries)
        merged.update({e.id: e for e in entries})
        return LabelTable(merged)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "labels.json") -> LabelTable:
        return cls({e.id: e for e in _parse_entries(data, source)})


def load_label_table() -> LabelTable:
    """The packaged label table, extended/overridden by the user's ``labels.json``.

    Unlike other resources, the user's copy is merged entry by entry (by id), so a user
    file holding only the structures a department adds is enough.
    """
    table = LabelTable.from_json(_read(PACKAGE_RESOURCES / "labels.json"), "labels.json")
    user = user_resources_dir() / "labels.json"
    if user.exists():
        table = table.updated(_parse_entries(_read(user), str(user)))
    return table


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GuideplanError(
            f"Label table {path} is missing.", hint="Reinstall guideplan."
        ) from None
    except json.JSONDecodeError as exc:
        raise GuideplanError(
            f"Label table {path} is not valid JSON ({exc}).",
            hint="Fix the file or delete your copy to return to the default table.",
        ) from None


def _parse_entries(data: Mapping[str, Any], source: str) -> list[LabelDef]:
    out = []
    for item in data.get("labels", []):
        try:
            label_id = int(item["id"])
            color = tuple(float(c) for c in item["color"])
            kind = str(item.get("kind", "other"))
            if not 0 < label_id < 65536 or len(color) != 3 or kind not in LABEL_KINDS:
                raise ValueError
            out.append(
                LabelDef(
                    id=label_id,
                    name=str(item["name"]),
                    color=color,  # type: ignore[arg-type]
                    kind=kind,
                    safety_key=item.get("safety_key"),
                    description=str(item.get("description", "")),
                    dicom={
                        k: tuple(str(x) for x in v)  # type: ignore[misc]
                        for k, v in item.get("dicom", {}).items()
                    },
                )
            )
        except (KeyError, TypeError, ValueError):
            raise GuideplanError(
                f"Label entry {item!r} in {source} is invalid.",
                hint="Each label needs an id 1-65535, a name, an RGB colour (0-1) and a "
                f"kind among {', '.join(LABEL_KINDS)}.",
            ) from None
    return out
