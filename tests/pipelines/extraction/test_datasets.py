from pathlib import Path

import pytest

from common.errors import DatasetLayoutError
from pipelines.extraction.datasets import list_afew, list_folder, list_vgaf, parse_vgaf_labels


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize("train, val", [("Train_AFEW", "Val_AFEW"), ("train", "val")])
def test_afew_both_layouts_give_labels_in_alphabetical_order(tmp_path, train, val):
    touch(tmp_path / train / "Angry" / "001.avi")
    touch(tmp_path / train / "Surprise" / "002.avi")
    touch(tmp_path / val / "Happy" / "003.avi")
    refs = {r.clip_id: r for r in list_afew(tmp_path)}
    assert (refs["001"].label, refs["001"].label_index, refs["001"].split) == ("Angry", 0, "train")
    assert (refs["002"].label, refs["002"].label_index) == ("Surprise", 6)
    assert (refs["003"].split, refs["003"].label_index) == ("val", 3)
    assert [r.clip_id for r in list_afew(tmp_path, "val")] == ["003"]


def test_afew_keeps_bad_entries_as_clips(tmp_path):
    (tmp_path / "Val_AFEW" / "Sad" / "folder.avi").mkdir(parents=True)
    (tmp_path / "Val_AFEW" / "Sad" / "empty.avi").write_bytes(b"")
    assert sorted(r.clip_id for r in list_afew(tmp_path)) == ["empty", "folder"]


def test_afew_unknown_class_folder_is_an_error_naming_it(tmp_path):
    touch(tmp_path / "Train_AFEW" / "Happy" / "1.avi")
    touch(tmp_path / "Train_AFEW" / "Joyful" / "2.avi")
    with pytest.raises(DatasetLayoutError, match="Joyful"):
        list_afew(tmp_path)


def test_afew_missing_split_folders_is_an_error(tmp_path):
    with pytest.raises(DatasetLayoutError, match="Train_AFEW"):
        list_afew(tmp_path, "train")


def test_repeated_stems_get_relative_path_ids(tmp_path):
    touch(tmp_path / "Train_AFEW" / "Happy" / "007.avi")
    touch(tmp_path / "Val_AFEW" / "Sad" / "007.avi")
    assert sorted(r.clip_id for r in list_afew(tmp_path)) == ["Train_AFEW/Happy/007.avi", "Val_AFEW/Sad/007.avi"]


def test_label_parser_good_file():
    parsed = parse_vgaf_labels("Vid_name Label\n5_2 1\n289_55 3\n\n10_1 2\n")
    assert parsed.labels == {"5_2": 0, "289_55": 2, "10_1": 1}
    assert not parsed.problems and not parsed.unattached


def test_label_parser_reports_bad_lines():
    parsed = parse_vgaf_labels("header\na 1\nb 4\nc x\njust-one-field\nd 2 extra\na 3\n", "Val_labels.txt")
    assert parsed.labels == {"a": 0}
    assert "unknown label '4'" in parsed.problems["b"] and "line 3" in parsed.problems["b"]
    assert "unknown label 'x'" in parsed.problems["c"]
    assert "different label" in parsed.problems["a"]
    assert len(parsed.unattached) == 2 and "Val_labels.txt line 5" in parsed.unattached[0]


def test_vgaf_lists_every_video_and_every_label_with_problems(tmp_path):
    touch(tmp_path / "Val" / "1_1.mp4")
    touch(tmp_path / "Val" / "2_1.mp4")  # no label
    touch(tmp_path / "Val" / "3_1.mp4")  # bad label id
    (tmp_path / "Val_labels.txt").write_text("Vid_name Label\n1_1 3\n3_1 9\n4_1 2\nbroken\n")
    refs, warnings = list_vgaf(tmp_path)
    by_id = {r.clip_id: r for r in refs}
    assert (by_id["1_1"].label, by_id["1_1"].label_index, by_id["1_1"].problem) == ("Negative", 2, None)
    assert "no label for 2_1" in by_id["2_1"].problem
    assert "unknown label '9'" in by_id["3_1"].problem
    assert "no video named 4_1" in by_id["4_1"].problem and by_id["4_1"].label == "Neutral"
    assert len(warnings) == 1 and "broken" in warnings[0]


def test_vgaf_without_label_file_is_unlabelled(tmp_path):
    touch(tmp_path / "Test" / "9_9.mp4")
    refs, _ = list_vgaf(tmp_path, "test")
    assert refs[0].label is None and refs[0].problem is None


def test_folder_listing_is_recursive_and_case_insensitive(tmp_path):
    touch(tmp_path / "a" / "x.MP4")
    touch(tmp_path / "b" / "c" / "y.avi")
    touch(tmp_path / "notes.txt")
    touch(tmp_path / ".hidden" / "z.mp4")
    assert sorted(r.clip_id for r in list_folder(tmp_path)) == ["x", "y"]


def test_afew_test_split_is_unlabelled_videos_directly_in_the_folder(tmp_path):
    touch(tmp_path / "Train_AFEW" / "Happy" / "001.avi")
    touch(tmp_path / "Test_AFEW" / "900.avi")
    refs = {r.clip_id: r for r in list_afew(tmp_path)}
    assert (refs["900"].split, refs["900"].label, refs["900"].label_index) == ("test", None, None)
    assert refs["001"].label == "Happy"
    touch(tmp_path / "Train_AFEW" / "stray.avi")  # in a labelled split, a loose video is a layout error
    with pytest.raises(DatasetLayoutError, match="stray.avi"):
        list_afew(tmp_path)
