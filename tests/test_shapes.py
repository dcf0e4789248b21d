"""course.shapes: the synthetic shapes, as `course.data.load` gives them."""

import numpy as np

from course import data


def test_synthetic_shapes_are_deterministic_and_learnable_shaped():
    images, labels = data.load("shapes_rgb", "test")
    assert images.shape == (1000, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int32
    assert set(np.unique(labels)) == set(range(10))
    again, _ = data.load("shapes_rgb", "test")
    np.testing.assert_array_equal(images, again)
    gray, _ = data.load("shapes_gray", "train")
    assert gray.shape == (6000, 28, 28, 1)
    # The shapes differ by class: the mean image of two classes is far apart.
    bars = gray[data.load("shapes_gray", "train")[1] == 0].mean(axis=0)
    disks = gray[data.load("shapes_gray", "train")[1] == 4].mean(axis=0)
    assert np.abs(bars - disks).max() > 50
