"""Week 6: AlexNet on CIFAR-10, with the images resized to 227x227, and data parallelism: one
training step on a batch split over several devices (`shard_batch`, `replicate`).

Five convolutions and three fully connected layers, with dropout before the first two of those:
43,553,542 parameters at 227x227, as in the PyTorch original (fc 4096 -> 500 -> 10 for CIFAR-10
instead of the ImageNet model's 4096 -> 4096 -> 1000).

Differences from the PyTorch original:
- Images are NHWC (batch, height, width, channels), not NCHW; kernels are HWIO, not OIHW.
- The flatten after the last pooling orders the 9216 features as (H, W, C) = (6, 6, 256), channels
  last, where PyTorch's `x.view(-1, 256 * 6 * 6)` orders them (C, H, W). Porting the first fully
  connected layer's weight `w` (4096, 9216) from PyTorch therefore needs
  `w.reshape(4096, 256, 6, 6).transpose(2, 3, 1, 0).reshape(9216, 4096)`.
- `AlexNet` takes an `input_size` (default 227): the first fully connected layer's input size
  depends on it. `AlexNet(input_size=67)` is the smallest that works (a 1x1x256 final map) and
  runs fast enough on a CPU for tests.
"""

import jax
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from course import layers, transforms
from course.recipe import Recipe


def resize_227(images: jax.Array) -> jax.Array:
    """Bilinear resize of images (N, H, W, C) to AlexNet's input size, (N, 227, 227, C).

    Float images stay float; uint8 images come back as float32 in [0, 255].
    """
    if images.ndim != 4:
        raise ValueError(f"resize_227: images must have shape (N, H, W, C), got shape {images.shape}")
    # BEGIN TASK 6.1: one call to transforms.resize
    return transforms.resize(images, 227)
    # END TASK


def final_map_size(input_size: int) -> int:
    """Height (= width) of AlexNet's last pooled feature map for square inputs of side `input_size`.

    C1 (11x11, stride 4, no padding) maps a side s to (s - 11) // 4 + 1; each 3x3 max-pool with
    stride 2 maps s to (s - 3) // 2 + 1; C2 to C5 keep the size. 227 -> 55 -> 27 -> 27 -> 13 -> 13 -> 6.

    Raises ValueError when `input_size` is too small to leave at least one pixel (below 67).
    """
    if input_size < 67:
        raise ValueError(f"AlexNet input_size must be at least 67 pixels, got {input_size}")
    # BEGIN TASK 6.2: apply the C1 and the three pooling size formulas in turn
    size = (input_size - 11) // 4 + 1
    for _ in range(3):
        size = (size - 3) // 2 + 1
    return size
    # END TASK


