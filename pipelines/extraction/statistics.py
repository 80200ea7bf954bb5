"""Clip descriptors from per-face features: pure, mergeable statistics.

Statistics are kept as count, sum and sum of squares in float64 plus min and max, so a clip
can be split across workers and the parts merged exactly; std is the population std (ddof 0)
as numpy's default in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.tables.schema import DescriptorLayout


@dataclass
class RunningStats:
    """Column-wise count, sum, sum of squares, min and max of a stream of D-dimensional rows."""

    dim: int
    count: int = 0
    total: np.ndarray = field(init=False)
    total_sq: np.ndarray = field(init=False)
    minimum: np.ndarray = field(init=False)
    maximum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.total = np.zeros(self.dim, np.float64)
        self.total_sq = np.zeros(self.dim, np.float64)
        self.minimum = np.full(self.dim, np.inf)
        self.maximum = np.full(self.dim, -np.inf)

    def add(self, rows: np.ndarray) -> "RunningStats":
        rows = np.asarray(rows, np.float64).reshape(-1, self.dim)
        if len(rows):
            self.count += len(rows)
            self.total += rows.sum(axis=0)
            self.total_sq += (rows * rows).sum(axis=0)
            np.minimum(self.minimum, rows.min(axis=0), out=self.minimum)
            np.maximum(self.maximum, rows.max(axis=0), out=self.maximum)
        return self

    def merge(self, other: "RunningStats") -> "RunningStats":
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of width {other.dim} into width {self.dim}")
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        np.minimum(self.minimum, other.minimum, out=self.minimum)
        np.maximum(self.maximum, other.maximum, out=self.maximum)
        return self

    def mean(self) -> np.ndarray:
        return self.total / self.count

    def std(self) -> np.ndarray:
        mean = self.mean()
        # E[x^2] - E[x]^2 can dip below zero by rounding when the true variance is ~0.
        return np.sqrt(np.maximum(self.total_sq / self.count - mean * mean, 0.0))


def frame_statistics(faces: np.ndarray) -> np.ndarray:
    """A frame's group vector: concat(mean, std) over its faces (std 0 for a single face)."""
    faces = np.asarray(faces, np.float64)
    if faces.ndim != 2 or len(faces) == 0:
        raise ValueError(f"expected a (K>=1, D) array of face features, got shape {faces.shape}")
    return np.concatenate([faces.mean(axis=0), faces.std(axis=0)])


def group_by_frame(features: np.ndarray, frame_ids: np.ndarray) -> np.ndarray:
    """Per-frame group vectors (F, 2D) for faces tagged with their frame, in order of first appearance."""
    frame_ids = np.asarray(frame_ids)
    _, first, inverse = np.unique(frame_ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    return np.stack([frame_statistics(features[inverse == group]) for group in order])


@dataclass
class ClipAccumulator:
    """Everything a clip's descriptor needs, updated batch by batch and mergeable across parts."""

    layout: DescriptorLayout
    n_frames: int = 0
    n_face_frames: int = 0
    n_faces: int = 0
    max_faces_in_frame: int = 0
    stats: RunningStats = field(init=False)

    def __post_init__(self) -> None:
        width = self.layout.feature_dim * (2 if self.layout.aggregation == "vgaf" else 1)
        self.stats = RunningStats(width)

    def add_frames(self, n_frames: int) -> None:
        """Count decoded frames, with or without faces."""
        self.n_frames += n_frames

    def add_faces(self, features: np.ndarray, frame_ids: np.ndarray) -> None:
        """Add face features (N, D), each tagged with its frame; a frame's faces must come in one call."""
        features = np.asarray(features)
        if len(features) == 0:
            return
        frame_ids = np.asarray(frame_ids)
        _, per_frame = np.unique(frame_ids, return_counts=True)
        self.n_face_frames += len(per_frame)
        self.n_faces += len(features)
        self.max_faces_in_frame = max(self.max_faces_in_frame, int(per_frame.max()))
        if self.layout.aggregation == "vgaf":
            self.stats.add(group_by_frame(features, frame_ids))
        else:
            self.stats.add(features)

    def merge(self, other: "ClipAccumulator") -> "ClipAccumulator":
        self.n_frames += other.n_frames
        self.n_face_frames += other.n_face_frames
        self.n_faces += other.n_faces
        self.max_faces_in_frame = max(self.max_faces_in_frame, other.max_faces_in_frame)
        self.stats.merge(other.stats)
        return self

    @property
    def has_face(self) -> bool:
        return self.stats.count > 0

    def descriptor(self) -> np.ndarray:
        """The clip descriptor in the layout's block order; all zeros for a faceless clip."""
        if not self.has_face:
            return np.zeros(self.layout.length, np.float32)
        if self.layout.aggregation == "vgaf":
            blocks = [self.stats.mean(), self.stats.std()]  # mean_t[mean, std], std_t[mean, std]
        else:
            blocks = [self.stats.mean(), self.stats.std(), self.stats.minimum, self.stats.maximum]
        return np.concatenate(blocks).astype(np.float32)


def one_face_per_frame_descriptor(afew_descriptor: np.ndarray, layout: DescriptorLayout) -> np.ndarray:
    """The descriptor, in ``layout``, of faces given one per frame (a face track) by their AFEW statistics.

    For AFEW it is the descriptor itself. For VGAF each frame's group vector is (x, 0) (one face:
    std 0), so the statistics over frames are mean_t = (mean x, 0) and std_t = (std x, 0): exactly
    what the VGAF aggregation gives for a video showing one person, built from the AFEW blocks.
    """
    afew_descriptor = np.asarray(afew_descriptor, np.float32).reshape(-1)
    d = layout.feature_dim
    if afew_descriptor.size != 4 * d:
        raise ValueError(f"expected an AFEW descriptor of 4 x {d} values, got {afew_descriptor.size}")
    if layout.aggregation == "afew":
        return afew_descriptor
    mean, std = afew_descriptor[:d], afew_descriptor[d : 2 * d]
    zeros = np.zeros(d, np.float32)
    return np.concatenate([mean, zeros, std, zeros])
