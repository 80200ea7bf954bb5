"""MTCNN's three-stage cascade, driven for throughput on the CPU.

facenet-pytorch's ``detect_face`` resizes every candidate box through ``interpolate`` with
tensor indexing (about 80 us a box, ~30 boxes a frame), builds its pyramid from a float copy
of the frames, and runs R-Net on every candidate of a batch at once (about 1000 for 32 AFEW
frames), which on the CPU spills the activations out of the caches. Here the pyramid and all
crops of a stage come from one compiled area-resize call on the uint8 frames
(featurizers/area_resize.py, bit-identical to ``interpolate``), and the networks run in NHWC
memory layout and in cache-sized micro-batches.

Everything else is facenet-pytorch's method, step by step: the same networks and weights,
scale pyramid, thresholds, NMS stages and box arithmetic in float32. Boxes and landmarks
agree with ``facenet_pytorch.MTCNN.detect`` to float tolerance; the tests compare them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.ops import batched_nms

from featurizers.area_resize import area_resize_boxes

PNET_CELL = 12
"""P-Net sees 12x12 windows with a stride of 2 pixels of the scaled frame."""
PNET_STRIDE = 2
RNET_SIZE = 24
ONET_SIZE = 48
CPU_MICRO_BATCH = {"rnet": 64, "onet": 16}
"""Crops per network call on the CPU: measured on 2 cores, R-Net runs about 2x faster in batches
of 64 than in one batch of 1000 (its activations then stay in cache). GPUs take all at once."""


@dataclass(frozen=True)
class CascadeSettings:
    min_face_size: int
    thresholds: tuple[float, float, float]
    factor: float


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


PIXEL_OFFSET, PIXEL_SCALE = 127.5, 0.0078125
"""MTCNN's input scaling, (x - 127.5) / 128: [0, 255] to about [-1, 1]."""


def _network_input(frames: np.ndarray, frame_index: np.ndarray, top: np.ndarray, bottom: np.ndarray,
                   left: np.ndarray, right: np.ndarray, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Boxes of the frames resized by area and scaled: NCHW in channels-last memory, on the device."""
    resized = area_resize_boxes(frames, frame_index, top, bottom, left, right, height, width,
                                PIXEL_OFFSET, PIXEL_SCALE, threads=torch.get_num_threads())
    return torch.from_numpy(resized).to(device).permute(0, 3, 1, 2)


def _micro_batched(net: nn.Module, crops: torch.Tensor, batch: int) -> tuple[torch.Tensor, ...]:
    outputs = [net(crops[i:i + batch]) for i in range(0, len(crops), batch)]
    return tuple(torch.cat(parts) for parts in zip(*outputs))


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


def _min_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS where overlap is intersection over the smaller box (MTCNN's last stage)."""
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
    """P-Net, R-Net and O-Net of a facenet-pytorch ``MTCNN``, run over batches of frames."""

    def __init__(self, pnet: nn.Module, rnet: nn.Module, onet: nn.Module, settings: CascadeSettings,
                 device: torch.device) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.settings = settings
        self.device = device
        on_cpu = device.type == "cpu"
        self._rnet_batch = CPU_MICRO_BATCH["rnet"] if on_cpu else 1 << 30
        self._onet_batch = CPU_MICRO_BATCH["onet"] if on_cpu else 1 << 30

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> Detections:
        """Faces in (N, H, W, 3) uint8 RGB frames, most confident first within each frame."""
        frames = np.ascontiguousarray(frames)
        boxes, frame_index = self._propose(frames)
        boxes, frame_index = self._refine(frames, boxes, frame_index)
        return self._output(frames, boxes, frame_index)

    def _propose(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: P-Net over the scale pyramid; boxes (M, 5) x1 y1 x2 y2 score, squared."""
        s = self.settings
        n, height, width = frames.shape[:3]
        per_scale = [torch.zeros((0, 9), device=self.device)]  # frames smaller than a face: no level
        index_per_scale = [torch.zeros(0, dtype=torch.long, device=self.device)]
        whole = (np.arange(n), np.zeros(n), np.full(n, height), np.zeros(n), np.full(n, width))
        for scale in pyramid_scales(height, width, s.min_face_size, s.factor):
            scaled = _network_input(frames, *whole, int(height * scale + 1), int(width * scale + 1), self.device)
            offsets, probs = self.pnet(scaled)
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
               size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised crops of the boxes that still overlap their frame, and which boxes those are.

        (facenet-pytorch skips the crop of a box wholly outside the frame but keeps the box,
        which misaligns boxes and scores; here such a box is dropped.)
        """
        height, width = frames.shape[1:3]
        bounds = _pixel_bounds(boxes, width, height)
        top, bottom, left, right = bounds
        inside = torch.nonzero((bottom > top) & (right > left)).flatten()
        rows, tops, bottoms, lefts, rights = (v[inside].cpu().numpy() for v in (frame_index, *bounds))
        return _network_input(frames, rows, tops, bottoms, lefts, rights, size, size, self.device), inside

    def _refine(self, frames: np.ndarray, boxes: torch.Tensor,
                frame_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: R-Net rescores and moves the proposals."""
        if len(boxes) == 0:
            return boxes, frame_index
        crops, inside = self._crops(frames, boxes, frame_index, RNET_SIZE)
        boxes, frame_index = boxes[inside], frame_index[inside]
        offsets, probs = _micro_batched(self.rnet, crops, self._rnet_batch)
        score = probs[:, 1]
        passed = score > self.settings.thresholds[1]
        boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
        frame_index, offsets = frame_index[passed], offsets[passed]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], frame_index, 0.7)
        return _square(_regress(boxes[keep], offsets[keep])), frame_index[keep]

    def _output(self, frames: np.ndarray, boxes: torch.Tensor, frame_index: torch.Tensor) -> Detections:
        """Stage 3: O-Net gives the final score, box and five landmarks."""
        if len(boxes) == 0:
            return _no_detections()
        crops, inside = self._crops(frames, boxes, frame_index, ONET_SIZE)
        boxes, frame_index = boxes[inside], frame_index[inside]
        offsets, points, probs = _micro_batched(self.onet, crops, self._onet_batch)
        score = probs[:, 1]
        passed = score > self.settings.thresholds[2]
        boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
        frame_index, offsets, points = frame_index[passed], offsets[passed], points[passed]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        landmarks = torch.stack([w * points[:, :5] + boxes[:, 0:1] - 1,
                                 h * points[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = _regress(boxes, offsets)
        return _per_frame_min_nms(
            frame_index.cpu().numpy(), boxes.cpu().numpy(), landmarks.cpu().numpy(), threshold=0.7)


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
        kept.append(rows[_min_nms(boxes[rows, :4], boxes[rows, 4], threshold)])
    order = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return Detections(frame_index[order], boxes[order, :4], boxes[order, 4], landmarks[order])


def _no_detections() -> Detections:
    return Detections(np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                      np.zeros((0, 5, 2), np.float32))
