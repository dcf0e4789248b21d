"""Synthetic shapes: a procedurally generated 10-class image dataset that needs no files.

    images, labels = make_shapes("shapes_gray", "train")     # uint8 (6000, 28, 28, 1), int32 (6000,)

`DATASETS` holds its two variants in the format of `course.data.IMAGE_DATASETS`, which lists them
with the datasets read from files; `course.data.load` makes them on demand.
"""

import numpy as np

SHAPE_CLASSES = ("horizontal bar", "vertical bar", "diagonal", "anti-diagonal", "disk", "ring",
                 "square", "square outline", "plus", "cross")
DATASETS = {
    # name: (height, width, channels, class names), as `course.data.IMAGE_DATASETS`
    "shapes_gray": (28, 28, 1, SHAPE_CLASSES),
    "shapes_rgb": (32, 32, 3, SHAPE_CLASSES),
}
SPLIT_SIZES = {"train": 6000, "test": 1000}


def make_shapes(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images of ten simple shapes (`SHAPE_CLASSES`) at random positions, sizes and intensities.

    `shapes_gray` is MNIST-shaped (28x28x1), `shapes_rgb` CIFAR-shaped (32x32x3, random colours).
    Deterministic: the same split is the same array on every machine.
    """
    height, width, channels, _ = DATASETS[name]
    count = SPLIT_SIZES[split]
    rng = np.random.default_rng([("train", "test").index(split), height, channels])
    labels = rng.integers(0, 10, count).astype(np.int32)
    rows = np.arange(height, dtype=np.float32)[None, :, None]
    cols = np.arange(width, dtype=np.float32)[None, None, :]
    center_y = rng.uniform(0.35, 0.65, (count, 1, 1)) * height
    center_x = rng.uniform(0.35, 0.65, (count, 1, 1)) * width
    radius = rng.uniform(0.2, 0.32, (count, 1, 1)) * min(height, width)
    thickness = rng.uniform(1.2, 2.2, (count, 1, 1))
    dy, dx = rows - center_y, cols - center_x
    inside_box = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    distance = np.sqrt(dy ** 2 + dx ** 2)
    masks = np.stack([
        (np.abs(dy) <= thickness) & inside_box,                                    # horizontal bar
        (np.abs(dx) <= thickness) & inside_box,                                    # vertical bar
        (np.abs(dy - dx) <= 1.4 * thickness) & inside_box,                         # diagonal
        (np.abs(dy + dx) <= 1.4 * thickness) & inside_box,                         # anti-diagonal
        distance <= radius,                                                        # disk
        np.abs(distance - radius) <= thickness,                                    # ring
        inside_box,                                                                # square
        inside_box & ((radius - np.maximum(np.abs(dy), np.abs(dx))) <= thickness),  # square outline
        ((np.abs(dy) <= thickness) | (np.abs(dx) <= thickness)) & inside_box,      # plus
        ((np.abs(dy - dx) <= 1.4 * thickness) | (np.abs(dy + dx) <= 1.4 * thickness)) & inside_box,  # cross
    ], axis=1)
    shape_mask = masks[np.arange(count), labels].astype(np.float32)
    colour = rng.uniform(0.6, 1.0, (count, 1, 1, channels))
    background = rng.uniform(0.0, 0.25, (count, 1, 1, channels))
    noise = rng.normal(0.0, 0.08, (count, height, width, channels))
    images = background + shape_mask[..., None] * (colour - background) + noise
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8), labels
