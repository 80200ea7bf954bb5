"""One clip in, one descriptor row out: decode, detect, crop or align, embed, accumulate.

Frames stream through in chunks: a chunk is detected in one batched MTCNN call, its faces
embedded in batches, and folded into the clip's accumulator, so memory stays bounded
whatever the clip's length. Any failure becomes an ``error`` row; nothing is raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from featurizers.decoding.decode import FrameChunk, FrameSampling, ReadStats
from featurizers.decoding.frame_index import FrameIndex
from featurizers.detection.detect import FaceDetector, FrameFaces
from featurizers.detection.face_crops import align_face, crop_face
from featurizers.detection.tracked_detection import KeyFrameDetector
from featurizers.embedding.embed import FaceEmbedder, load_network, preprocess_faces, select_device
from pipelines.extraction.clip_records import ClipRef, ClipResult
from pipelines.extraction.segments import MergedClip, SegmentResult, SegmentTask, merge_segments
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.statistics import ClipAccumulator
from pipelines.extraction.timeline import PartTimeline, TimelineSink, finish_timeline
from pipelines.extraction.video_source import video_chunks

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 30.0
FaceSink = Callable[[list[dict]], object]
"""Receives a chunk's face rows (``--frames-output``) as soon as they exist."""


@dataclass
class ChunkFaces:
    """The usable faces of one chunk, flattened, with where each came from."""

    images: list[np.ndarray]
    frame_positions: list[int]
    face_indices: list[int]
    boxes: list[np.ndarray]
    probs: list[float]


def faces_of_chunk(chunk: FrameChunk, detections: list[FrameFaces], align: bool) -> ChunkFaces:
    """Crop (one face per frame) or align (every face) the detected faces of a chunk."""
    out = ChunkFaces([], [], [], [], [])
    for position, (frame, faces) in enumerate(zip(chunk.frames, detections)):
        for index in range(len(faces)):
            image = align_face(frame, faces.landmarks[index]) if align else crop_face(frame, faces.boxes[index])
            if image is None:
                continue  # box wholly outside the frame: the frame contributes nothing
            out.images.append(image)
            out.frame_positions.append(position)
            out.face_indices.append(index)
            out.boxes.append(faces.boxes[index])
            out.probs.append(float(faces.probs[index]))
    return out


