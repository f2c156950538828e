"""How sure an automatic result is: found, uncertain or not found, and why.

Planning rests on automatic structures (the spinal canal, vertebral bodies and their
levels, bone, skin). A structure in the wrong place reported as found is worse than no
structure: so every automatic result carries a :class:`Finding`, and anything but
``FOUND`` is treated as unknown by the plan, which then says so and asks the user to
confirm or draw it. A structure the user painted or confirmed is ``FOUND`` with
``source="user"`` and always wins over the automatic one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    FOUND = "found"
    UNCERTAIN = "uncertain"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Finding:
    """The status of one automatic (or user-given) structure and the reason for it."""

    status: Status
    reason: str
    confidence: float | None = None  # 0..1 where the method can tell
    source: str = "automatic"  # automatic | user | labels

    @property
    def usable(self) -> bool:
        """Only a found structure may back a distance or the absence of a warning."""
        return self.status is Status.FOUND

    @classmethod
    def found(cls, reason: str, confidence: float | None = None, source: str = "automatic"):
        return cls(Status.FOUND, reason, confidence, source)

    @classmethod
    def uncertain(cls, reason: str, confidence: float | None = None):
        return cls(Status.UNCERTAIN, reason, confidence)

    @classmethod
    def not_found(cls, reason: str):
        return cls(Status.NOT_FOUND, reason, 0.0)

    @classmethod
    def given(cls, source: str = "user", reason: str = "drawn or confirmed by the user"):
        return cls(Status.FOUND, reason, 1.0, source)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": str(self.status),
            "reason": self.reason,
            "source": self.source,
        }
        if self.confidence is not None:
            out["confidence"] = round(float(self.confidence), 2)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        conf = data.get("confidence")
        return cls(
            Status(str(data["status"])),
            str(data.get("reason", "")),
            None if conf is None else float(conf),
            str(data.get("source", "automatic")),
        )