class AlexNet(nnx.Module):
    """AlexNet for 10 classes (no local response normalisation, one device, as the original course).

    C1 96@11x11 stride 4 -> ReLU -> pool; C2 256@5x5 pad 2 -> ReLU -> pool; C3 384@3x3 pad 1 -> ReLU;
    C4 384@3x3 pad 1 -> ReLU; C5 256@3x3 pad 1 -> ReLU -> pool; flatten (6 * 6 * 256 = 9216 at 227)
    -> dropout -> fc 4096 -> ReLU -> dropout -> fc 500 -> ReLU -> fc num_classes.
    Every pool is a 3x3 max-pool with stride 2 (overlapping windows).

    Input: (N, input_size, input_size, 3) float images. Output: (N, num_classes) logits.
    """

    def __init__(
        self, num_classes: int = 10, dropout_rate: float = 0.5, *, input_size: int = 227, rngs: nnx.Rngs
    ):
        # BEGIN TASK 6.3: five nnx.Conv, one nnx.Dropout, three nnx.Linear (fc1's input: final_map_size)
        fc1_inputs = final_map_size(input_size) ** 2 * 256  # 6 * 6 * 256 = 9216 at 227
        self.c1 = nnx.Conv(3, 96, kernel_size=(11, 11), strides=4, padding="VALID", rngs=rngs)
        self.c2 = nnx.Conv(96, 256, kernel_size=(5, 5), padding=2, rngs=rngs)
        self.c3 = nnx.Conv(256, 384, kernel_size=(3, 3), padding=1, rngs=rngs)
        self.c4 = nnx.Conv(384, 384, kernel_size=(3, 3), padding=1, rngs=rngs)
        self.c5 = nnx.Conv(384, 256, kernel_size=(3, 3), padding=1, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.fc1 = nnx.Linear(fc1_inputs, 4096, rngs=rngs)
        self.fc2 = nnx.Linear(4096, 500, rngs=rngs)
        self.fc3 = nnx.Linear(500, num_classes, rngs=rngs)
        # END TASK

    def __call__(self, images: jax.Array) -> jax.Array:
        """Maps images (N, input_size, input_size, 3) to logits (N, num_classes)."""
        # BEGIN TASK 6.4: the five convolutions with ReLU and three 3x3/2 pools, flatten, the classifier
        x = layers.max_pool(nnx.relu(self.c1(images)), window=3, stride=2)  # (N, 27, 27, 96) at 227
        x = layers.max_pool(nnx.relu(self.c2(x)), window=3, stride=2)  # (N, 13, 13, 256)
        x = nnx.relu(self.c3(x))
        x = nnx.relu(self.c4(x))
        x = layers.max_pool(nnx.relu(self.c5(x)), window=3, stride=2)  # (N, 6, 6, 256)
        x = x.reshape(x.shape[0], -1)  # (N, 9216) in (H, W, C) order
        x = nnx.relu(self.fc1(self.dropout(x)))
        x = nnx.relu(self.fc2(self.dropout(x)))
        return self.fc3(x)
        # END TASK


def prepare(images: jax.Array) -> jax.Array:
    """uint8 images (N, 32, 32, 3) -> float32 (N, 227, 227, 3): mean 0.5, std 0.5 per channel, then resized."""
    return resize_227(transforms.normalize(images, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))


def augment(key: jax.Array | None, images: jax.Array, training: bool) -> jax.Array:
    """In training, week 4's `random_crop_flip` (yours, when this file is in exercises/) with shifts of
    1/8 of the side (28 pixels at 227, the usual 4-pixel CIFAR shifts scaled up); at evaluation the
    images as they are."""
    from .week4_simple_cnn import random_crop_flip

    return random_crop_flip(key, images, padding=images.shape[1] // 8) if training else images


def shuffled_batches(key: jax.Array, num_examples: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Week 4's `shuffled_batches` (yours, when this file is in exercises/)."""
    from .week4_simple_cnn import shuffled_batches

    return shuffled_batches(key, num_examples, batch_size)


def sgd_momentum(learning_rate) -> optax.GradientTransformation:
    """SGD with Nesterov momentum 0.9 and weight decay 5e-4, AlexNet's own optimiser (Krizhevsky et al.)."""
    return optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(learning_rate, momentum=0.9, nesterov=True))


def train_step(model: nnx.Module, optimizer: nnx.Optimizer, images: jax.Array, labels: jax.Array) -> dict:
    """Week 2's `train_step` (yours, when this file is in exercises/): the same cross-entropy step."""
    from .week2_neural_networks import train_step

    return train_step(model, optimizer, images, labels)


def eval_step(model: nnx.Module, images: jax.Array, labels: jax.Array) -> dict:
    """Week 2's `eval_step` (yours, when this file is in exercises/)."""
    from .week2_neural_networks import eval_step

    return eval_step(model, images, labels)


# ---------------------------------------------------------------------------------------------
# Data parallelism: one step on a batch split over several devices


def shard_batch(mesh: jax.sharding.Mesh, batch: jax.Array) -> jax.Array:
    """Places `batch` on the mesh's devices split along its first axis: with D devices on the mesh's
    one axis "data", device i holds rows i * N/D to (i + 1) * N/D - 1.

    Inputs:
      mesh: a one-axis `jax.sharding.Mesh` named "data" over D devices.
      batch: (N, ...) with N divisible by D.

    Returns:
      The same values as a `jax.Array` with the sharding `NamedSharding(mesh, PartitionSpec("data"))`.
    """
    # BEGIN TASK 6.5: jax.device_put with NamedSharding(mesh, PartitionSpec("data"))
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
    # END TASK


def replicate(mesh: jax.sharding.Mesh, tree):
    """Places a whole copy of every array of `tree` on every device of the mesh.

    Inputs:
      mesh: as `shard_batch`.
      tree: any pytree of arrays, e.g. `nnx.state((model, optimizer))`.

    Returns:
      The same tree, every array with the sharding `NamedSharding(mesh, PartitionSpec())`: nothing split.
    """
    # BEGIN TASK 6.6: jax.device_put of the whole tree with NamedSharding(mesh, PartitionSpec())
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
    # END TASK


def data_parallel_step(mesh: jax.sharding.Mesh, model: nnx.Module, optimizer: nnx.Optimizer,
                       images: jax.Array, labels: jax.Array) -> dict:
    """`train_step` on a batch split over the mesh's devices, with the model and optimizer replicated.

    The step's code does not change: the compiled step sees where its inputs live, each device works
    on its share of the batch, and the gradients are summed across devices where the loss averages
    over the batch. The result equals the one-device step, up to float rounding.
    """
    nnx.update((model, optimizer), replicate(mesh, nnx.state((model, optimizer))))
    return train_step(model, optimizer, shard_batch(mesh, images), shard_batch(mesh, labels))


# For a GPU. The original trained 10 epochs of plain SGD (lr 0.01, batch 20) without augmentation
# and reached 81.35%. A net of 43.5M weights overfits CIFAR-10's 40,000 training images quickly:
# random shifts and flips, weight decay and more epochs do the most for test accuracy, momentum
# makes the epochs count, and a cosine decay after one warm-up epoch (no batch normalisation here,
# so the first steps are the fragile ones) ends training at a small step. Aimed at >= 89%.
RECIPES = {
    "alexnet": Recipe(
        model=lambda rngs: AlexNet(rngs=rngs),
        train_step=train_step,
        eval_step=eval_step,
        dataset="cifar10",
        datasets=("cifar10", "shapes_rgb"),
        epochs=30,
        batch_size=128,
        learning_rate=0.01,
        optimizer=sgd_momentum,
        schedule="warmup_cosine",
        prepare=prepare,
        augment=augment,
        batches=shuffled_batches,
        validation_fraction=0.2,
    ),
}
