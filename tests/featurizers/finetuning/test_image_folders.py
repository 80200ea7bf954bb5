"""Listing, checking and splitting a labelled face-image folder; the class weights of the loss."""

import pytest
from PIL import Image

from common.errors import DatasetLayoutError
from featurizers.finetuning.image_folders import (
    LabelledImage,
    check_image,
    class_weights,
    clip_of_file_name,
    list_image_folder,
    load_rgb,
    split_by_group,
)


def _png(path, mode="RGB", size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)
    return path


def test_clip_of_file_name_strips_frame_and_face_index():
    assert clip_of_file_name("000001001_12.png") == "000001001"
    assert clip_of_file_name("289_55_12_0.png") == "289_55"  # VGAF: clip id with an underscore, face index
    assert clip_of_file_name("image.jpg") == "image"
    assert clip_of_file_name("a_1_2_3.png") == "a_1"  # at most two numbers are removed


def test_class_weights_follow_the_inverse_frequency_of_the_paper():
    weights = class_weights([0, 0, 0, 0, 1, 1, 2], 3)
    assert weights.tolist() == pytest.approx([1.0, 2.0, 4.0])  # max count / count


def test_a_class_without_training_images_is_an_error_naming_it():
    with pytest.raises(DatasetLayoutError, match="Sad"):
        class_weights([0, 0], 2, ("Happy", "Sad"))


def test_bad_images_are_skipped_and_named(tmp_path):
    good = _png(tmp_path / "Happy" / "a_1.png")
    _png(tmp_path / "Happy" / "grey_1.png", mode="L")
    (tmp_path / "Sad").mkdir()
    (tmp_path / "Sad" / "empty_1.png").write_bytes(b"")
    (tmp_path / "Sad" / "text_1.png").write_text("not an image")
    cut = _png(tmp_path / "Sad" / "cut_1.png", size=(64, 64))
    cut.write_bytes(cut.read_bytes()[:-30])  # truncated: PNG checksum or end chunk missing
    _png(tmp_path / "Sad" / "alpha_1.png", mode="RGBA")
    _png(tmp_path / "Sad" / "ok_1.png")
    (tmp_path / "Sad" / "notes.txt").write_text("ignored: not an image extension")
    listing = list_image_folder(tmp_path)
    assert listing.classes == ("Happy", "Sad")
    assert sorted(p.split("/")[-1] for p in (i.path for i in listing.images)) == ["a_1.png", "grey_1.png", "ok_1.png"]
    reasons = {p.split("/")[-1]: why for p, why in listing.skipped.items()}
    assert set(reasons) == {"empty_1.png", "text_1.png", "cut_1.png", "alpha_1.png"}
    assert "empty" in reasons["empty_1.png"] and "RGBA" in reasons["alpha_1.png"]
    assert check_image(good) is None
    assert load_rgb(tmp_path / "Happy" / "grey_1.png").shape == (6, 8, 3)


def test_validation_folder_must_use_the_training_classes(tmp_path):
    _png(tmp_path / "Angry" / "x_1.png")
    with pytest.raises(DatasetLayoutError, match="Angry"):
        list_image_folder(tmp_path, classes=("Happy", "Sad"))


def test_manifest_clip_ids_group_images(tmp_path):
    _png(tmp_path / "Happy" / "x_1.png")
    _png(tmp_path / "Happy" / "y_1.png")
    listing = list_image_folder(tmp_path, clip_of={"Happy/x_1.png": "clipA", "Happy/y_1.png": "clipA"})
    assert {i.group for i in listing.images} == {"clipA"}


def test_split_holds_out_whole_clips_reproducibly():
    images = [LabelledImage(f"{clip}_{frame}.png", clip % 3, f"c{clip}") for clip in range(20) for frame in range(5)]
    train, val = split_by_group(images, 0.2, seed=3)
    assert not {i.group for i in train} & {i.group for i in val}
    assert len(train) + len(val) == 100 and 20 <= len(val) <= 25
    assert split_by_group(images, 0.2, seed=3) == (train, val)
    assert split_by_group(images, 0.2, seed=4) != (train, val)


def test_split_needs_two_clips():
    images = [LabelledImage(f"{k}.png", 0, "one") for k in range(5)]
    with pytest.raises(DatasetLayoutError, match="--val-images"):
        split_by_group(images, 0.1, seed=0)
