"""A clip split into segments gives the unsplit clip's statistics with detection on key frames too."""

import numpy as np
from videos import SAMPLES

from featurizers.decoding.decode import FrameSampling, probe_video
from featurizers.detection.detection_mode import DetectionMode
from pipelines.extraction.clip_describer import ClipExtractor
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.segments import SegmentTask, merge_segments, plan_segments, segment_ranges
from pipelines.extraction.settings import ExtractionConfig


def test_segments_start_on_key_frames_and_merge_into_the_whole_clip():
    # 10 sampled frames in segments of 2: each a key frame and one followed frame. (One batch size
    # throughout: torch's featurizer pays seconds for each new one. The lcm of chunk and N is
    # tested in tests/jobs/test_detection_flags.py.)
    sampling = FrameSampling(step=5, chunk_size=2)
    config = ExtractionConfig(dataset="afew", featurizer="effnet_lite0_imagenet", sampling=sampling,
                              detection=DetectionMode(detect_every=2), backend="torch")
    extractor = ClipExtractor(config)
    ref = ClipRef("c", str(SAMPLES / "afew" / "Train_AFEW" / "Happy" / "000001001.avi"), "afew")
    whole = extractor.describe(SegmentTask(ref))
    n_frames = probe_video(ref.path).n_frames
    tasks = plan_segments(ref, segment_ranges(n_frames, 5, 1, config.segment_alignment))  # 1 -> 2 sampled
    assert [t.frame_range[0] for t in tasks] == [0, 10, 20, 30, 40]  # each on a key frame
    merged = merge_segments([extractor.describe(t) for t in tasks], config.layout)
    assert merged.error is None and whole.error is None
    a, b = merged.accumulator, whole.accumulator
    assert (a.n_frames, a.n_face_frames, a.n_faces) == (b.n_frames, b.n_face_frames, b.n_faces) == (10, 10, 10)
    assert np.allclose(a.descriptor(), b.descriptor(), rtol=1e-6, atol=1e-7)
