"""Detection on key frames, faces followed between them (``--detect-every N``).

The full cascade runs on the first sampled frame of every block of N
(:func:`key_frames.key_frame_mask`). On the frames between, each face the key frame found is
looked for by O-Net, the cascade's last stage, on the crop of its key-frame box (squared, as the
cascade feeds O-Net) from the full-resolution frame; O-Net gives the score, the box and the
landmarks VGAF alignment needs. All those crops of a chunk go through O-Net in one call. Where
O-Net rejects a face's key-frame crop (the face has moved away from it), the face is looked for
once more on the crop of the box it had in the frame before; rejected there too, it is dropped
until the next key frame, where new faces appear. Where the box O-Net gives lies off the crop it
was given (the squares overlap less than :data:`key_frames.RECENTRE_IOU`), O-Net looks once more
on the crop of that box, centred on the face: from an off-centre crop its box falls short.

Why the key frame's box first (measured with ``benchmarks/benchmark_fast_modes.py``, every 5,
descriptor cosine to exact): O-Net fed its own last box drifts, a little each frame (1080p with
camera shake 0.991 from the frame before, 0.992 from the key frame; every 10: 0.972 against
0.989), and one call a frame cost about 1 ms more than a frame's share of one call a chunk. The
box of the frame before is the fallback because on a fast pan the key-frame crop misses the face:
from the key frame alone, a 720x576 pan at 16 px a frame kept 15 of exact's 33 face frames.
Also measured and left: R-Net before O-Net (twice the time, group descriptors further from exact),
a margin around the crop (O-Net then rejected faces), constant velocity from the last two frames
(a jittery prediction, 0.964 on the shaky clip).

One instance follows one clip, or one segment of it, from its first frame: what a key frame
found replaces all that came before, and segments start on a block, so a split clip gives the
faces of the unsplit one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featurizers.detection.detect import FaceDetector, FrameFaces, select_faces
from featurizers.detection.key_frames import RECENTRE_IOU, box_iou, key_frame_mask, search_boxes
from featurizers.detection.mtcnn_cascade import BoxChecks, min_nms


@dataclass(frozen=True)
class FollowedFace:
    """A face followed from a key frame: its row among that frame's faces and its last box."""

    anchor: int
    box: np.ndarray


class KeyFrameDetector:
    """Faces of a clip's consecutive chunks: full detection on key frames, O-Net between."""

    def __init__(self, detector: FaceDetector, every: int) -> None:
        if every < 1:
            raise ValueError(f"detect_every must be >= 1, got {every}")
        self.detector = detector
        self.every = every
        self._position: int | None = None
        self._anchors = np.zeros((0, 4), np.float32)
        """Every face of the latest key frame (before the one-face choice): boxes (K, 4)."""
        self._followed: list[FollowedFace] = []
        """The faces still followed into the last frame seen."""
        self.n_key_frames = 0
        self.n_refined_frames = 0
        self.n_second_looks = 0
        """Faces looked for again at their last box after O-Net rejected their key-frame crop."""
        self.n_recentred = 0
        """Faces looked at again on the crop of the box O-Net gave, which lay off the crop it was given."""

    def detect(self, frames: np.ndarray, positions: np.ndarray) -> list[FrameFaces]:
        """The chosen faces of each frame (N, H, W, 3) at sampled positions (N,) (native index // step)."""
        key = key_frame_mask(positions, self._position, self.every)
        found: list[FrameFaces | None] = [None] * len(frames)
        key_rows = np.flatnonzero(key)
        for row, faces in zip(key_rows, self.detector.find_all(frames[key_rows])):
            found[row] = faces
        looks = self._key_frame_looks(frames, key, found)
        for row in range(len(frames)):
            faces = found[row]
            if faces is None:
                faces = found[row] = self._follow(frames[row], looks[row])
                self.n_refined_frames += 1
            else:
                self.n_key_frames += 1
                self._anchors = faces.boxes.astype(np.float32)
                self._followed = [FollowedFace(anchor, box) for anchor, box in enumerate(self._anchors)]
        if len(positions):
            self._position = int(positions[-1])
        return [select_faces(faces, self.detector.config) for faces in found if faces is not None]

    def _key_frame_looks(self, frames: np.ndarray, key: np.ndarray,
                         found: list[FrameFaces | None]) -> dict[int, BoxChecks]:
        """O-Net on the crop of every key-frame face in every frame between, in one call: row ->
        the checks of its key frame's faces, in their order."""
        anchors, rows, boxes = self._anchors, [], []
        for row, faces in enumerate(found):
            if faces is not None:
                anchors = faces.boxes.astype(np.float32)
            else:
                rows.append(row)
                boxes.append(search_boxes(anchors))
        if not rows:
            return {}
        counts = [len(b) for b in boxes]
        checks = self.detector.check_boxes(frames, np.repeat(rows, counts), np.concatenate(boxes))
        ends = np.cumsum(counts)
        return {row: _slice(checks, end - count, end) for row, count, end in zip(rows, counts, ends)}

    def _follow(self, frame: np.ndarray, looks: BoxChecks) -> FrameFaces:
        """This frame's faces: each face still followed, found on its key-frame crop or else on
        the crop of its last box, and looked at again where it lies off its crop; of two that
        meet on one face, the less confident ends."""
        kept: list[tuple[FollowedFace, np.ndarray, float, np.ndarray]] = []
        for face in self._followed:
            anchor = self._anchors[face.anchor]
            crop, checks, row = search_boxes(anchor[None]), looks, face.anchor
            if not checks.passed[row] and not np.array_equal(face.box, anchor):
                self.n_second_looks += 1
                crop = search_boxes(face.box[None])
                checks, row = self._look(frame, crop), 0
            if checks.passed[row] and box_iou(crop, search_boxes(checks.boxes[row][None]))[0, 0] < RECENTRE_IOU:
                self.n_recentred += 1
                again = self._look(frame, search_boxes(checks.boxes[row][None]))
                if again.passed[0]:
                    checks, row = again, 0
            if checks.passed[row]:
                kept.append((face, checks.boxes[row], float(checks.probs[row]), checks.landmarks[row]))
        if not kept:
            self._followed = []
            return FrameFaces.empty()
        boxes = np.stack([box for _, box, _, _ in kept]).astype(np.float32)
        probs = np.array([prob for _, _, prob, _ in kept], np.float32)
        order = min_nms(boxes, probs)
        self._followed = [FollowedFace(kept[i][0].anchor, boxes[i]) for i in order]
        landmarks = np.stack([kept[i][3] for i in order]).astype(np.float32)
        return FrameFaces(boxes[order], probs[order], landmarks)

    def _look(self, frame: np.ndarray, crop: np.ndarray) -> BoxChecks:
        """O-Net on one squared box (1, 4) of one frame."""
        return self.detector.check_boxes(frame[None], np.zeros(1, np.int64), crop)


def _slice(checks: BoxChecks, start: int, stop: int) -> BoxChecks:
    return BoxChecks(checks.passed[start:stop], checks.boxes[start:stop], checks.probs[start:stop],
                     checks.landmarks[start:stop])
