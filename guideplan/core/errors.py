"""User-facing error hierarchy.

Every expected failure raises a subclass of :class:`GuideplanError`; its message says
what is wrong and what the user can do about it. The GUI shows the message in a dialog,
the CLI prints it and exits non-zero. A traceback is never the user's problem.
"""

from __future__ import annotations


class GuideplanError(Exception):
    """Base of every error the user is expected to read."""

    #: A short title for dialogs ("Cannot load series").
    title = "guideplan error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} {hint}")


class DicomError(GuideplanError):
    """Something about DICOM input is wrong."""

    title = "DICOM problem"


class NotDicomError(DicomError):
    """The path holds no readable DICOM."""

    title = "No DICOM found"


class NoSeriesError(DicomError):
    """A folder was scanned, but no image series could be found in it."""

    title = "No image series"


class SeriesNotFoundError(DicomError):
    """The requested SeriesInstanceUID is not in the folder."""

    title = "Series not found"


class AmbiguousSeriesError(DicomError):
    """The folder holds several series and none was chosen."""

    title = "Several series"


class VolumeFormationError(DicomError):
    """A series exists but its slices cannot form one volume."""

    title = "Cannot form a volume"


class PixelDataError(DicomError):
    """Pixel data missing, truncated or in a transfer syntax that cannot be decoded."""

    title = "Cannot read pixel data"


class CancelledError(GuideplanError):
    """The user cancelled a long operation; nothing was changed."""

    title = "Cancelled"


class CaseFileError(GuideplanError):
    """A case file is broken, foreign, or from a newer version."""

    title = "Cannot open case"


class RegistrationError(GuideplanError):
    """Two images cannot be aligned as asked (too few landmarks, no overlap ...)."""

    title = "Cannot register"
