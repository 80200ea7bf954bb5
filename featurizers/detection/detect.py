"""Face detection with facenet-pytorch's MTCNN, batched over frames, with the reference settings.

torch and the cascade are imported when a detector is built: the settings (``DetectorConfig``)
are read by the command lines, whose ``--help`` should not wait for torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from featurizers.detection.detection_mode import EXACT, DetectionMode

if TYPE_CHECKING:
    import torch

    from featurizers.detection.mtcnn_cascade import BoxChecks, Detections, MtcnnCascade

FaceChoice = Literal["confidence", "largest"]


@dataclass(frozen=True)
class DetectorConfig:
    """MTCNN settings; one instance per dataset kind (AFEW_DETECTOR, VGAF_DETECTOR) is the single source of truth."""

    min_face_size: int = 32
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.9)
    factor: float = 0.709
    all_faces: bool = False
    """False: one face per frame (AFEW); True: every face (VGAF)."""
    face_choice: FaceChoice = "confidence"
    """With one face per frame: the most confident box (reference code) or the largest (paper text)."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


AFEW_DETECTOR = DetectorConfig(min_face_size=32, all_faces=False)
VGAF_DETECTOR = DetectorConfig(min_face_size=64, all_faces=True)


@dataclass(frozen=True)
class FrameFaces:
    """Faces found in one frame, most confident first: boxes (K,4) x1y1x2y2, probs (K,), landmarks (K,5,2)."""

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    @staticmethod
    def empty() -> "FrameFaces":
        return FrameFaces(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, order: np.ndarray) -> "FrameFaces":
        return FrameFaces(self.boxes[order], self.probs[order], self.landmarks[order])


def select_faces(faces: FrameFaces, config: DetectorConfig) -> FrameFaces:
    """Keep every face (group mode) or the single face the configured rule prefers."""
    if config.all_faces or len(faces) <= 1:
        return faces
    if config.face_choice == "largest":
        areas = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
        return faces.take(np.array([int(np.argmax(areas))]))
    return faces.take(np.array([int(np.argmax(faces.probs))]))


DetectorEngine = Literal["cascade", "facenet"]


class FaceDetector:
    """A thin front over MTCNN: ``detect`` takes a batch of same-size RGB frames.

    ``engine="cascade"`` (default) runs facenet-pytorch's networks through our batched cascade
    driver (featurizers/detection/mtcnn_cascade.py) on ``backend`` (featurizers/detection/mtcnn_networks.py: torch,
    or OpenVINO or ONNX Runtime on the CPU; ``auto`` as for the featurizer): on 2 CPU cores
    about 3x as fast on torch, the same boxes and landmarks to float tolerance.
    ``engine="facenet"`` is ``facenet_pytorch.MTCNN.detect`` exactly as shipped, on torch.
    ``backend`` says which backend runs (``auto`` resolved). ``mode.max_side`` caps P-Net's
    pyramid (cascade engine only); ``detect_every`` is the caller's (``tracked_detection``).
    """

    def __init__(self, config: DetectorConfig, device: torch.device | str = "cpu",
                 engine: DetectorEngine = "cascade", backend: str = "torch", mode: DetectionMode = EXACT) -> None:
        import torch
        from facenet_pytorch import MTCNN

        from featurizers.detection.mtcnn_cascade import CascadeSettings, MtcnnCascade
        from featurizers.detection.mtcnn_networks import make_cascade_networks

        self.config = config
        # select_largest=False keeps MTCNN's boxes in descending probability, as the reference.
        self._mtcnn = MTCNN(
            min_face_size=config.min_face_size,
            thresholds=list(config.thresholds),
            factor=config.factor,
            select_largest=False,
            keep_all=True,
            device=torch.device(device),
        )
        self._cascade: MtcnnCascade | None = None
        if engine == "cascade":
            networks = make_cascade_networks(self._mtcnn.pnet, self._mtcnn.rnet, self._mtcnn.onet,
                                             self._mtcnn.device, backend)
            settings = CascadeSettings(config.min_face_size, config.thresholds, config.factor, mode.max_side)
            self._cascade = MtcnnCascade(networks, settings, self._mtcnn.device)
            self.backend = networks.backend
        elif engine != "facenet":
            raise ValueError(f"unknown detector engine {engine!r}; expected 'cascade' or 'facenet'")
        elif mode.max_side is not None:
            raise ValueError("the facenet engine runs facenet-pytorch's own pyramid; max_side needs the cascade")
        elif backend != "torch":
            raise ValueError(f"the facenet engine runs on torch only; got backend {backend!r}")
        else:
            self.backend = "torch"

    def detect(self, frames: np.ndarray) -> list[FrameFaces]:
        """Detect faces in frames of shape (N, H, W, 3) uint8 RGB; one FrameFaces per frame."""
        return [select_faces(faces, self.config) for faces in self.find_all(frames)]

    def find_all(self, frames: np.ndarray) -> list[FrameFaces]:
        """Every face the cascade finds in each frame, most confident first, before the one-face choice."""
        if len(frames) == 0:
            return []
        found = self._detect_cascade(frames) if self._cascade is not None else self._detect_facenet(frames)
        return [_by_confidence(faces) for faces in found]

    def check_boxes(self, frames: np.ndarray, frame_index: np.ndarray, boxes: np.ndarray) -> BoxChecks:
        """O-Net's verdict on each box (K, 4) of ``frames[frame_index]``: the cascade's last stage
        instead of a full detection (:meth:`MtcnnCascade.check_boxes`). Cascade engine only."""
        if self._cascade is None:
            raise ValueError("checking boxes needs the cascade engine")
        return self._cascade.check_boxes(frames, frame_index, boxes)

    def _detect_cascade(self, frames: np.ndarray) -> list[FrameFaces]:
        assert self._cascade is not None
        return _per_frame(self._cascade(frames), len(frames))

    def _detect_facenet(self, frames: np.ndarray) -> list[FrameFaces]:
        # facenet-pytorch permutes NHWC input to NCHW; an NHWC view of contiguous NCHW memory makes
        # its per-box crop loop ~10% faster with identical results (the baseline is not handicapped).
        import torch

        planar = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().contiguous()
        boxes, probs, points = self._mtcnn.detect(planar.permute(0, 2, 3, 1).to(self._mtcnn.device), landmarks=True)
        result = []
        for b, p, lm in zip(boxes, probs, points):
            if b is None:
                result.append(FrameFaces.empty())
                continue
            result.append(FrameFaces(
                np.asarray(b, np.float32).reshape(-1, 4),
                np.asarray(p, np.float32).reshape(-1),
                np.asarray(lm, np.float32).reshape(-1, 5, 2),
            ))
        return result


def _by_confidence(faces: FrameFaces) -> FrameFaces:
    return faces.take(np.argsort(-faces.probs, kind="stable"))


def _per_frame(found: Detections, n_frames: int) -> list[FrameFaces]:
    """The cascade's flat detections as one FrameFaces per frame."""
    result = []
    for frame in range(n_frames):
        rows = found.frame_index == frame
        result.append(FrameFaces(found.boxes[rows].astype(np.float32), found.probs[rows].astype(np.float32),
                                 found.landmarks[rows].astype(np.float32)))
    return result
