"""Comparing two detectors' faces frame by frame, as the detector tests do."""

import numpy as np


def assert_same_faces(found, expected, frames: int) -> None:
    """Same face counts, boxes and landmarks to 1e-3 px, probabilities to 1e-5, in every frame.

    Float32 runtimes move boxes by about 1e-4 px; a wrong step of the method (a transposed
    crop, a missing softmax) moves them by pixels or finds other faces.
    """
    assert sum(len(f) for f in expected) >= frames  # faces in every frame: a real comparison
    for got, want in zip(found, expected, strict=True):
        assert len(got) == len(want)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.landmarks, want.landmarks, atol=1e-3)
        np.testing.assert_allclose(got.probs, want.probs, atol=1e-5)
