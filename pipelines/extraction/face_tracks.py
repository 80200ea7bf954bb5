"""Face tracks: the same person's faces linked across a clip's sampled frames.

Each sampled frame's faces are assigned to the live tracks by one optimal assignment
(:func:`scipy.optimize.linear_sum_assignment`) on a cost that adds the faces' appearance
(cosine distance of the featurizer's own embedding to the track's running appearance) and
their overlap (1 - IoU with the track's last box). A pair is only allowed when the face's
centre lies within ``max_center_shift`` face sizes per elapsed sampled frame of the track's
last box and the appearance is at least ``min_similarity``: a face that jumps far starts a
new track. A track survives ``max_gap_frames`` sampled frames without its face.

Streaming and splitting: a :class:`FaceTracker` is fed chunk by chunk and holds, per live
track, one box, one appearance vector and the track's mergeable statistics. Each segment of
a split clip tracks alone with local ids; :func:`stitch_tracks` then links the tracks alive at
a segment's end to those starting at the next segment's start with the same cost, and maps
every segment's local ids to clip ids (small integers in order of first appearance).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from common.tables.schema import DescriptorLayout
from pipelines.extraction.statistics import ClipAccumulator
from pipelines.extraction.windows import check_fps

DEFAULT_MIN_TRACK_SECONDS = 1.0
_FORBIDDEN = 1e6  # cost of a disallowed pair: never chosen over an allowed one, dropped if forced


@dataclass(frozen=True)
class TrackerSettings:
    """How faces are linked into tracks; every field is a plain number, recorded in provenance."""

    appearance_weight: float = 1.0
    """Weight of the cosine distance (1 - cos) between a face's embedding and the track's appearance."""
    overlap_weight: float = 0.5
    """Weight of 1 - IoU between a face's box and the track's last box."""
    max_center_shift: float = 1.0
    """How far a face's centre may move, in face sizes (sqrt of box area) per elapsed sampled frame."""
    min_similarity: float = 0.3
    """Lowest cosine similarity of a face to a track's appearance that may still continue it."""
    max_gap_frames: int = 2
    """Sampled frames in a row a track may miss its face and still continue."""
    appearance_momentum: float = 0.7
    """Share of the old appearance kept when a new face joins (running average of unit embeddings)."""

    def __post_init__(self) -> None:
        for name in ("appearance_weight", "overlap_weight", "max_center_shift"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"tracker setting {name} must be a finite number >= 0, got {value!r}")
        if self.appearance_weight == 0 and self.overlap_weight == 0:
            raise ValueError("tracker settings need appearance_weight or overlap_weight above 0")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity is a cosine in [-1, 1], got {self.min_similarity!r}")
        if not isinstance(self.max_gap_frames, int) or self.max_gap_frames < 0:
            raise ValueError(f"max_gap_frames must be an integer >= 0, got {self.max_gap_frames!r}")
        if not 0.0 <= self.appearance_momentum < 1.0:
            raise ValueError(f"appearance_momentum must lie in [0, 1), got {self.appearance_momentum!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- geometry and cost: pure functions on arrays ---------------------------------------------------

def box_geometry(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and centre distance of every box in ``a`` (T, 4+) with every box in ``b`` (N, 4+), each (T, N).

    Boxes are (x1, y1, x2, y2, ...). The distance is in face sizes: pixels over the mean of the
    two boxes' sqrt(area), so the same gate serves small and large faces. One pass, few numpy
    calls: this runs on every sampled frame.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 2:3], a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    inter = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0) \
        * np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0)
    area_a = np.maximum(ax2 - ax1, 0) * np.maximum(ay2 - ay1, 0)
    area_b = np.maximum(bx2 - bx1, 0) * np.maximum(by2 - by1, 0)
    iou = inter / np.maximum(area_a + area_b - inter, 1e-12)
    shift = np.hypot((ax1 + ax2) - (bx1 + bx2), (ay1 + ay2) - (by1 + by2)) \
        / np.maximum(np.sqrt(area_a) + np.sqrt(area_b), 1e-12)  # (centre gap / 2) / (mean size / 2)
    return iou, shift


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), float32."""
    embeddings = np.asarray(embeddings, np.float32)
    norms = np.sqrt(np.einsum("nd,nd->n", embeddings, embeddings))[:, None]
    return np.divide(embeddings, norms, out=np.zeros_like(embeddings), where=norms > 0)


def association_cost(track_boxes: np.ndarray, track_appearances: np.ndarray, track_elapsed: np.ndarray,
                     boxes: np.ndarray, units: np.ndarray, settings: TrackerSettings
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Cost (T, N) of continuing each track with each face, and which pairs are allowed at all.

    ``track_elapsed`` counts the sampled frames since each track's last face (1: the previous
    frame), per track (T,) or per pair (T, N); the allowed centre shift grows with it.
    Appearances and ``units`` are unit vectors.
    """
    similarity = track_appearances @ units.T
    overlap, shift = box_geometry(track_boxes, boxes)
    cost = settings.appearance_weight * (1.0 - similarity) + settings.overlap_weight * (1.0 - overlap)
    elapsed = np.asarray(track_elapsed, np.float64)
    reach = settings.max_center_shift * (elapsed[:, None] if elapsed.ndim == 1 else elapsed)
    allowed = (shift <= reach) & (similarity >= settings.min_similarity)
    return cost, allowed