def iter_clip_faces(path: str, sampling: FrameSampling, detector: FaceDetector, align: bool,
                    frame_range: tuple[int, int] | None = None, *, index: FrameIndex | None = None,
                    limit_corrupt: bool = True, stats: ReadStats | None = None,
                    detect_every: int = 1) -> Iterator[tuple[FrameChunk, ChunkFaces]]:
    """Decode a clip (or its frames ``[start, stop)``) chunk by chunk and give each chunk's usable faces.

    The one path from a video to face images, shared by the descriptor extraction and the
    face export (``jobs.faces``). ``index``, ``limit_corrupt`` and ``stats`` go to the decoder
    (:func:`featurizers.decoding.decode.iter_frame_chunks`). ``detect_every`` > 1: full
    detection on every N-th sampled frame, faces followed between
    (:mod:`featurizers.detection.tracked_detection`), from a full detection on this range's first
    frame. Raises what decoding raises.
    """
    tracked = KeyFrameDetector(detector, detect_every) if detect_every > 1 else None
    for chunk in video_chunks(path, sampling, frame_range, index=index, limit_corrupt=limit_corrupt, stats=stats):
        if tracked is None:
            found = detector.detect(chunk.frames)
        else:
            found = tracked.detect(chunk.frames, chunk.frame_indices // sampling.step_for(chunk.native_fps))
        yield chunk, faces_of_chunk(chunk, found, align)


def clip_row(ref: ClipRef, accumulator: ClipAccumulator, featurizer: str, error: str | None,
             fps: float | None = None, n_segments: int = 1, n_corrupt_frames: int = 0) -> dict:
    """The descriptor-table row of a clip; ``error`` set means status ``error`` and a zero descriptor."""
    status = "error" if error else ("ok" if accumulator.has_face else "faceless")
    return {
        "clip_id": ref.clip_id,
        "path": ref.path,
        "dataset": ref.dataset,
        "split": ref.split,
        "label": ref.label,
        "label_index": ref.label_index,
        "n_frames": accumulator.n_frames,
        "n_face_frames": accumulator.n_face_frames,
        "n_faces": accumulator.n_faces,
        "has_face": accumulator.has_face,
        "descriptor": accumulator.descriptor(),
        "featurizer": featurizer,
        "status": status,
        "error": error,
        "max_faces_in_frame": accumulator.max_faces_in_frame,
        "fps": fps,
        "n_segments": n_segments,
        "n_corrupt_frames": n_corrupt_frames,
    }


class ClipExtractor:
    """Holds the loaded detector and featurizer; built once per worker process."""

    def __init__(self, config: ExtractionConfig) -> None:
        self.config = config
        self.spec = config.spec
        device = select_device(config.device)
        model = load_network(self.spec, config.weights)
        self.embedder = FaceEmbedder(self.spec, model, device, config.backend)
        self.detector = FaceDetector(config.detector, device, backend=config.backend, mode=config.detection)
        self.layout = config.layout
        self._align = self.layout.aligns_faces

    def embed_faces(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (N, D) and head scores (or None) of face images, in batches of the configured size."""
        size = self.config.face_batch_size
        features, scores = [], []
        for start in range(0, len(images), size):
            out = self.embedder.embed(preprocess_faces(images[start : start + size], self.spec))
            features.append(out.features)
            if out.head_scores is not None:
                scores.append(out.head_scores)
        return np.concatenate(features), (np.concatenate(scores) if scores else None)

    def _face_rows(self, ref: ClipRef, chunk: FrameChunk, faces: ChunkFaces, scores: np.ndarray | None,
                   track_ids: np.ndarray | None = None) -> list[dict]:
        names = self.spec.head_outputs
        rows = []
        for i, position in enumerate(faces.frame_positions):
            row = {
                "clip_id": ref.clip_id,
                "frame_index": int(chunk.frame_indices[position]),
                "time_s": float(chunk.times_s[position]),
                "face_index": faces.face_indices[i],
                "box": [float(v) for v in faces.boxes[i][:4]],
                "probability": faces.probs[i],
                "track_id": None if track_ids is None else int(track_ids[i]),
            }
            if scores is not None:
                row.update({f"p_{name.lower()}": float(scores[i, k]) for k, name in enumerate(names)})
            rows.append(row)
        return rows

    def describe(self, task: SegmentTask, face_sink: FaceSink | None = None,
                 timeline_sink: TimelineSink | None = None) -> SegmentResult:
        """Describe a clip, or one segment of it; a failure becomes the result's ``error``, never raised.

        Face rows go to ``face_sink``, and window and track rows to ``timeline_sink``, chunk by
        chunk as the clip streams, so a long clip never holds them all. A whole clip's last
        window and track rows follow at its end; a segment's go with its result, to be put
        together with its clip's other segments (:func:`finish_timeline`).
        """
        ref = task.clip
        where = "" if task.count == 1 else f"{task.describe()}: "
        started = time.perf_counter()
        accumulator = ClipAccumulator(self.layout)
        settings = self.config.timeline if face_sink is None else self.config.timeline.for_face_rows()
        timeline = PartTimeline(settings, self.layout, task.index, task.frame_range, where=ref.path) \
            if settings.windows_on or settings.track_faces else None
        no_features = np.zeros((0, self.spec.feature_dim), np.float32)
        fps = None
        n_corrupt = 0
        stats = ReadStats()
        error = ref.problem
        if error is None:
            try:
                last_report = started
                # A segment's corrupt frames count towards its clip's limit, checked once merged.
                for chunk, faces in iter_clip_faces(ref.path, self.config.sampling, self.detector, self._align,
                                                    task.frame_range, index=task.frames,
                                                    limit_corrupt=task.count == 1, stats=stats,
                                                    detect_every=self.config.detection.detect_every):
                    fps = chunk.native_fps
                    n_corrupt += chunk.n_corrupt
                    accumulator.add_frames(len(chunk.frames))
                    if time.perf_counter() - last_report > PROGRESS_EVERY_S:  # long archive videos
                        last_report = time.perf_counter()
                        log.info("clip %s: %s%d frames so far, %.1f frames/s", ref.clip_id, where,
                                 accumulator.n_frames, accumulator.n_frames / (last_report - started))
                    features, scores = self.embed_faces(faces.images) if faces.images else (no_features, None)
                    if faces.images:
                        accumulator.add_faces(features, chunk.frame_indices[faces.frame_positions])
                    track_ids = None
                    if timeline is not None:  # faceless chunks too: a track misses their frames
                        boxes = np.stack(faces.boxes) if faces.boxes else np.zeros((0, 4))
                        ids = timeline.add_chunk(chunk, np.asarray(faces.frame_positions, np.int64), boxes, features)
                        track_ids = ids if timeline.tracks_faces else None
                        if timeline_sink is not None:
                            windows, tracks = timeline.pop_final()
                            timeline_sink.windows(windows)
                            timeline_sink.tracks(tracks)
                    if face_sink is not None and faces.images:
                        face_sink(self._face_rows(ref, chunk, faces, scores, track_ids))
            except Exception as exc:  # one bad clip must not stop the job: record why instead
                log.warning("clip %s failed: %s%s", ref.clip_id, where, exc)
                error = f"{where}{type(exc).__name__}: {exc}"
        part = None
        if timeline is not None and error is None:
            part = timeline.finish()
            if task.count == 1:  # a whole clip: its last rows are final now
                if timeline_sink is not None:
                    last = finish_timeline([part], settings, self.layout)
                    timeline_sink.windows(last.window_rows)
                    timeline_sink.tracks(last.track_rows)
                part = None
        return SegmentResult(ref, task.index, task.count, accumulator, error, fps, time.perf_counter() - started,
                             n_corrupt, part, bytes_read=stats.bytes_read)

    def describe_clip(self, ref: ClipRef, face_sink: FaceSink | None = None) -> ClipResult:
        """Describe one whole clip in this process, without Beam (the unsplit path: notebooks, benchmarks)."""
        result = self.describe(SegmentTask(ref), face_sink)
        return clip_result(result.clip, merge_segments([result], self.layout), self.spec.name)


def clip_result(ref: ClipRef, merged: MergedClip, featurizer: str) -> ClipResult:
    """The clip's row from its merged segments; an error leaves a zero descriptor and no counts."""
    failed = merged.error is not None
    accumulator = ClipAccumulator(merged.accumulator.layout) if failed else merged.accumulator
    row = clip_row(ref, accumulator, featurizer, merged.error, merged.native_fps, merged.n_segments,
                   0 if failed else merged.n_corrupt_frames)
    return ClipResult(row=row, seconds=merged.seconds)
