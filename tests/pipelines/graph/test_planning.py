"""Planning: each clip probed once on a worker; its planning elements share that probe's plan."""

import numpy as np
import pytest
from videos import write_video

from featurizers.decoding.decode import FrameSampling
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.segments import PlanningShard
from pipelines.extraction.settings import ExtractionConfig
from pipelines.graph import planning


@pytest.fixture
def probes(monkeypatch):
    """Count the probes the planning step makes."""
    calls = []
    original = planning.probe_video

    def counted(path, sampling):
        calls.append(str(path))
        return original(path, sampling)

    monkeypatch.setattr(planning, "probe_video", counted)
    return calls


def test_a_long_clip_is_probed_once_and_its_elements_share_the_plan(tmp_path, probes):
    clip = write_video(tmp_path / "long.avi", [np.full((32, 32, 3), k, np.uint8) for k in range(40)])
    config = ExtractionConfig(dataset="folder", featurizer="effnet_lite0_imagenet", segment_frames=8,
                              sampling=FrameSampling(chunk_size=8))
    ref = ClipRef("long", str(clip), "folder")
    (clip_id, tasks), = planning.ProbeClipFn(config).process(ref)
    assert clip_id == "long" and len(tasks) == 5 and probes == [str(clip)]
    step = planning.PlanSegmentsFn(config)
    shares = [list(step.process(PlanningShard(ref, i, 3), {"long": tasks})) for i in range(3)]
    assert probes == [str(clip)]  # the elements did not probe again
    assert sorted(t.index for share in shares for t in share) == [0, 1, 2, 3, 4]
    assert all(t.frames is not None and t.frames.first <= t.frame_range[0] for share in shares for t in share)
    assert [t.index for t in step.process(PlanningShard(ref), None)] == [0, 1, 2, 3, 4]  # listed once: probes
    assert len(probes) == 2


def test_a_clip_whose_probe_fails_is_one_task_carrying_why_whatever_its_elements(tmp_path, probes):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    config = ExtractionConfig(dataset="folder", featurizer="effnet_lite0_imagenet", segment_frames=8)
    ref = ClipRef("bad", str(bad), "folder")
    (_, tasks), = planning.ProbeClipFn(config).process(ref)
    step = planning.PlanSegmentsFn(config)
    emitted = [t for i in range(4) for t in step.process(PlanningShard(ref, i, 4), {"bad": tasks})]
    assert len(emitted) == 1 and emitted[0].count == 1 and len(probes) == 1
    assert emitted[0].clip.problem.startswith("VideoDecodeError: ") and "cannot open as a video" in \
        emitted[0].clip.problem
