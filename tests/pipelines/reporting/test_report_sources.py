"""Reading jobs.score and jobs.extract outputs (written with the project's own schemas) into the report."""

from __future__ import annotations

import pandas as pd
import pytest
from report_tables import CLASSES, RUN_ID, ScoredVideo, standard_videos, write_extract_outputs, write_scores_output

from pipelines.reporting.report_sources import ReportInputError, load_extract_report, load_scores_report


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    return write_scores_output(tmp_path_factory.mktemp("scores"), standard_videos())


def test_a_scores_output_gives_the_last_runs_counts_the_failures_and_a_timeline_per_video(scores):
    data = load_scores_report(str(scores))
    assert data.classes == CLASSES and data.value_name == "classifier score" and data.missing == ()
    groups = dict(data.counts)
    assert dict(groups[f"Last run ({RUN_ID})"]) == {
        "listed": 5, "new": 3, "rescored": 1, "reused": 0, "skipped": 0, "failed": 1, "permanently failed": 1,
        "removed": 0}
    assert dict(groups["Videos in the latest view"]) == {
        "videos": 5, "ok": 2, "faceless": 1, "error": 1, "failed permanently": 1}
    assert [(f.key, f.status, f.attempts) for f in data.failures] == [
        ("broken/<script>alert(1)</script>.mp4", "error", 1), ("broken/gone.mp4", "failed_permanently", 3)]
    assert "moov atom" in data.failures[0].error
    assert [v.key for v in data.videos] == ["archive/long_interview.mp4", "misc/no_faces.avi",
                                            "news/2024-01-01 evening.mp4"]
    expected = {v.key: v for v in standard_videos()}
    for video in data.videos:
        windows = expected[video.key].windows()
        assert len(video.points) == len(windows)
        assert [p.has_face for p in video.points] == [w[2] for w in windows]
        assert len(video.tracks) == len(expected[video.key].tracks)
    news = data.videos[2]
    assert news.label is not None and news.faceless_spans == [(30.0, 50.0)] and news.duration_s == 95.0
    assert {t.label for t in news.tracks} == {"Happy", "Neutral", "Sad"}
    assert dict(data.details)["model"] == "models/afew_b0"


def test_an_older_output_without_windows_tracks_or_a_finished_run_says_what_is_missing(tmp_path):
    root = write_scores_output(tmp_path / "old", standard_videos(), windows=False, tracks=False, manifest=False)
    data = load_scores_report(str(root))
    assert [m.split(" ")[:3] for m in data.missing] == [["No", "finished", "run"], ["No", "windows", "table"],
                                                         ["No", "tracks", "table"]]
    assert len(data.videos) == 3 and all(v.points == () and v.tracks is None for v in data.videos)
    assert [title for title, _ in data.counts] == ["Videos in the latest view"]


def test_videos_are_chosen_by_pattern_and_capped_with_a_note(scores):
    data = load_scores_report(str(scores), pattern="*/*.mp4", max_videos=1)
    assert [v.key for v in data.videos] == ["archive/long_interview.mp4"] and data.videos_total == 2
    assert any("1 more videos are not drawn" in m for m in data.missing)


def test_a_folder_that_is_not_a_scores_output_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(ReportInputError, match="--scores .* holds no latest/"):
        load_scores_report(str(tmp_path))
    with pytest.raises(ReportInputError, match="--scores .*: no such folder"):
        load_scores_report(str(tmp_path / "absent"))


def test_window_rows_of_other_videos_are_not_read(scores):
    data = load_scores_report(str(scores), pattern="misc/*")
    assert [v.key for v in data.videos] == ["misc/no_faces.avi"]
    assert len(data.videos[0].points) == 3 and data.videos[0].tracks == ()


