"""What the report draws, as small typed records, and the pure functions that build them.

A video's timeline is a sequence of :class:`TimelinePoint` (a time range with one score per
class, or none where no face was seen) and a set of :class:`TrackSpan` (who is on screen
when). The points come from ``jobs.score``'s window rows, or from ``jobs.extract``'s face rows
(the per-frame emotion trace, ``p_<class>``); the spans from track rows, or from the
``track_id`` of face rows. Everything here works on data frames and numpy arrays already in
memory; reading the folders is ``pipelines.reporting.report_sources``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SCORE_PREFIX = "score_"
"""Per-class score columns of ``jobs.score``'s latest, windows and tracks tables."""
PROBABILITY_PREFIX = "p_"
"""Per-class probability columns of ``jobs.extract``'s face rows."""
REGRESSED_COLUMNS = frozenset({"p_valence", "p_arousal"})
"""Face-row outputs that are not class probabilities (the multi-task HSEmotion model)."""

MAX_POINTS = 1500
"""Points per line beyond which neighbouring points are averaged: more than a page's width shows."""


@dataclass(frozen=True)
class TimelinePoint:
    """One stretch of a video: a scored window, a frame of the trace, or a stretch without a face."""

    start_s: float
    end_s: float
    has_face: bool
    label: str | None = None
    """The predicted (or most probable) class; None without a face."""
    scores: tuple[float | None, ...] = ()
    """One value per class of the report, in its class order; empty or None where not scored."""
    n_frames: int | None = None
    n_face_frames: int | None = None
    merged: int = 1
    """How many original points this one averages (see :func:`downsample`)."""

    @property
    def scored(self) -> bool:
        return self.has_face and any(v is not None for v in self.scores)


@dataclass(frozen=True)
class TrackSpan:
    """One face track of a video: from its first to its last face, and its label."""

    track_id: int
    start_s: float
    end_s: float
    n_frames: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class VideoTimeline:
    """Everything the report shows about one video."""

    key: str
    status: str | None = None
    error: str | None = None
    label: str | None = None
    """The video's own label: predicted by the model (scores) or given by the dataset (extract)."""
    n_frames: int | None = None
    n_face_frames: int | None = None
    points: tuple[TimelinePoint, ...] = ()
    tracks: tuple[TrackSpan, ...] | None = None
    """None when no track rows were available at all (not the same as a video with no track)."""
    notes: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float | None:
        ends = [p.end_s for p in self.points] + [t.end_s for t in self.tracks or ()]
        return max(ends) if ends else None

    @property
    def faceless_spans(self) -> list[tuple[float, float]]:
        """Contiguous stretches without a face, neighbours joined."""
        spans: list[tuple[float, float]] = []
        for point in self.points:
            if point.has_face:
                continue
            if spans and point.start_s <= spans[-1][1] + 1e-9:
                spans[-1] = (spans[-1][0], max(spans[-1][1], point.end_s))
            else:
                spans.append((point.start_s, point.end_s))
        return spans


@dataclass(frozen=True)
class Failure:
    key: str
    status: str
    error: str | None
    attempts: int | None = None


@dataclass(frozen=True)
class ReportData:
    """The whole page: where the data came from, the run's counts and failures, and the videos."""

    title: str
    sources: tuple[tuple[str, str], ...]
    """(what, where) for every folder read, e.g. ("scores", "/srv/scores")."""
    classes: tuple[str, ...]
    value_name: str
    """What the per-class values are, for the axis: "classifier score" or "probability"."""
    point_name: str = "windows"
    """What a timeline point is: a scored "windows" row, or one of the trace's "frames"."""
    label_name: str = "predicted"
    """What a video's own label is: "predicted" by the model, or the dataset's "label"."""
    counts: tuple[tuple[str, tuple[tuple[str, int | str], ...]], ...] = ()
    """Titled groups of (name, value), e.g. ("Latest run", (("new", 3), ...))."""
    details: tuple[tuple[str, str], ...] = ()
    failures: tuple[Failure, ...] = ()
    videos: tuple[VideoTimeline, ...] = ()
    videos_total: int = 0
    """Videos known to the output, of which ``videos`` are drawn (see ``--max-videos``)."""
    missing: tuple[str, ...] = ()
    """What could not be shown and why (absent tables of older outputs, a run never finished)."""
    generated_at: str = ""


