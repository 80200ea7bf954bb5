"""Detection on key frames, faces followed between them (``--detect-every N``).

The full cascade runs on the first sampled frame of every block of N
(:func:`key_frames.key_frame_mask`). On the frames between, each face of the frame before is
looked for where its track predicts it (by default where it was: :data:`key_frames.MOTION_GAIN`)
by O-Net, the cascade's last stage, on a crop of that box from the full-resolution frame; O-Net
also gives the landmarks VGAF alignment needs. A face O-Net rejects is dropped until the next
key frame, where new faces appear. One instance follows one clip, or one segment of it, from its
first frame: the state never crosses a segment, and segments start on a block, so a split clip
gives the faces of the unsplit one.
"""

from __future__ import annotations

import numpy as np

from featurizers.detection.detect import FaceDetector, FrameFaces, select_faces
from featurizers.detection.key_frames import key_frame_mask, match_previous, predict_boxes, search_boxes


REFINE_WITH_RNET = False
"""Refine with O-Net alone (False) or R-Net then O-Net. Measured on the benchmark clips (every-5,
box predicted by constant velocity): R-Net first halves the refinement's speed and moved the
aligned descriptors of 1280x720 group scenes to cosine 0.95-0.97 of exact, against 0.985-0.99
with O-Net alone; one-face 720x576 clips were within 0.992 either way."""


class KeyFrameDetector:
    """Faces of a clip's consecutive chunks: full detection on key frames, refinement between."""

    def __init__(self, detector: FaceDetector, every: int, rnet: bool = REFINE_WITH_RNET) -> None:
        if every < 1:
            raise ValueError(f"detect_every must be >= 1, got {every}")
        self.detector = detector
        self.every = every
        self.rnet = rnet
        self._position: int | None = None
        self._last = np.zeros((0, 4), np.float32)
        """Every face of the frame before (before the one-face choice): boxes (K, 4)."""
        self._previous = np.zeros((0, 4), np.float32)
        """The same faces' boxes one frame earlier, NaN where a face was new."""
        self.n_key_frames = 0
        self.n_refined_frames = 0

    def detect(self, frames: np.ndarray, positions: np.ndarray) -> list[FrameFaces]:
        """The chosen faces of each frame (N, H, W, 3) at sampled positions (N,) (native index // step)."""
        key = key_frame_mask(positions, self._position, self.every)
        found: list[FrameFaces | None] = [None] * len(frames)
        key_rows = np.flatnonzero(key)
        for row, faces in zip(key_rows, self.detector.find_all(frames[key_rows])):
            found[row] = faces
        for row in range(len(frames)):
            faces = found[row]
            if faces is None:
                faces = self._refine(frames[row])
                self.n_refined_frames += 1
                self._follow(faces)
            else:
                self.n_key_frames += 1
                self._restart(faces)
            found[row] = faces
        if len(positions):
            self._position = int(positions[-1])
        return [select_faces(faces, self.detector.config) for faces in found if faces is not None]

    def _refine(self, frame: np.ndarray) -> FrameFaces:
        if len(self._last) == 0:
            return FrameFaces.empty()
        predicted = predict_boxes(self._last, self._previous)
        boxes = search_boxes(predicted)
        return self.detector.refine(frame[None], np.zeros(len(boxes), np.int64), boxes, self.rnet)[0]

    def _restart(self, faces: FrameFaces) -> None:
        """A key frame's faces start afresh, with no motion known: what they did before the key
        frame must not matter, or a segment starting there would follow them otherwise."""
        self._last = faces.boxes.astype(np.float32)
        self._previous = np.full_like(self._last, np.nan)

    def _follow(self, faces: FrameFaces) -> None:
        """Remember this frame's faces, each with its box in the frame before when it continues one."""
        matched = match_previous(faces.boxes, self._last)
        previous = np.full((len(faces), 4), np.nan, np.float32)
        previous[matched >= 0] = self._last[matched[matched >= 0]]
        self._last, self._previous = faces.boxes.astype(np.float32), previous