def test_extract_tables_give_the_emotion_trace_tracks_labelled_from_their_faces_and_the_failures(tmp_path):
    paths = write_extract_outputs(tmp_path)
    data = load_extract_report(**{k: str(v) for k, v in paths.items()})
    assert data.classes[:2] == ("Anger", "Contempt") and data.value_name == "probability"
    assert data.point_name == "frames" and data.missing == ()
    assert [(f.key, f.error) for f in data.failures] == [("bad", "truncated file: 40 of 100 frames")]
    duo, solo = data.videos
    assert (duo.key, duo.label, solo.key) == ("duo", "Happy", "solo")
    assert sum(p.has_face for p in duo.points) == 87  # frames 0-36 and 50-99
    # The gap in the face rows (frames 37-49) and the faceless window [4, 5) of the window table.
    assert duo.faceless_spans == [(pytest.approx(37 / 25), pytest.approx(50 / 25)), (4.0, 5.0)]
    assert [(t.track_id, t.start_s, t.end_s, t.label) for t in duo.tracks] == [
        (1, 0.0, 4.0, "Happiness"), (2, 2.2, 3.6, "Sadness")]
    assert [t.label for t in solo.tracks] == ["Surprise"]
    assert dict(dict(data.counts)["Tables"]) == {"face rows": 197, "window rows": 8, "track rows": 3}


def test_face_rows_alone_give_tracks_from_their_track_ids(tmp_path):
    paths = write_extract_outputs(tmp_path)
    data = load_extract_report(frames=str(paths["frames"]))
    assert [v.key for v in data.videos] == ["duo", "solo"] and data.failures == ()
    spans = data.videos[0].tracks
    assert [(t.track_id, t.start_s, t.end_s, t.n_frames, t.label) for t in spans] == [
        (1, 0.0, pytest.approx(4.0), 87, "Happiness"), (2, 2.2, pytest.approx(3.6), 35, "Sadness")]


def test_window_descriptors_alone_show_where_faces_were_and_say_the_trace_is_missing(tmp_path):
    paths = write_extract_outputs(tmp_path)
    data = load_extract_report(windows=str(paths["windows"]))
    duo = data.videos[0]
    assert [p.has_face for p in duo.points] == [True, True, True, True, False]
    assert not any(p.scored for p in duo.points) and duo.tracks is None
    assert any("no tracks are drawn" in m for m in data.missing)
    with pytest.raises(ReportInputError, match="--frames .*: no such folder"):
        load_extract_report(windows=str(paths["windows"]), frames=str(tmp_path / "absent"))


def test_latest_files_of_two_models_with_different_classes_are_read_together(tmp_path):
    root = write_scores_output(tmp_path / "a", [ScoredVideo("a.mp4", duration_s=20.0)])
    other = write_scores_output(tmp_path / "b", [ScoredVideo("b.mp4", duration_s=20.0)])
    # One latest file holds an extra class, as after a model with another class list scored it.
    latest_b = next((other / "latest").glob("part-*.parquet"))
    frame = pd.read_parquet(latest_b)
    frame["score_Contempt"] = 0.5
    target = root / "latest" / latest_b.name
    assert not target.exists()
    frame.to_parquet(target)
    data = load_scores_report(str(root))
    assert "Contempt" in data.classes and len(data.videos) == 2


def test_a_scores_output_in_a_bucket_is_read_like_a_folder(scores, bucket):
    from common.stores import storage

    fs, path = storage.filesystem(bucket)
    fs.put(str(scores), f"{path}/scores", recursive=True)
    remote, local = load_scores_report(f"{bucket}/scores"), load_scores_report(str(scores))
    assert remote.counts == local.counts and remote.failures == local.failures
    assert [(v.key, v.points, v.tracks) for v in remote.videos] == [(v.key, v.points, v.tracks) for v in local.videos]


def test_an_extract_table_in_a_bucket_is_read_only_once_its_success_marker_is_there(tmp_path, bucket):
    from common.stores import storage

    paths = write_extract_outputs(tmp_path)
    fs, path = storage.filesystem(bucket)
    fs.put(str(paths["features"]), f"{path}/features", recursive=True)
    with pytest.raises(ReportInputError, match="--features .* has no _SUCCESS"):  # being replaced: may be a mix
        load_extract_report(features=f"{bucket}/features")
    storage.write_bytes(f"{bucket}/features/_SUCCESS", b"{}")
    remote = load_extract_report(features=f"{bucket}/features")
    local = load_extract_report(features=str(paths["features"]))
    assert remote.counts == local.counts and remote.failures == local.failures
