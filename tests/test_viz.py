"""course.viz: what every figure shares (showing an image, saving a PNG) and the channels figure."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from course import viz


def test_display_image_scales_to_the_unit_range():
    np.testing.assert_allclose(viz.display_image(np.array([[0, 51, 255]], np.uint8)), [[0, 0.2, 1]])
    gray = viz.display_image(np.array([[[2.0], [3.0], [4.0]]]))  # one channel: (1, 3, 1) -> (1, 3)
    np.testing.assert_allclose(gray, [[0, 0.5, 1]])
    np.testing.assert_allclose(viz.display_image(np.full((2, 2, 3), 7.0)), np.full((2, 2, 3), 0.5))


def test_save_writes_figsize_times_dpi_pixels_and_closes_the_figure(tmp_path):
    figure = plt.figure(figsize=(3, 2))
    path = viz.save(figure, tmp_path / "new folder" / "figure.png", dpi=50)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (150, 100)
    assert not plt.fignum_exists(figure.number)


def test_plot_channels_refuses_an_image_without_one_or_three_channels():
    with pytest.raises(viz.VizError, match=r"got shape \(4, 4, 2\)"):
        viz.plot_channels(np.zeros((4, 4, 2), np.uint8))
