"""What the tests of the viz modules share: models with random weights, the pixel size of a PNG."""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from PIL import Image

from course import viz


def random_model(build, seed: int = 0) -> nnx.Module:
    """`build(nnx.Rngs)`'s model with random normal weights, without compiling its initialisers (slow on CPU)."""
    model = nnx.eval_shape(lambda: build(nnx.Rngs(seed)))
    generator = np.random.default_rng(seed)

    def fill(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key(seed)
        scale = 1 / np.sqrt(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0.1
        return jnp.asarray(generator.normal(size=leaf.shape) * scale, leaf.dtype)

    nnx.update(model, jax.tree.map(fill, nnx.state(model)))
    return model


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels of a non-empty PNG file."""
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def figure_pixels(figure, dpi: int = viz.DPI) -> tuple[int, int]:
    width, height = figure.get_size_inches() * dpi
    plt.close(figure)
    return round(width), round(height)


def assert_size(path, expected) -> None:
    width, height = png_size(path)
    assert abs(width - expected[0]) <= 1 and abs(height - expected[1]) <= 1, (path, (width, height), expected)
