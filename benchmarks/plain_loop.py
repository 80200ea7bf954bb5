"""The plain loop: one frame, one detector call, one face, one network call at a time.

It follows the reference notebooks step by step with no batching, streaming or mergeable
statistics, and serves two purposes: the oracle the pipeline's descriptors are tested
against, and the baseline the benchmark measures the pipeline's speed-up on.
"""

from __future__ import annotations

import numpy as np
import torch

from common.tables.schema import DescriptorLayout
from featurizers.decoding.decode import FrameSampling
from featurizers.detection.detect import DetectorConfig, FaceDetector
from featurizers.detection.face_crops import align_face, crop_face
from featurizers.embedding.embed import FaceEmbedder, preprocess_face
from featurizers.embedding.registry import FeaturizerSpec


def plain_loop_models(detector: DetectorConfig, spec: FeaturizerSpec, model: torch.nn.Module) -> tuple[FaceDetector, FaceEmbedder]:
    """The baseline's models as a researcher would use them: stock MTCNN, torch eager on the CPU."""
    return (FaceDetector(detector, "cpu", engine="facenet"),
            FaceEmbedder(spec, model, torch.device("cpu"), backend="torch"))


def plain_loop_descriptor(
    path: str,
    detector: FaceDetector,
    embedder: FaceEmbedder,
    layout: DescriptorLayout,
    sampling: FrameSampling = FrameSampling(),
) -> tuple[np.ndarray, int]:
    """The clip descriptor and the number of frames read, computed the slow, obvious way."""
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    step = sampling.step_for(float(reader.get_avg_fps()))
    group = layout.aligns_faces
    per_frame: list[np.ndarray] = []  # AFEW: one face vector per frame; VGAF: concat(mean, std) per frame
    n_frames = 0
    for index in range(0, len(reader), step):
        frame = reader[index].asnumpy()
        n_frames += 1
        faces = detector.detect(frame[None])[0]
        vectors = []
        for k in range(len(faces)):
            image = align_face(frame, faces.landmarks[k]) if group else crop_face(frame, faces.boxes[k])
            if image is None:
                continue
            batch = preprocess_face(image, embedder.spec)[None]
            vectors.append(embedder.embed(batch).features[0].astype(np.float64))
        if not vectors:
            continue
        if group:
            stacked = np.stack(vectors)
            per_frame.append(np.concatenate([stacked.mean(axis=0), stacked.std(axis=0)]))
        else:
            per_frame.append(vectors[0])
    if not per_frame:
        return np.zeros(layout.length, np.float32), n_frames
    x = np.stack(per_frame)
    if group:
        descriptor = np.concatenate([x.mean(axis=0), x.std(axis=0)])
    else:
        descriptor = np.concatenate([x.mean(axis=0), x.std(axis=0), x.min(axis=0), x.max(axis=0)])
    return descriptor.astype(np.float32), n_frames