def assign(cost: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """The (track, face) pairs of the least-cost assignment among allowed pairs.

    Disallowed pairs cost more than any allowed assignment, so the solver first keeps as many
    allowed pairs as it can, then the cheapest; a disallowed pair it was forced to take is dropped.
    """
    if cost.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment  # here: job settings import this module, --help stays light

    rows, cols = linear_sum_assignment(np.where(allowed, cost, _FORBIDDEN))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


# --- records -----------------------------------------------------------------------------------------

@dataclass
class TrackPiece:
    """A track as one tracker saw it: its ends (for stitching) and its faces' mergeable statistics."""

    local_id: int
    first_frame: int
    first_box: np.ndarray
    first_appearance: np.ndarray
    leading_missed: int
    """Sampled frames of the part before the track's first face (0: it starts on the part's first frame)."""
    last_frame: int
    last_box: np.ndarray
    appearance: np.ndarray
    """Running unit appearance at the last face."""
    faces: ClipAccumulator
    n_frames: int = 1
    missed: int = 0
    """Sampled frames since the last face; at the part's end, how long before the end it was last seen."""

    def close(self, track_id: int) -> ClosedTrack:
        return ClosedTrack(track_id, self.first_frame, self.last_frame, self.n_frames, self.faces.descriptor())


@dataclass
class ClosedTrack:
    """A finished track, small: its frames and its AFEW descriptor (mean, std, min, max of its faces)."""

    track_id: int
    first_frame: int
    last_frame: int
    n_frames: int
    descriptor: np.ndarray

    def row(self, fps: float) -> dict[str, Any]:
        """The track's row: start and end are the times of its first and last face."""
        fps = check_fps(fps)
        return {"track_id": self.track_id, "start_s": self.first_frame / fps, "end_s": self.last_frame / fps,
                "n_frames": self.n_frames, "descriptor": self.descriptor}


@dataclass
class SegmentTracks:
    """What one part (a whole clip or a segment) hands on: picklable, small.

    ``pieces`` keep full statistics because a neighbouring segment may continue them: tracks
    alive at the part's end, and tracks that began within ``max_gap_frames`` of its start.
    Every other finished track is in ``closed`` (unless the caller took it with
    :meth:`FaceTracker.pop_closed`), keyed by local id.
    """

    n_tracks: int
    closed: list[ClosedTrack] = field(default_factory=list)
    pieces: list[TrackPiece] = field(default_factory=list)


@dataclass
class ClipTracks:
    """A clip's tracks after stitching: each part's local-to-clip id map, how many tracks the clip
    has, and every track the parts still held, by clip id (those taken earlier with
    :meth:`FaceTracker.pop_closed` are renumbered with :meth:`clip_ids`)."""

    id_maps: list[np.ndarray]
    tracks: list[ClosedTrack]
    n_tracks: int

    def clip_ids(self, part: int, local_ids: np.ndarray) -> np.ndarray:
        """Clip-wide ids of a part's local ids (for its face rows)."""
        return self.id_maps[part][np.asarray(local_ids, np.int64)]


# --- the streaming tracker ---------------------------------------------------------------------------

class FaceTracker:
    """Links one part's faces into tracks as its frames stream by; constant memory per live track."""

    def __init__(self, feature_dim: int, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.layout = DescriptorLayout("afew", feature_dim)
        self._live: dict[int, TrackPiece] = {}
        self._closed: list[ClosedTrack] = []
        self._pieces: list[TrackPiece] = []
        self._next_id = 0
        self._n_frames_seen = 0
        self._last_frame = -1

    @property
    def n_live(self) -> int:
        return len(self._live)

    def live_tracks(self) -> list[TrackPiece]:
        """The tracks that may still continue, by local id (read them, do not change them)."""
        return [self._live[i] for i in sorted(self._live)]

    def _link_frame(self, frame_index: int, boxes: np.ndarray, units: np.ndarray) -> np.ndarray:
        """Give this frame's faces track ids (no statistics yet); unmatched tracks miss a frame."""
        if frame_index <= self._last_frame:
            raise ValueError(f"frame {frame_index} came after frame {self._last_frame}: frames must come in order")
        self._last_frame = frame_index
        ids = np.full(len(boxes), -1, np.int64)
        live = [t for t in self._live.values() if t.missed <= self.settings.max_gap_frames]
        matched: set[int] = set()
        if live and len(boxes):
            appearances = np.stack([t.appearance for t in live])
            cost, allowed = association_cost(np.stack([t.last_box for t in live]), appearances,
                                             np.array([t.missed + 1 for t in live]), boxes, units, self.settings)
            pairs = assign(cost, allowed)
            if pairs:
                rows, cols = np.array(pairs).T
                keep = self.settings.appearance_momentum
                mixed = unit_rows(keep * appearances[rows] + (1 - keep) * units[cols])
                for k, (row, col) in enumerate(pairs):
                    track = live[row]
                    ids[col] = track.local_id
                    matched.add(track.local_id)
                    track.last_frame, track.last_box, track.missed = frame_index, boxes[col, :4].copy(), 0
                    track.n_frames += 1
                    track.appearance = mixed[k]
        for track in live:
            if track.local_id not in matched:
                track.missed += 1
        for col in np.flatnonzero(ids < 0):
            track = TrackPiece(self._next_id, frame_index, boxes[col, :4].copy(), units[col].copy(),
                               self._n_frames_seen, frame_index, boxes[col, :4].copy(), units[col].copy(),
                               ClipAccumulator(self.layout))
            self._live[track.local_id] = track
            ids[col] = track.local_id
            self._next_id += 1
        self._n_frames_seen += 1
        return ids

    def _retire_lost(self) -> None:
        """Move tracks past the gap out of the live set: kept whole if a previous part may own them."""
        for local_id in [i for i, t in self._live.items() if t.missed > self.settings.max_gap_frames]:
            track = self._live.pop(local_id)
            if track.leading_missed <= self.settings.max_gap_frames:
                self._pieces.append(track)
            else:
                self._closed.append(track.close(track.local_id))

    def update_chunk(self, frame_indices: np.ndarray, face_positions: np.ndarray, boxes: np.ndarray,
                     embeddings: np.ndarray) -> np.ndarray:
        """Track a chunk: all its sampled frames (native indices, in order, with or without faces),
        and its faces, each with the position of its frame in ``frame_indices``, its box
        (x1, y1, x2, y2, ...) and its embedding (N, D). Returns each face's local track id."""
        frame_indices = np.asarray(frame_indices, np.int64)
        face_positions = np.asarray(face_positions, np.int64).reshape(-1)
        n_faces = len(face_positions)
        embeddings = np.asarray(embeddings).reshape(n_faces, -1 if n_faces else self.layout.feature_dim)
        boxes = np.asarray(boxes, np.float64).reshape(n_faces, -1 if n_faces else 4)
        if embeddings.shape[1] != self.layout.feature_dim or boxes.shape[1] < 4:
            raise ValueError(f"expected {n_faces} boxes of 4+ values and embeddings of width "
                             f"{self.layout.feature_dim}, got shapes {boxes.shape} and {embeddings.shape}")
        if n_faces and (face_positions.min() < 0 or face_positions.max() >= len(frame_indices)):
            raise ValueError(f"face frame positions must index the chunk's {len(frame_indices)} frames")
        units = unit_rows(embeddings)
        ids = np.full(len(face_positions), -1, np.int64)
        order = np.argsort(face_positions, kind="stable")
        bounds = np.searchsorted(face_positions[order], np.arange(len(frame_indices) + 1))
        for position, frame_index in enumerate(frame_indices):
            faces = order[bounds[position]:bounds[position + 1]]
            ids[faces] = self._link_frame(int(frame_index), boxes[faces], units[faces])
        if len(ids):
            face_frames = frame_indices[face_positions]
            for local_id in np.unique(ids):  # statistics once per track and chunk, not per face
                mask = ids == local_id
                track = self._live[int(local_id)]
                track.faces.add_faces(embeddings[mask], face_frames[mask])
        self._retire_lost()
        return ids

    def update(self, frame_index: int, boxes: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Track one sampled frame's faces (boxes (N, 4+), embeddings (N, D)); returns their local ids."""
        n = len(np.asarray(embeddings))
        return self.update_chunk(np.array([frame_index]), np.zeros(n, np.int64), boxes, embeddings)

    def pop_closed(self) -> list[ClosedTrack]:
        """Hand out (and forget) finished tracks no other part can continue, keyed by local id.

        For an unsplit clip, and for a split clip's first segment, local ids are the clip ids.
        """
        closed, self._closed = self._closed, []
        return closed

    def finish(self) -> SegmentTracks:
        """End the part: tracks still alive become pieces a next segment may continue."""
        pieces = self._pieces + list(self._live.values())
        result = SegmentTracks(self._next_id, self._closed, sorted(pieces, key=lambda t: t.local_id))
        self._live, self._closed, self._pieces = {}, [], []
        return result


# --- stitching parts into the clip's tracks ---------------------------------------------------------

def _join(tail: TrackPiece, head: TrackPiece) -> TrackPiece:
    """One track from a tail piece and the head piece that continues it in the next segment."""
    faces = copy.deepcopy(tail.faces).merge(head.faces)
    return replace(tail, last_frame=head.last_frame, last_box=head.last_box, appearance=head.appearance,
                   faces=faces, n_frames=tail.n_frames + head.n_frames, missed=head.missed)


def stitch_tracks(parts: Sequence[SegmentTracks], settings: TrackerSettings | None = None) -> ClipTracks:
    """Link the parts' tracks across their boundaries and number them clip-wide.

    ``parts`` are a clip's segments in order (one for an unsplit clip). A track alive at a
    segment's end continues as the next segment's track that starts within the gap, when
    the two ends are allowed to link (the tracker's own cost and gates); the assignment is
    solved the same way as within a frame. Clip ids are given in order of first appearance,
    so the first part's map is the identity. The inputs are not changed.
    """
    settings = settings or TrackerSettings()
    gap = settings.max_gap_frames
    id_maps: list[np.ndarray] = []
    tracks: list[ClosedTrack] = []
    open_tails: list[tuple[int, TrackPiece]] = []  # (clip id, the track so far), alive at the last part's end
    next_id = 0
    for index, part in enumerate(parts):
        id_map = np.full(part.n_tracks, -1, np.int64)
        joined: dict[int, TrackPiece] = {}  # local id -> the whole track so far
        heads = [p for p in part.pieces if p.leading_missed <= gap] if index > 0 else []
        continued: set[int] = set()
        if open_tails and heads:
            tails = [t for _, t in open_tails]
            cost, allowed = association_cost(
                np.stack([t.last_box for t in tails]), np.stack([t.appearance for t in tails]),
                np.array([t.missed + h.leading_missed + 1 for t in tails for h in heads]).reshape(len(tails), -1),
                np.stack([h.first_box for h in heads]), np.stack([h.first_appearance for h in heads]), settings)
            within_gap = np.array([[t.missed + h.leading_missed <= gap for h in heads] for t in tails])
            for row, col in assign(cost, allowed & within_gap):
                clip_id, tail = open_tails[row]
                head = heads[col]
                id_map[head.local_id] = clip_id
                joined[head.local_id] = _join(tail, head)
                continued.add(row)
        tracks.extend(tail.close(clip_id) for row, (clip_id, tail) in enumerate(open_tails) if row not in continued)
        for local_id in range(part.n_tracks):
            if id_map[local_id] < 0:
                id_map[local_id] = next_id
                next_id += 1
        last_part = index == len(parts) - 1
        open_tails = []
        for piece in part.pieces:
            whole = joined.get(piece.local_id, piece)
            clip_id = int(id_map[piece.local_id])
            if not last_part and piece.missed <= gap:
                open_tails.append((clip_id, whole))
            else:
                tracks.append(whole.close(clip_id))
        tracks.extend(replace(c, track_id=int(id_map[c.track_id])) for c in part.closed)
        id_maps.append(id_map)
    tracks.extend(tail.close(clip_id) for clip_id, tail in open_tails)
    return ClipTracks(id_maps, sorted(tracks, key=lambda t: t.track_id), next_id)


def track_rows(tracks: Sequence[ClosedTrack], fps: float,
               min_duration_s: float = DEFAULT_MIN_TRACK_SECONDS) -> list[dict[str, Any]]:
    """Rows of the tracks lasting at least ``min_duration_s`` (first to last face); shorter ones get none."""
    fps = check_fps(fps)
    if not math.isfinite(min_duration_s) or min_duration_s < 0:
        raise ValueError(f"minimum track duration must be >= 0 seconds, got {min_duration_s!r}")
    rows = [track.row(fps) for track in tracks]
    return [row for row in rows if row["end_s"] - row["start_s"] >= min_duration_s - 1e-9]


__all__ = ["ClipTracks", "ClosedTrack", "FaceTracker", "SegmentTracks", "TrackPiece",
           "TrackerSettings", "assign", "association_cost", "box_geometry", "stitch_tracks",
           "track_rows", "unit_rows", "DEFAULT_MIN_TRACK_SECONDS"]
