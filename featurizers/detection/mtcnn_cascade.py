"""MTCNN's three-stage cascade, driven for throughput on the CPU.

facenet-pytorch's ``detect_face`` resizes every candidate box through ``interpolate`` with
tensor indexing (about 80 us a box, ~30 boxes a frame), builds its pyramid from a float copy
of the frames, and runs R-Net on every candidate of a batch at once (about 1000 for 32 AFEW
frames), which on the CPU spills the activations out of the caches. Here the whole pyramid
comes from one compiled area-resize call on the uint8 frames (each frame summed once into a
table that serves all its levels), and so do all crops of a stage (featurizers/detection/area_resize.py,
bit-identical to ``interpolate``); the networks take the NHWC crops as they are, in cache-sized
micro-batches, on torch or on a CPU runtime (featurizers/detection/mtcnn_networks.py).

Everything else is facenet-pytorch's method, step by step: the same networks and weights,
scale pyramid, thresholds, NMS stages and box arithmetic in float32. Boxes and landmarks
agree with ``facenet_pytorch.MTCNN.detect`` to float tolerance; the tests compare them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torchvision.ops import batched_nms

from featurizers.detection.area_resize import area_pyramid, area_resize_boxes
from featurizers.detection.mtcnn_networks import CascadeNetworks

log = logging.getLogger(__name__)

PNET_CELL = 12
"""P-Net sees 12x12 windows with a stride of 2 pixels of the scaled frame."""
PNET_STRIDE = 2
RNET_SIZE = 24
ONET_SIZE = 48
ONET_NMS = 0.7
"""Of two faces O-Net keeps in a frame, the less confident goes when this share of the smaller is shared."""


@dataclass(frozen=True)
class CascadeSettings:
    min_face_size: int
    thresholds: tuple[float, float, float]
    factor: float
    max_side: int | None = None
    """P-Net's pyramid levels are at most this long on their longer side (None: as the frame)."""


@dataclass(frozen=True)
class BoxChecks:
    """O-Net's verdict on each of K given boxes: passed (K,), and for every box, passed or not,
    its score (K,), its moved box (K, 4) and landmarks (K, 5, 2) (zeros for a box outside its frame)."""

    passed: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class Detections:
    """Every face found in a batch of frames, flat: frame_index (M,) says whose each row is."""

    frame_index: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray


def pyramid_scales(height: int, width: int, min_face_size: int, factor: float) -> list[float]:
    """Scales at which P-Net's 12-pixel window covers faces from min_face_size up to the frame."""
    scale = PNET_CELL / min_face_size
    side = min(height, width) * scale
    scales = []
    while side >= PNET_CELL:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def capped_scales(scales: list[float], height: int, width: int, max_side: int | None) -> list[float]:
    """The pyramid's scales with every level longer than ``max_side`` replaced by one level at
    ``max_side``: faces from the minimum size up are still looked for (in full-resolution pixels),
    but the smallest of them on a frame no larger than ``max_side``, where P-Net's 12-pixel window
    covers ``12 * longer side / max_side`` full-resolution pixels."""
    if max_side is None or max(height, width) <= max_side:
        return scales
    cap = (max_side - 1) / max(height, width)  # level sides are int(side * scale + 1)
    below = [scale for scale in scales if scale < cap]
    if len(below) == len(scales) or min(height, width) * cap < PNET_CELL:
        return below
    return [cap, *below]


PIXEL_OFFSET, PIXEL_SCALE = 127.5, 0.0078125
"""MTCNN's input scaling, (x - 127.5) / 128: [0, 255] to about [-1, 1]."""


Resized = TypeVar("Resized")


def _keeping_torch_threads(resize: Callable[..., Resized], *args: object) -> Resized:
    """Run an area resize on torch's thread count, and leave that count as it was.

    numba's OpenMP threading layer, when it starts, sets the process's OpenMP thread count to
    every core, which torch reads as its own: a worker limited to one torch thread would then
    run one per core.
    """
    threads = torch.get_num_threads()
    try:
        return resize(*args, PIXEL_OFFSET, PIXEL_SCALE, threads)
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box (x1, y1, x2, y2, ...) to a square about its centre on its longer side."""
    out = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply a network's box offsets, in units of the inclusive box width and height."""
    out = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] = boxes[:, 0] + offsets[:, 0] * w
    out[:, 1] = boxes[:, 1] + offsets[:, 1] * h
    out[:, 2] = boxes[:, 2] + offsets[:, 2] * w
    out[:, 3] = boxes[:, 3] + offsets[:, 3] * h
    return out


