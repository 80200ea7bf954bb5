"""Reading the outputs of ``jobs.score`` and ``jobs.extract`` into a :class:`ReportData`.

Only the columns the page shows are read, and the window, track and face rows only of the
videos drawn (a filter pushed down to the Parquet reader), so a report on a large archive reads
its index columns and a few hundred videos' rows. Tables an output lacks (older outputs have no
windows or tracks) are named in ``ReportData.missing`` instead of failing the report.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from common.stores import storage
from common.errors import EmotiwError
from common.stores.publishing import SUCCESS_FILE, is_complete
from pipelines.reporting.timeline_data import (
    PROBABILITY_PREFIX,
    SCORE_PREFIX,
    Failure,
    ReportData,
    TimelinePoint,
    TrackSpan,
    VideoTimeline,
    class_columns,
    downsample,
    frame_spacing,
    label_tracks,
    merge_faceless,
    points_from_windows,
    trace_from_faces,
    tracks_from_faces,
    tracks_from_rows,
)

log = logging.getLogger(__name__)

FAILED_STATUSES = ("error", "failed_permanently")
MAX_FAILURES_SHOWN = 1000
SCORES_LATEST, SCORES_WINDOWS, SCORES_TRACKS, SCORES_HISTORY = "latest", "windows", "tracks", "scores"
MANIFEST_FILE, RUN_PREFIX, SUMMARY_FILE = "_manifest.json", "run=", "_summary.json"
RUN_COUNT_NAMES = ("new", "rescored", "reused", "skipped", "failed", "permanently_failed", "removed")


class ReportInputError(EmotiwError, ValueError):
    """A folder given to the report is not the output it should be; the message names the flag."""


# --- reading tables ------------------------------------------------------------------------------

def _dataset(url: str):  # -> pyarrow.dataset.Dataset, imported lazily with pyarrow.dataset
    """The Parquet files of a folder (files starting with ``_`` or ``.`` skipped), schemas unified.

    Unified, because a folder written over several runs may hold files whose columns differ
    (a model with other classes): each column is read where a file has it, null elsewhere.
    """
    import pyarrow.dataset as ds

    if storage.is_remote(url):
        fs, path = storage.filesystem(url)
        first = ds.dataset(path, format="parquet", filesystem=fs)
    else:
        first = ds.dataset(url, format="parquet")
    schemas = [fragment.physical_schema for fragment in first.get_fragments()]
    if len(schemas) < 2:
        return first
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    return ds.dataset(first.files, schema=unified, format="parquet", filesystem=first.filesystem)


def table_columns(url: str) -> list[str]:
    """Column names of a Parquet folder ([] when it holds no file)."""
    return list(_dataset(url).schema.names)


def read_rows(url: str, columns: Sequence[str], key_column: str | None = None,
              keys: Sequence[str] | None = None) -> pd.DataFrame:
    """The named columns (those the folder has) of a Parquet folder, optionally only rows of ``keys``."""
    import pyarrow.dataset as ds

    dataset = _dataset(url)
    present = [c for c in columns if c in dataset.schema.names]
    if not dataset.files:
        return pd.DataFrame(columns=present)
    row_filter = ds.field(key_column).isin(list(keys)) if key_column is not None and keys is not None else None
    return dataset.to_table(columns=present, filter=row_filter).to_pandas()


def require_folder(url: str, flag: str) -> None:
    """Raise :class:`ReportInputError` naming ``flag`` unless ``url`` is an existing folder."""
    if not storage.exists(url):
        raise ReportInputError(f"{flag} {url}: no such folder")
    if not storage.is_remote(url) and not Path(url).is_dir():
        raise ReportInputError(f"{flag} {url} is a file; it must be an output folder")


def select_keys(keys: Sequence[str], pattern: str | None, max_videos: int) -> tuple[list[str], int]:
    """The keys to draw (sorted, matching the shell-style ``pattern``, the first ``max_videos``), and how many match."""
    matched = sorted({k for k in keys if pattern is None or fnmatch.fnmatchcase(k, pattern)})
    return matched[:max_videos], len(matched)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --- jobs.score -----------------------------------------------------------------------------------

def newest_manifest(scores: str) -> tuple[str, dict[str, Any]] | None:
    """The run id and manifest of the newest finished run under ``<scores>/scores`` (None if none)."""
    history = storage.join(scores, SCORES_HISTORY)
    runs = sorted((n for n in storage.list_dir(history) if n.startswith(RUN_PREFIX)), reverse=True)
    for name in runs:
        url = storage.join(history, name, MANIFEST_FILE)
        if storage.exists(url):
            try:
                return name[len(RUN_PREFIX):], json.loads(storage.read_bytes(url))
            except (OSError, ValueError) as exc:
                log.warning("unreadable manifest %s: %s", url, exc)
    return None


def load_scores_report(scores: str, *, pattern: str | None = None, max_videos: int = 200,
                       title: str | None = None) -> ReportData:
    """Everything the page shows about one ``jobs.score --output``."""
    require_folder(scores, "--scores")
    latest_url = storage.join(scores, SCORES_LATEST)
    if not storage.exists(latest_url):
        raise ReportInputError(f"--scores {scores} holds no {SCORES_LATEST}/ folder; "
                               "give the --output folder of jobs.score")
    latest_columns = table_columns(latest_url)
    classes_from = class_columns(latest_columns, SCORE_PREFIX)
    index = read_rows(latest_url, ["key", "status", "error", "attempts", "has_face", "predicted_label",
                                   "n_frames", "n_face_frames"])
    missing: list[str] = []

    manifest = newest_manifest(scores)
    counts: list[tuple[str, tuple[tuple[str, int | str], ...]]] = []
    details: list[tuple[str, str]] = []
    if manifest is None:
        missing.append(f"No finished run under {storage.join(scores, SCORES_HISTORY)}: the last run's counts "
                       "are unknown (a run that was killed is finished by the next one).")
    else:
        run_id, content = manifest
        run_counts = content.get("counts", {})
        counts.append((f"Last run ({run_id})", tuple(
            [("listed", int(content["listed"]))] if "listed" in content else [])
            + tuple((name.replace("_", " "), int(run_counts[name])) for name in RUN_COUNT_NAMES if name in run_counts)))
        details += [(name, str(content[k])) for name, k in (("run", "run_id"), ("finished", "finished"),
                                                            ("input", "input"), ("model", "model"))
                    if content.get(k) is not None]
        if content.get("adopted_runs"):
            details.append(("resumed runs", ", ".join(map(str, content["adopted_runs"]))))
    statuses = index["status"].value_counts() if len(index) else pd.Series(dtype=int)
    counts.append(("Videos in the latest view", (("videos", len(index)),) + tuple(
        (str(status).replace("_", " "), int(statuses.get(status, 0)))
        for status in ("ok", "faceless", "error", "failed_permanently"))))

    failed = index[index["status"].isin(FAILED_STATUSES)].sort_values("key") if len(index) else index
    failures = tuple(Failure(key=str(r["key"]), status=str(r["status"]), error=_text(r.get("error")),
                             attempts=_int(r.get("attempts")))
                     for r in failed.head(MAX_FAILURES_SHOWN).to_dict("records"))
    if len(failed) > MAX_FAILURES_SHOWN:
        missing.append(f"{len(failed) - MAX_FAILURES_SHOWN} more failures are not listed; "
                       f"pandas.read_parquet('{latest_url}') has them all.")

    drawable = index[~index["status"].isin(FAILED_STATUSES)]["key"].astype(str).tolist() if len(index) else []
    keys, matched = select_keys(drawable, pattern, max_videos)
    windows_url, tracks_url = storage.join(scores, SCORES_WINDOWS), storage.join(scores, SCORES_TRACKS)
    points: dict[str, list[TimelinePoint]] = {}
    window_notes: dict[str, list[str]] = {}
    if storage.exists(windows_url):
        window_columns = table_columns(windows_url)
        class_pairs = _merge_classes(classes_from, class_columns(window_columns, SCORE_PREFIX))
        classes_from = class_pairs
        rows = read_rows(windows_url, ["key", "start_s", "end_s", "n_frames", "n_face_frames", "has_face",
                                       "predicted_label", "error", *[c for c, _ in class_pairs]], "key", keys)
        for column, _ in class_pairs:
            if column not in rows.columns:
                rows[column] = np.nan
        points, window_notes = points_from_windows(rows, [c for c, _ in class_pairs])
    else:
        missing.append(f"No windows table at {windows_url}: written by jobs.score since it scores windows "
                       "(--window-seconds, default 10; 0 turns them off). Timelines show no scores.")
    tracks: dict[str, list[TrackSpan]] | None = None
    if storage.exists(tracks_url):
        tracks = tracks_from_rows(read_rows(tracks_url, ["key", "track_id", "start_s", "end_s", "n_frames",
                                                         "predicted_label"], "key", keys))
    else:
        missing.append(f"No tracks table at {tracks_url}: written by jobs.score since it tracks faces. "
                       "Timelines show no tracks.")

    chosen = index[index["key"].astype(str).isin(keys)] if len(index) else index
    by_key = {str(r["key"]): r for r in chosen.to_dict("records")}
    videos = tuple(VideoTimeline(
        key=key, status=_text(by_key[key].get("status")), error=_text(by_key[key].get("error")),
        label=_text(by_key[key].get("predicted_label")), n_frames=_int(by_key[key].get("n_frames")),
        n_face_frames=_int(by_key[key].get("n_face_frames")), points=tuple(downsample(points.get(key, []))),
        tracks=None if tracks is None else tuple(tracks.get(key, [])), notes=tuple(window_notes.get(key, [])))
        for key in keys)
    if matched > len(keys):
        missing.append(f"{matched - len(keys)} more videos are not drawn (--max-videos {max_videos}); "
                       "choose with --videos PATTERN or raise --max-videos.")
    return ReportData(
        title=title or f"Scores: {scores}", sources=(("scores", str(scores)),),
        classes=tuple(name for _, name in classes_from), value_name="classifier score", label_name="predicted",
        counts=tuple(counts), details=tuple(details), failures=failures, videos=videos, videos_total=matched,
        missing=tuple(missing), generated_at=_now())


def _merge_classes(first: list[tuple[str, str]], second: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen = {c for c, _ in first}
    return list(first) + [(c, n) for c, n in second if c not in seen]


def _text(value: object) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _int(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


# --- jobs.extract ---------------------------------------------------------------------------------

def load_extract_report(*, features: str | None = None, frames: str | None = None, windows: str | None = None,
                        tracks: str | None = None, pattern: str | None = None, max_videos: int = 200,
                        title: str | None = None) -> ReportData:
    """Everything the page shows about the tables of one ``jobs.extract`` run (any of them)."""
    given = {flag: url for flag, url in (("--features", features), ("--frames", frames),
                                         ("--windows", windows), ("--tracks", tracks)) if url}
    if not given:
        raise ReportInputError("give --scores, or at least one of --features, --frames, --windows, --tracks")
    for flag, url in given.items():
        require_folder(url, flag)
        if not is_complete(url):  # a bucket table without _SUCCESS: being replaced, may mix two runs' files
            raise ReportInputError(f"{flag} {url} has no {SUCCESS_FILE}: the job writing it has not finished "
                                   "publishing it (or died while it did, or is older than _SUCCESS markers); run "
                                   "the report once the job has finished, or run the job again")
    missing: list[str] = []
    counts: list[tuple[str, tuple[tuple[str, int | str], ...]]] = []
    details: list[tuple[str, str]] = []

    clips = pd.DataFrame(columns=["clip_id"])
    if features:
        clips = read_rows(features, ["clip_id", "status", "error", "label", "n_frames", "n_face_frames", "has_face"])
        summary = _summary(features)
        if summary:
            counts.append(("Extraction", tuple((name, summary[name]) for name in
                                               ("clips", "ok", "faceless", "error", "frames") if name in summary)))
            details += [(name, str(summary[k])) for name, k in (("seconds", "seconds"),
                                                                ("frames per second", "frames_per_second"),
                                                                ("runner", "runner")) if k in summary]
            details += [("warning", str(w)) for w in summary.get("warnings", [])]
        else:
            statuses = clips["status"].value_counts() if len(clips) else pd.Series(dtype=int)
            counts.append(("Clips", (("clips", len(clips)),) + tuple(
                (s, int(statuses.get(s, 0))) for s in ("ok", "faceless", "error"))))
    failed = clips[clips["status"] == "error"].sort_values("clip_id") if "status" in clips else clips.iloc[0:0]
    failures = tuple(Failure(key=str(r["clip_id"]), status="error", error=_text(r.get("error")))
                     for r in failed.head(MAX_FAILURES_SHOWN).to_dict("records"))

    frame_columns = table_columns(frames) if frames else []
    prob_pairs = class_columns(frame_columns, PROBABILITY_PREFIX)
    classes = tuple(name for _, name in prob_pairs)
    all_keys: set[str] = set(clips["clip_id"].astype(str)) - {f.key for f in failures}
    if not features:
        for url in (frames, windows, tracks):
            if url:
                all_keys |= set(read_rows(url, ["clip_id"])["clip_id"].astype(str))
    keys, matched = select_keys(sorted(all_keys), pattern, max_videos)

    table_counts: list[tuple[str, int | str]] = []
    face_rows = pd.DataFrame()
    if frames:
        face_rows = read_rows(frames, ["clip_id", "time_s", "track_id", *[c for c, _ in prob_pairs]], "clip_id", keys)
        table_counts.append(("face rows", _count_rows(frames)))
        if not prob_pairs:
            missing.append(f"The face rows at {frames} carry no p_<class> columns (the featurizer has no emotion "
                           "head, e.g. effnet_lite0_imagenet): no emotion trace.")
    window_points: dict[str, list[TimelinePoint]] = {}
    window_notes: dict[str, list[str]] = {}
    if windows:
        rows = read_rows(windows, ["clip_id", "start_s", "end_s", "has_face", "n_frames", "n_face_frames", "error"],
                         "clip_id", keys)
        window_points, window_notes = points_from_windows(rows, [], key_column="clip_id")
        table_counts.append(("window rows", _count_rows(windows)))
    track_spans: dict[str, list[TrackSpan]] | None = None
    if tracks:
        track_spans = tracks_from_rows(read_rows(tracks, ["clip_id", "track_id", "start_s", "end_s", "n_frames"],
                                                 "clip_id", keys), key_column="clip_id")
        table_counts.append(("track rows", _count_rows(tracks)))
    if table_counts:
        counts.append(("Tables", tuple(table_counts)))
    if not frames and not windows:
        missing.append("No --frames or --windows: the timelines are empty (pass --frames for the emotion trace).")
    if track_spans is None and not (frames and "track_id" in frame_columns):
        missing.append("No --tracks, and no track_id in the face rows: no tracks are drawn.")

    clip_info = {str(r["clip_id"]): r for r in clips.to_dict("records")}
    faces_by_clip = dict(tuple(face_rows.groupby("clip_id", sort=False))) if len(face_rows) else {}
    videos = []
    for key in keys:
        notes = list(window_notes.get(key, []))
        faces = faces_by_clip.get(key)
        points, spans = _from_faces(faces, prob_pairs, classes, notes) if faces is not None else ([], None)
        table_windows = window_points.get(key, [])
        points = merge_faceless(points, table_windows) if points else table_windows
        if track_spans is not None:
            labels = {t.track_id: t.label for t in spans or []}
            spans = label_tracks(track_spans.get(key, []), labels)
        elif spans is None and frames and "track_id" in frame_columns:
            spans = []
        info = clip_info.get(key, {})
        videos.append(VideoTimeline(
            key=key, status=_text(info.get("status")), label=_text(info.get("label")),
            n_frames=_int(info.get("n_frames")), n_face_frames=_int(info.get("n_face_frames")),
            points=tuple(downsample(points)), tracks=None if spans is None else tuple(spans), notes=tuple(notes)))
    if matched > len(keys):
        missing.append(f"{matched - len(keys)} more clips are not drawn (--max-videos {max_videos}); "
                       "choose with --videos PATTERN or raise --max-videos.")
    names = ("features", "frames", "windows", "tracks")
    return ReportData(
        title=title or f"Extraction: {features or frames or windows or tracks}",
        sources=tuple((n, str(u)) for n, u in zip(names, (features, frames, windows, tracks)) if u),
        classes=classes, value_name="probability", point_name="frames" if prob_pairs else "windows",
        label_name="label", counts=tuple(counts), details=tuple(details),
        failures=failures, videos=tuple(videos), videos_total=matched, missing=tuple(missing), generated_at=_now())


def _from_faces(faces: pd.DataFrame, prob_pairs: list[tuple[str, str]], classes: tuple[str, ...],
                notes: list[str]) -> tuple[list[TimelinePoint], list[TrackSpan] | None]:
    """The trace and the face-row tracks of one clip (notes get why something could not be drawn)."""
    timed = faces[faces["time_s"].notna()]
    if len(timed) < len(faces):
        notes.append("face rows without a time (the video states no frame rate) are not drawn")
    if timed.empty:
        return [], None
    times = timed["time_s"].to_numpy(np.float64)
    spacing = frame_spacing(times)
    probabilities = timed[[c for c, _ in prob_pairs]].to_numpy(np.float64) if prob_pairs else None
    points = trace_from_faces(times, probabilities, classes, spacing) if probabilities is not None else []
    spans = None
    if "track_id" in timed:
        spans = tracks_from_faces(times, timed["track_id"].to_numpy(), probabilities, classes, spacing)
    return points, spans


def _summary(features: str) -> dict[str, Any] | None:
    url = storage.join(features, SUMMARY_FILE)
    if not storage.exists(url):
        return None
    try:
        return json.loads(storage.read_bytes(url))
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s: %s", url, exc)
        return None


def _count_rows(url: str) -> int:
    return int(_dataset(url).count_rows())