# --- columns ----------------------------------------------------------------------------------

def class_columns(columns: Iterable[str], prefix: str) -> list[tuple[str, str]]:
    """(column, class name) of every per-class column, in table order.

    Class names keep the spelling of ``jobs.score`` (``score_Happy`` -> ``Happy``); face-row
    columns are lower case (``p_happiness``) and are shown capitalised (``Happiness``).
    """
    found = []
    for column in columns:
        if not column.startswith(prefix) or column in REGRESSED_COLUMNS:
            continue
        name = column[len(prefix):]
        found.append((column, name[:1].upper() + name[1:] if prefix == PROBABILITY_PREFIX else name))
    return found


def _optional_int(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _optional_str(value: object) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


# --- points from window rows -------------------------------------------------------------------

def points_from_windows(rows: pd.DataFrame, score_columns: Sequence[str], key_column: str = "key",
                        ) -> tuple[dict[str, list[TimelinePoint]], dict[str, list[str]]]:
    """Window rows of many videos as timeline points per video, in time order.

    Works for ``jobs.score``'s windows (scores and ``predicted_label``) and ``jobs.extract``'s
    window descriptors (no scores: the points only say where faces were). A row without a time
    range (a video whose frame rate is unknown) is not drawn; its error, when it has one, is
    returned among the notes of its video. Columns are converted whole (hours of 10-second
    windows for hundreds of videos are a few hundred thousand rows).
    """
    points: dict[str, list[TimelinePoint]] = {}
    notes: dict[str, list[str]] = {}
    if rows.empty:
        return points, notes
    n = len(rows)
    keys = rows[key_column].astype(str).to_numpy()
    start = pd.to_numeric(rows["start_s"]).to_numpy(np.float64, na_value=np.nan)
    end = pd.to_numeric(rows["end_s"]).to_numpy(np.float64, na_value=np.nan)
    has_face = (rows["has_face"].astype("boolean").fillna(True).to_numpy(bool) if "has_face" in rows
                else np.ones(n, bool))
    values = (rows[list(score_columns)].apply(pd.to_numeric).to_numpy(np.float64, na_value=np.nan)
              if len(score_columns) else np.empty((n, 0)))
    scores = np.where(np.isnan(values) | ~has_face[:, None], None, values).tolist()
    labels, errors = _objects(rows, "predicted_label"), _objects(rows, "error")
    frames, face_frames = _objects(rows, "n_frames"), _objects(rows, "n_face_frames")
    for i in range(n):
        if np.isnan(start[i]) or np.isnan(end[i]):
            note = f"windows: {errors[i]}" if errors[i] else "windows without a time range"
            notes.setdefault(keys[i], []).append(note)
            continue
        points.setdefault(keys[i], []).append(TimelinePoint(
            start_s=float(start[i]), end_s=float(end[i]), has_face=bool(has_face[i]),
            label=str(labels[i]) if has_face[i] and labels[i] is not None else None, scores=tuple(scores[i]),
            n_frames=None if frames[i] is None else int(frames[i]),
            n_face_frames=None if face_frames[i] is None else int(face_frames[i])))
    for key in points:
        points[key].sort(key=lambda p: (p.start_s, p.end_s))
    return points, {k: sorted(set(v)) for k, v in notes.items()}


def _objects(rows: pd.DataFrame, column: str) -> list[object]:
    """A column as Python values with None for missing ones (all None when the table lacks it)."""
    if column not in rows:
        return [None] * len(rows)
    series = rows[column].astype(object)
    return series.where(series.notna(), None).tolist()


def tracks_from_rows(rows: pd.DataFrame, key_column: str = "key") -> dict[str, list[TrackSpan]]:
    """Track rows (``jobs.score``'s tracks, or ``jobs.extract --tracks-output``) as spans per video."""
    tracks: dict[str, list[TrackSpan]] = {}
    if rows.empty:
        return tracks
    for record in rows.to_dict("records"):
        start, end = record.get("start_s"), record.get("end_s")
        if start is None or end is None or pd.isna(start) or pd.isna(end):
            continue
        tracks.setdefault(str(record[key_column]), []).append(TrackSpan(
            track_id=int(record["track_id"]), start_s=float(start), end_s=float(end),
            n_frames=_optional_int(record.get("n_frames")), label=_optional_str(record.get("predicted_label"))))
    for key in tracks:
        tracks[key].sort(key=lambda t: (t.start_s, t.track_id))
    return tracks


# --- the trace from face rows -------------------------------------------------------------------

def frame_spacing(times: np.ndarray) -> float:
    """The usual gap between sampled frames (median of the gaps), 1 s for a single frame."""
    unique = np.unique(times)
    return float(np.median(np.diff(unique))) if len(unique) > 1 else 1.0


def trace_from_faces(times: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
                     spacing: float | None = None) -> list[TimelinePoint]:
    """The per-frame emotion trace of one video from its face rows.

    ``times`` (n,) are the faces' frame times, ``probabilities`` (n, classes) their class
    probabilities. A frame with several faces shows their mean. Face rows exist only for
    frames with a face, so a gap of more than one and a half frame spacings between two
    frames is a stretch without a face, returned as a faceless point.
    """
    times = np.asarray(times, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(times), len(classes))
    if len(times) == 0:
        return []
    frame_times, inverse = np.unique(times, return_inverse=True)
    sums = np.zeros((len(frame_times), len(classes)))
    np.add.at(sums, inverse, np.nan_to_num(probabilities))
    counts = np.bincount(inverse, minlength=len(frame_times)).astype(np.float64)
    means = sums / counts[:, None]
    step = spacing if spacing is not None else frame_spacing(frame_times)
    names = list(classes)
    points = []
    for i, (t, row) in enumerate(zip(frame_times, means)):
        label = names[int(np.argmax(row))] if names else None
        points.append(TimelinePoint(start_s=float(t), end_s=float(t + step), has_face=True, label=label,
                                    scores=tuple(float(v) for v in row), n_frames=1, n_face_frames=1))
        if i + 1 < len(frame_times) and frame_times[i + 1] - t > 1.5 * step:
            points.append(TimelinePoint(start_s=float(t + step), end_s=float(frame_times[i + 1]), has_face=False,
                                        scores=(None,) * len(names)))
    return points


def tracks_from_faces(times: np.ndarray, track_ids: np.ndarray, probabilities: np.ndarray | None,
                      classes: Sequence[str], spacing: float) -> list[TrackSpan]:
    """Spans of the face tracks of one video, from its face rows' ``track_id``.

    A track runs from its first face to one frame spacing past its last; its label is the class
    of highest mean probability over its faces (None without probabilities).
    """
    times = np.asarray(times, dtype=np.float64)
    track_ids = np.asarray(track_ids)
    spans = []
    for track in np.unique(track_ids[~pd.isna(track_ids)]):
        mine = track_ids == track
        label = None
        if probabilities is not None and len(classes):
            mean = np.nanmean(np.asarray(probabilities, dtype=np.float64)[mine], axis=0)
            label = list(classes)[int(np.nanargmax(mean))] if not np.all(np.isnan(mean)) else None
        spans.append(TrackSpan(track_id=int(track), start_s=float(times[mine].min()),
                               end_s=float(times[mine].max() + spacing),
                               n_frames=int(len(np.unique(times[mine]))), label=label))
    return sorted(spans, key=lambda t: (t.start_s, t.track_id))


def label_tracks(tracks: Sequence[TrackSpan], labels: dict[int, str | None]) -> list[TrackSpan]:
    """Tracks with the labels given by id (those without a label in ``labels`` keep theirs)."""
    return [t if labels.get(t.track_id) is None else
            TrackSpan(t.track_id, t.start_s, t.end_s, t.n_frames, labels[t.track_id]) for t in tracks]


def merge_faceless(points: Sequence[TimelinePoint], windows: Sequence[TimelinePoint]) -> list[TimelinePoint]:
    """A trace with the faceless windows of a window table added (the trace only knows inner gaps)."""
    spans = [(p.start_s, p.end_s) for p in points if not p.has_face]

    def known(window: TimelinePoint) -> bool:
        return any(start <= window.start_s + 1e-9 and window.end_s <= end + 1e-9 for start, end in spans)

    extra = [w for w in windows if not w.has_face and not known(w)]
    return sorted([*points, *extra], key=lambda p: (p.start_s, p.end_s))


# --- shaping for drawing ------------------------------------------------------------------------

def downsample(points: Sequence[TimelinePoint], max_points: int = MAX_POINTS) -> list[TimelinePoint]:
    """At most about ``max_points`` points: runs of neighbours averaged, faceless stretches kept apart.

    Consecutive points are grouped by ``ceil(n / max_points)``; a group never mixes points with
    and without a face, so a stretch without a face stays visible however long the video. A
    group's scores are the means of its points' scores, its label the class of the highest mean
    (when the points carry one), its frames the sums.
    """
    if len(points) <= max_points:
        return list(points)
    size = math.ceil(len(points) / max_points)
    out: list[TimelinePoint] = []
    group: list[TimelinePoint] = []

    def flush() -> None:
        if not group:
            return
        first = group[0]
        if len(group) == 1:
            out.append(first)
        elif not first.has_face:
            out.append(TimelinePoint(first.start_s, group[-1].end_s, False, scores=first.scores,
                                     n_frames=_sum(p.n_frames for p in group),
                                     n_face_frames=_sum(p.n_face_frames for p in group), merged=len(group)))
        else:
            width = max(len(p.scores) for p in group)
            table = np.array([[np.nan if v is None else v for v in p.scores] + [np.nan] * (width - len(p.scores))
                              for p in group], dtype=np.float64)
            with np.errstate(all="ignore"):
                means = np.nanmean(table, axis=0) if width else np.zeros(0)
            scores = tuple(None if np.isnan(v) else float(v) for v in means)
            label = _majority(p.label for p in group)
            out.append(TimelinePoint(first.start_s, group[-1].end_s, True, label=label, scores=scores,
                                     n_frames=_sum(p.n_frames for p in group),
                                     n_face_frames=_sum(p.n_face_frames for p in group),
                                     merged=sum(p.merged for p in group)))
        group.clear()

    for point in points:
        if group and (len(group) >= size or group[0].has_face != point.has_face):
            flush()
        group.append(point)
    flush()
    return out


def _sum(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _majority(labels: Iterable[str | None]) -> str | None:
    """The most frequent label (the earliest of a tie); None if none."""
    counts: dict[str, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    return max(counts, key=lambda name: counts[name]) if counts else None


@dataclass(frozen=True)
class LabelRun:
    """Consecutive points of one label (or of no face): one band of the label strip."""

    start_s: float
    end_s: float
    label: str | None
    has_face: bool
    points: int = field(default=1)


def label_runs(points: Sequence[TimelinePoint]) -> list[LabelRun]:
    """Neighbouring points of the same label and face state joined into runs (fewer shapes to draw)."""
    runs: list[LabelRun] = []
    for p in points:
        last = runs[-1] if runs else None
        if (last is not None and last.label == p.label and last.has_face == p.has_face
                and p.start_s <= last.end_s + 1e-9):
            runs[-1] = LabelRun(last.start_s, max(last.end_s, p.end_s), last.label, last.has_face, last.points + 1)
        else:
            runs.append(LabelRun(p.start_s, p.end_s, p.label, p.has_face))
    return runs


def pack_lanes(tracks: Sequence[TrackSpan]) -> list[int]:
    """A lane per track such that tracks in one lane never overlap, using as few lanes as possible.

    Tracks are placed in order of start time, each in the first lane free at its start: the
    classic interval partitioning, whose lane count equals the most tracks on screen at once.
    Returned in the order of ``tracks``.
    """
    order = sorted(range(len(tracks)), key=lambda i: (tracks[i].start_s, tracks[i].end_s))
    lane_ends: list[float] = []
    lanes = [0] * len(tracks)
    for i in order:
        for lane, end in enumerate(lane_ends):
            if end <= tracks[i].start_s:
                lanes[i], lane_ends[lane] = lane, tracks[i].end_s
                break
        else:
            lanes[i] = len(lane_ends)
            lane_ends.append(tracks[i].end_s)
    return lanes
