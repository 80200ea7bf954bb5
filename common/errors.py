"""One family of errors for the whole project.

Each type also inherits the built-in exception a caller would expect (``OSError`` for
unreadable files, ``ValueError`` for bad content), so callers can catch either
"any error of ours" (:class:`EmotiwError`) or the plain built-in.
"""

from __future__ import annotations


class EmotiwError(Exception):
    """Base class of every error this project raises on purpose."""


class VideoDecodeError(EmotiwError, OSError):
    """A video could not be opened or decoded (empty, not a video, truncated, a folder)."""


class WeightsNotFoundError(EmotiwError, FileNotFoundError):
    """A featurizer's weights file is missing; the message says where it was looked for."""


class UnsafeCheckpointError(EmotiwError, ValueError):
    """A checkpoint pickle references a callable outside the allow-list; it was not loaded."""


class CheckpointFormatError(EmotiwError, ValueError):
    """A checkpoint loaded safely but does not hold the network we expected."""


class DatasetLayoutError(EmotiwError, ValueError):
    """A dataset folder or label file does not follow the expected layout."""


class IncompatibleArtifactsError(EmotiwError, ValueError):
    """Descriptors or models come from different featurizers, layouts or datasets."""


class OutputPathError(EmotiwError, ValueError):
    """An output path that cannot be written: an existing file, a path under a file, or a folder
    this user may not write in. Checked before any work, so a run never fails at its end for it."""


class FrameRateError(EmotiwError, ValueError):
    """A video states no usable frame rate (missing, zero, negative or not finite), so its frames
    cannot be placed in time: windows and track times need one."""
