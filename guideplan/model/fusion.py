"""Fusion edits: prior studies in the case and their transforms, as undoable commands.

A prior study is a :class:`VolumeNode` (role "prior") plus a :class:`TransformNode`
whose 4x4 maps planning-CT LPS points to the prior's LPS points. Everything here builds
on :mod:`guideplan.model.commands`, so registration results, manual nudges and resets
share the one undo history (nudges merge while a key is held or the mouse drags).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from guideplan.core import geometry
from guideplan.core.volume import Volume
from guideplan.model.commands import AddNode, Group, SetFields
from guideplan.model.nodes import DisplayProps, TransformNode, VolumeNode

if TYPE_CHECKING:
    from guideplan.model.scene import Scene


class _Registered(Protocol):
    """What :func:`apply_registration` needs of a registration result (duck-typed, so the
    model does not import SimpleITK)."""

    matrix: np.ndarray

    def to_json(self) -> dict[str, Any]: ...


def set_transform(
    transform_id: str,
    matrix: np.ndarray,
    *,
    metric: dict[str, Any] | None = None,
    text: str = "Adjust fusion",
    merge_key: object | None = None,
) -> SetFields:
    """The command that gives a TransformNode a new matrix (and, optionally, metric).

    Successive commands with the same ``merge_key`` (e.g. ``("nudge", transform_id)``)
    merge into one undo step until the history is sealed.
    """
    values: dict[str, Any] = {"matrix": np.array(matrix, dtype=float)}
    if metric is not None:
        values["metric"] = dict(metric)
    return SetFields(transform_id, values, text=text, merge_key=merge_key)


def apply_registration(transform_id: str, result: _Registered) -> SetFields:
    """A registration result as one undoable step; the metric keeps it for 'reset'."""
    return set_transform(
        transform_id, result.matrix, metric=result.to_json(), text="Register prior"
    )


def nudge(
    matrix: np.ndarray,
    translation_mm: geometry.ArrayLike = (0.0, 0.0, 0.0),
    rotation_deg: geometry.ArrayLike = (0.0, 0.0, 0.0),
    center: geometry.ArrayLike = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """``matrix`` after moving the prior *as seen on the planning grid*.

    The prior is shown at ``moving(T(p))``; to see it moved by the rigid motion ``N``
    (rotation about ``center``, then translation, all in planning-CT LPS) the new
    transform is ``T @ inv(N)``. So "move 1 mm to the patient's left" is
    ``translation_mm=(1, 0, 0)`` whatever the prior's own axes.
    """
    motion = geometry.rigid_matrix(rotation_deg, translation_mm, center)
    return np.asarray(matrix, dtype=float) @ np.linalg.inv(motion)


def nudge_command(
    scene: Scene,
    transform_id: str,
    translation_mm: geometry.ArrayLike = (0.0, 0.0, 0.0),
    rotation_deg: geometry.ArrayLike = (0.0, 0.0, 0.0),
    center: geometry.ArrayLike = (0.0, 0.0, 0.0),
) -> SetFields:
    """A nudge of the current transform; nudges merge until ``history.seal()``."""
    node = scene.get(transform_id)
    assert isinstance(node, TransformNode)
    return set_transform(
        transform_id,
        nudge(node.matrix, translation_mm, rotation_deg, center),
        text="Nudge fusion",
        merge_key=("nudge", transform_id),
    )


def reset_command(scene: Scene, transform_id: str) -> SetFields:
    """Back to the last registration result (or to identity when there is none)."""
    node = scene.get(transform_id)
    assert isinstance(node, TransformNode)
    registered = node.metric.get("matrix")
    matrix = np.asarray(registered, dtype=float) if registered is not None else np.eye(4)
    return set_transform(transform_id, matrix, text="Reset fusion")


def add_prior(
    scene: Scene,
    volume: Volume,
    name: str,
    *,
    matrix: np.ndarray | None = None,
    source: dict[str, Any] | None = None,
    display: DisplayProps | None = None,
) -> tuple[VolumeNode, TransformNode]:
    """Add a prior study and its transform to the case, as one undoable step.

    The transform starts as ``matrix`` (identity: the scanner coordinates as they are);
    the display starts as a half-transparent blend, in colour for PET.
    """
    transform = TransformNode(
        name=f"{name} -> planning",
        matrix=np.eye(4) if matrix is None else np.array(matrix, dtype=float),
    )
    if display is None:
        pet = volume.modality in ("PT", "PET", "NM")
        display = DisplayProps(
            opacity=0.5,
            fusion="overlay" if pet else "blend",
            colormap="hot" if pet else "grey",
        )
    node = VolumeNode(
        name=name,
        volume=volume,
        role="prior",
        source=dict(source or {}),
        transform_id=transform.id,
        display=display,
    )
    scene.execute(Group([AddNode(transform), AddNode(node)], text=f"Add prior {name}"))
    return node, transform


def priors(scene: Scene) -> list[tuple[VolumeNode, TransformNode | None]]:
    """The prior studies of the case with their transforms, in scene order."""
    out = []
    for node in scene.nodes_of(VolumeNode):
        if node.role != "prior":
            continue
        transform = scene.find(node.transform_id)
        out.append((node, transform if isinstance(transform, TransformNode) else None))
    return out
