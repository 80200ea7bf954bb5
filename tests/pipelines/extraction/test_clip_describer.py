"""How ClipExtractor uses its models: faces batched across frames, memory bounded by the chunk."""

import math

import pytest
from videos import SAMPLES

from featurizers.decoding.decode import FrameSampling
from pipelines.extraction.clip_describer import ClipExtractor
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig

pytestmark = pytest.mark.slow


def test_a_crowd_is_embedded_in_batches_across_frames_not_one_call_per_face():
    config = ExtractionConfig(dataset="vgaf", featurizer="effnet_lite0_imagenet",
                              detector=ExtractionConfig.default_detector("vgaf"),
                              sampling=FrameSampling(step=5, chunk_size=32), face_batch_size=16)
    extractor = ClipExtractor(config)
    calls = []
    network = extractor.embedder.network

    def counting(batch):
        calls.append(len(batch))
        return network(batch)

    extractor.embedder.network = counting
    row = extractor.describe_clip(ClipRef("2_3", str(SAMPLES / "vgaf" / "Train" / "2_3.mp4"), "vgaf")).row
    assert row["n_frames"] == 10 and row["n_faces"] >= 20  # one chunk of 10 frames, several faces each
    assert len(calls) == math.ceil(row["n_faces"] / 16) < row["n_face_frames"]
    assert max(calls) == 16


def test_a_long_clip_reports_progress_while_it_runs(monkeypatch, caplog):
    import logging

    monkeypatch.setattr("pipelines.extraction.clip_describer.PROGRESS_EVERY_S", 0.0)
    config = ExtractionConfig(dataset="afew", featurizer="effnet_lite0_imagenet", sampling=FrameSampling(chunk_size=16))
    with caplog.at_level(logging.INFO, logger="pipelines.extraction.clip_describer"):
        ClipExtractor(config).describe_clip(ClipRef("clip", str(SAMPLES / "afew" / "Val_AFEW" / "Angry" / "000006006.avi"), "afew"))
    reports = [r.getMessage() for r in caplog.records if "frames so far" in r.getMessage()]
    assert len(reports) == 4  # one per chunk of 16 frames, with the threshold at 0 s
    assert reports[0].startswith("clip clip: 16 frames so far") and reports[-1].startswith("clip clip: 50 frames")
