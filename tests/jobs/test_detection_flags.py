"""The detection mode flags of the jobs that detect faces: refused with exit code 2 and a message
naming the flag, before any clip, model or network is read."""

import pytest

from featurizers.detection.detection_mode import DetectionMode
from jobs import extract, faces, score
from pipelines.extraction.settings import ExtractionConfig


@pytest.mark.parametrize("job", [extract, faces])
@pytest.mark.parametrize("flags, message", [
    (["--detect-every", "0"], "--detect-every must be an integer >= 1"),
    (["--detect-max-side", "20"], "--detect-max-side must be at least the minimum face size (32 px"),
    (["--detect-max-side", "50", "--min-face-size", "64"], "--detect-max-side must be at least the minimum face "
                                                           "size (64 px"),
])
def test_extract_and_faces_refuse_a_bad_detection_mode(job, flags, message, tmp_path, capsys):
    argv = ["--dataset", "afew", "--data-root", str(tmp_path / "absent"), "--output", str(tmp_path / "out"), *flags]
    assert job.run(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    (["--detect-every", "-1"], "--detect-every must be an integer >= 1"),
    (["--detect-max-side", "0"], "--detect-max-side must be at least the minimum face size"),
    (["--detect-every", "5", "--adaptive", "18,9,1"], "--detect-every cannot be combined with --adaptive"),
])
def test_score_refuses_a_bad_detection_mode_before_reading_the_model(flags, message, tmp_path, capsys):
    argv = ["--model", str(tmp_path / "no-model"), "--input", str(tmp_path), "--output", str(tmp_path / "s"), *flags]
    assert score.run(argv) == 2
    assert message in capsys.readouterr().err


def test_the_mode_is_in_the_provenance_and_segments_start_on_a_key_frame():
    exact = ExtractionConfig(dataset="afew", featurizer="effnet_lite0_imagenet", backend="torch")
    assert exact.provenance("0" * 64)["detection_mode"] == {"mode": "exact", "detect_every": 1, "max_side": None}
    assert exact.segment_alignment == exact.sampling.chunk_size
    faster = ExtractionConfig(dataset="afew", featurizer="effnet_lite0_imagenet", backend="torch",
                              detection=DetectionMode(5, 640))
    assert faster.provenance("0" * 64)["detection_mode"]["mode"] == "every-5+max-side-640"
    assert faster.segment_alignment == 160  # whole chunks of 32 and whole blocks of 5


def test_every_job_detects_exactly_unless_asked_otherwise(tmp_path):
    args = extract.build_parser().parse_args(["--dataset", "afew"])
    assert extract.config_from_args(args).detection == DetectionMode() and DetectionMode().exact
    args = faces.build_parser().parse_args(["--dataset", "vgaf", "--output", str(tmp_path)])
    assert faces.config_from_args(args).detection == DetectionMode()
    args = score.build_parser().parse_args(["--model", "m", "--input", "i", "--output", "o"])
    settings = score.scoring_settings(args, [])
    assert (settings.detect_every, settings.detect_max_side) == (1, None)
    fast = extract.config_from_args(extract.build_parser().parse_args(
        ["--dataset", "vgaf", "--detect-every", "5", "--detect-max-side", "640"]))
    assert fast.detection == DetectionMode(5, 640)