def _pixel_bounds(boxes: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, ...]:
    """0-based [top, bottom) x [left, right) of each box, truncated and clipped as MTCNN does.

    MTCNN's 1-based arithmetic keeps one pixel above and left of the box: rows y1-1 .. y2-1.
    """
    corners = boxes[:, :4].trunc().long()
    left = corners[:, 0].clamp(min=1) - 1
    top = corners[:, 1].clamp(min=1) - 1
    right = corners[:, 2].clamp(max=width)
    bottom = corners[:, 3].clamp(max=height)
    return top, bottom, left, right


def min_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = ONET_NMS) -> np.ndarray:
    """Greedy NMS where overlap is intersection over the smaller box (MTCNN's last stage): the
    rows kept, most confident first."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    keep = []
    while order.size:
        best, rest = order[-1], order[:-1]
        keep.append(best)
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        overlap = w * h / np.minimum(area[best], area[rest])
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=np.int64)


class MtcnnCascade:
    """P-Net, R-Net and O-Net of a facenet-pytorch ``MTCNN``, run over batches of frames.

    ``device`` is where the networks' outputs are (the box arithmetic runs there)."""

    def __init__(self, networks: CascadeNetworks, settings: CascadeSettings, device: torch.device) -> None:
        self.networks = networks
        self.settings = settings
        self.device = device
        self._sizes_seen: set[tuple[int, int]] = set()

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> Detections:
        """Faces in (N, H, W, 3) uint8 RGB frames, most confident first within each frame."""
        frames = np.ascontiguousarray(frames)
        boxes, frame_index = self._propose(frames)
        boxes, frame_index = self._refine(frames, boxes, frame_index)
        return self._output(frames, boxes, frame_index)

    @torch.inference_mode()
    def check_boxes(self, frames: np.ndarray, frame_index: np.ndarray, boxes: np.ndarray) -> BoxChecks:
        """O-Net, the cascade's last stage, on given boxes (K, 4) of frames (N, H, W, 3) instead of
        R-Net's: for each box, whether it holds a face, and O-Net's score, moved box and landmarks.
        No NMS: the caller knows which box is which face."""
        frames = np.ascontiguousarray(frames)
        k = len(boxes)
        checks = BoxChecks(np.zeros(k, bool), np.zeros((k, 4), np.float32), np.zeros(k, np.float32),
                           np.zeros((k, 5, 2), np.float32))
        if k == 0:
            return checks
        proposals = torch.zeros((k, 5), dtype=torch.float32, device=self.device)
        proposals[:, :4] = torch.from_numpy(np.asarray(boxes, np.float32)).to(self.device)
        index = torch.from_numpy(np.asarray(frame_index, np.int64)).to(self.device)
        inside, moved, landmarks = self._onet(frames, proposals, index)
        rows = inside.cpu().numpy()
        checks.passed[rows] = (moved[:, 4] > self.settings.thresholds[2]).cpu().numpy()
        checks.boxes[rows] = moved[:, :4].cpu().numpy()
        checks.probs[rows] = moved[:, 4].cpu().numpy()
        checks.landmarks[rows] = landmarks.cpu().numpy()
        return checks

    def _propose(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: P-Net over the scale pyramid; boxes (M, 5) x1 y1 x2 y2 score, squared."""
        s = self.settings
        height, width = frames.shape[1:3]
        per_scale = [torch.zeros((0, 9), device=self.device)]  # frames smaller than a face: no level
        index_per_scale = [torch.zeros(0, dtype=torch.long, device=self.device)]
        full = pyramid_scales(height, width, s.min_face_size, s.factor)
        scales = capped_scales(full, height, width, s.max_side)
        if s.max_side is not None and (height, width) not in self._sizes_seen:
            self._sizes_seen.add((height, width))
            if scales == full:  # said once per frame size: the user asked for a mode that does nothing here
                finest = int(max(height, width) * full[0] + 1) if full else 0
                log.info("--detect-max-side %d changes nothing on %dx%d frames: P-Net's largest level is %d px "
                         "at a minimum face of %d px, so detection is exact's", s.max_side, width, height, finest,
                         s.min_face_size)
        sizes = [(int(height * scale + 1), int(width * scale + 1)) for scale in scales]
        levels = _keeping_torch_threads(area_pyramid, frames, sizes) if scales else []
        for scale, level in zip(scales, levels):
            offsets, probs = self.networks.pnet(level)
            boxes, index = _pnet_boxes(offsets, probs[:, 1], scale, s.thresholds[0])
            keep = batched_nms(boxes[:, :4], boxes[:, 4], index, 0.5)
            per_scale.append(boxes[keep])
            index_per_scale.append(index[keep])
        boxes, index = torch.cat(per_scale), torch.cat(index_per_scale)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], index, 0.7)
        boxes, index = boxes[keep], index[keep]
        # P-Net's offsets are in units of the (exclusive) window side.
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None]
        moved = boxes[:, :4] + boxes[:, 5:9] * torch.cat([w, h, w, h], dim=1)
        return _square(torch.cat([moved, boxes[:, 4:5]], dim=1)), index

    def _crops(self, frames: np.ndarray, boxes: torch.Tensor, frame_index: torch.Tensor,
               size: int) -> tuple[np.ndarray, torch.Tensor]:
        """Normalised crops of the boxes that still overlap their frame, and which boxes those are.

        (facenet-pytorch skips the crop of a box wholly outside the frame but keeps the box,
        which misaligns boxes and scores; here such a box is dropped.)
        """
        height, width = frames.shape[1:3]
        bounds = _pixel_bounds(boxes, width, height)
        top, bottom, left, right = bounds
        inside = torch.nonzero((bottom > top) & (right > left)).flatten()
        rows, tops, bottoms, lefts, rights = (v[inside].cpu().numpy() for v in (frame_index, *bounds))
        crops = _keeping_torch_threads(area_resize_boxes, frames, rows, tops, bottoms, lefts, rights, size, size)
        return crops, inside

    def _refine(self, frames: np.ndarray, boxes: torch.Tensor,
                frame_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: R-Net rescores and moves the proposals."""
        if len(boxes) == 0:
            return boxes, frame_index
        crops, inside = self._crops(frames, boxes, frame_index, RNET_SIZE)
        boxes, frame_index = boxes[inside], frame_index[inside]
        offsets, probs = self.networks.rnet(crops)
        score = probs[:, 1]
        passed = score > self.settings.thresholds[1]
        boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
        frame_index, offsets = frame_index[passed], offsets[passed]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], frame_index, 0.7)
        return _square(_regress(boxes[keep], offsets[keep])), frame_index[keep]

    def _onet(self, frames: np.ndarray, boxes: torch.Tensor,
              frame_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """O-Net on the boxes that overlap their frame: which boxes those are, each one moved
        (x1 y1 x2 y2 score) and its five landmarks, whatever its score."""
        crops, inside = self._crops(frames, boxes, frame_index, ONET_SIZE)
        boxes = boxes[inside]
        if len(inside) == 0:  # the networks take no empty batch
            return inside, boxes, boxes.new_zeros((0, 5, 2))
        offsets, points, probs = self.networks.onet(crops)
        boxes = torch.cat([boxes[:, :4], probs[:, 1:2]], dim=1)
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        landmarks = torch.stack([w * points[:, :5] + boxes[:, 0:1] - 1,
                                 h * points[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        return inside, _regress(boxes, offsets), landmarks

    def _output(self, frames: np.ndarray, boxes: torch.Tensor, frame_index: torch.Tensor) -> Detections:
        """Stage 3: O-Net gives the final score, box and five landmarks."""
        if len(boxes) == 0:
            return _no_detections()
        inside, moved, landmarks = self._onet(frames, boxes, frame_index)
        passed = moved[:, 4] > self.settings.thresholds[2]
        return _per_frame_min_nms(frame_index[inside][passed].cpu().numpy(), moved[passed].cpu().numpy(),
                                  landmarks[passed].cpu().numpy(), threshold=ONET_NMS)


def _pnet_boxes(offsets: torch.Tensor, probs: torch.Tensor, scale: float,
                threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows P-Net scores at least ``threshold``, in frame pixels: (M, 9) box, score, offsets."""
    frame, row, col = torch.nonzero(probs >= threshold, as_tuple=True)
    score = probs[frame, row, col]
    window_offsets = offsets[frame, :, row, col]
    corner = torch.stack([col, row], dim=1).to(offsets.dtype)
    first = ((PNET_STRIDE * corner + 1) / scale).floor()
    last = ((PNET_STRIDE * corner + PNET_CELL) / scale).floor()
    return torch.cat([first, last, score[:, None], window_offsets], dim=1), frame


def _per_frame_min_nms(frame_index: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray,
                       threshold: float) -> Detections:
    kept = []
    for frame in np.unique(frame_index):
        rows = np.flatnonzero(frame_index == frame)
        kept.append(rows[min_nms(boxes[rows, :4], boxes[rows, 4], threshold)])
    order = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return Detections(frame_index[order], boxes[order, :4], boxes[order, 4], landmarks[order])


def _no_detections() -> Detections:
    return Detections(np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                      np.zeros((0, 5, 2), np.float32))
