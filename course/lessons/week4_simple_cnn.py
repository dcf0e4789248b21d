# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Week 4: a small convolutional network on CIFAR-10
#
# Last week's convolution and pooling, stacked into a network and trained: two 3x3 convolutions,
# each followed by ReLU and 2x2 max-pooling, then three fully connected layers. The original course
# reached 69% on CIFAR-10's ten classes of 32x32 colour photos with it.
#
# This lesson runs your code in `exercises/week4_simple_cnn.py`. Until a part is written, the cell
# that needs it says which one to fill in.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from course import data, lessons, viz, viz_filters, viz_layers, viz_predictions, viz_training

week = lessons.load_week("week4_simple_cnn")

# %% [markdown]
# ## 1. Colour images are three arrays
#
# A colour image is an $(H, W, 3)$ array: one 32x32 plane of numbers from 0 to 255 per colour
# channel. A convolution's kernel spans all input channels, so a 3x3 kernel on an RGB image has
# $3 \cdot 3 \cdot 3 = 27$ weights (plus a bias) and sums over all three planes at once.
#
# By default the lesson uses `shapes_rgb`, synthetic 32x32 colour images of ten shapes; with
# `COURSE_LESSON_FULL=1` it uses CIFAR-10.

# %%
dataset, train_data, test_data = lessons.image_dataset("cifar10", "shapes_rgb", train_examples=2500, test_examples=1000)
names = data.class_names(dataset)
train_images, train_labels = train_data
print(f"{dataset}: train {train_images.shape} {train_images.dtype}, test {test_data[0].shape}")
lessons.show(viz.plot_channels(train_images[0], title=f"{dataset} image 0: {names[train_labels[0]]}"))

# %% [markdown]
# ## 2. The network, layer by layer
#
# | layer | output shape (NHWC) | parameters |
# |---|---|---|
# | input | 32 x 32 x 3 | |
# | conv1 3→16, 3x3, padding 1, ReLU | 32 x 32 x 16 | $3 \cdot 3 \cdot 3 \cdot 16 + 16 = 448$ |
# | max-pool 2x2/2 | 16 x 16 x 16 | |
# | conv2 16→25, 3x3, padding 1, ReLU | 16 x 16 x 25 | $3 \cdot 3 \cdot 16 \cdot 25 + 25 = 3{,}625$ |
# | max-pool 2x2/2 | 8 x 8 x 25 | |
# | flatten | 1600 | |
# | fc1 1600→128, ReLU | 128 | $1600 \cdot 128 + 128 = 204{,}928$ |
# | fc2 128→64, ReLU, dropout 0.4 | 64 | $128 \cdot 64 + 64 = 8{,}256$ |
# | fc3 64→10 | 10 | $64 \cdot 10 + 10 = 650$ |
#
# A convolution with a $K \times K$ kernel from $C_\text{in}$ to $C_\text{out}$ channels has
# $K^2 C_\text{in} C_\text{out} + C_\text{out}$ parameters whatever the image size; padding 1 keeps
# 32x32 at 32x32 ($\lfloor(32 + 2 - 3)/1\rfloor + 1 = 32$) and each pool halves it. In total
# **217,907** parameters, 94% of them in fc1: the convolutions are cheap in weights and
# expensive in arithmetic, the fully connected layers the opposite.
#
# The flatten order differs from PyTorch: NHWC arrays flatten as (H, W, C), channels last, where
# PyTorch's NCHW flatten is (C, H, W). Both are fine for training; it matters only when porting
# weights (`course port`).

# %%
def conv_parameters(kernel: int, channels_in: int, channels_out: int) -> int:
    return kernel * kernel * channels_in * channels_out + channels_out


def linear_parameters(inputs: int, outputs: int) -> int:
    return inputs * outputs + outputs


by_formula = (conv_parameters(3, 3, 16) + conv_parameters(3, 16, 25) + linear_parameters(8 * 8 * 25, 128)
              + linear_parameters(128, 64) + linear_parameters(64, 10))
print(f"parameters by formula: {by_formula:,}")

# %% [markdown]
# Your `SimpleCNN` (Tasks 4.1 and 4.2) should have the same count, and map a batch
# (N, 32, 32, 3) to logits (N, 10):

# %%
model = week.SimpleCNN(rngs=nnx.Rngs(0))
count = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
print(f"SimpleCNN parameters: {count:,}")
print("logits shape:", model(jnp.zeros((4, 32, 32, 3))).shape)
for name, value in viz_layers.layer_outputs(model, jnp.zeros((1, 32, 32, 3))).items():
    print(f"  {name:8s} output {tuple(value.shape)}")

# %% [markdown]
# ## 3. Randomness with explicit keys
#
# Training draws random numbers in three places: the order of the examples, the augmentation of
# each batch, and dropout's masks. NumPy keeps a hidden global state that every call advances;
# JAX has none. A JAX random function takes a *key* and returns the same numbers for the same key,
# every time. That is what makes it a pure function that `jit` can compile (week 2), and what makes
# a run reproducible.

# %%
key = jax.random.key(0)
print("normal(key):        ", jax.random.normal(key, (3,)))
print("normal(key) again:  ", jax.random.normal(key, (3,)))
first_key, second_key = jax.random.split(key)
print("normal(first_key):  ", jax.random.normal(first_key, (3,)))
print("normal(second_key): ", jax.random.normal(second_key, (3,)))

# %% [markdown]
# The other side of it: reusing a key reuses the numbers. Decide whether to flip eight images with
# one key and they all get the same answer; split the key into one key per image and each image
# gets its own draw. So a key is used once: `jax.random.split(key, n)` turns it into `n` new,
# independent keys, and each goes to one consumer.

# %%
one_key_for_all = [bool(jax.random.bernoulli(key)) for _ in range(8)]
one_key_each = [bool(jax.random.bernoulli(image_key)) for image_key in jax.random.split(key, 8)]
print("flip? one key for all 8 images:", one_key_for_all)
print("flip? one key per image:       ", one_key_each)

# %% [markdown]
# ### Augmentation, one key per image (Task 4.3)
#
# `random_crop_flip(key, images, padding)` pads each image with `padding` zeros on every side, crops
# it back to 32x32 at a random offset (a shift of up to `padding` pixels each way) and mirrors it
# left-right with probability 1/2. It splits `key` into one key per image, and `jax.vmap` applies
# the one-image function to every image with its own key. `padding` is a plain Python number: it
# sets the padded shape, so under `jit` it must be a static argument (week 2).
#
# Eight copies of one training image, augmented in one batch, come out eight different ways:

# %%
random_crop_flip = jax.jit(week.random_crop_flip, static_argnames="padding")
copies = jnp.repeat(jnp.asarray(train_images[:1]), 8, axis=0)
augmented = random_crop_flip(jax.random.key(1), copies, padding=2)
same_key_again = random_crop_flip(jax.random.key(1), copies, padding=2)
print("same key, same result:", bool(jnp.array_equal(augmented, same_key_again)))
figure, axes = plt.subplots(1, 9, figsize=(13, 1.9), layout="constrained")
viz.show_image(axes[0], train_images[0], "original")
for index, axis in enumerate(axes[1:]):
    viz.show_image(axis, np.asarray(augmented[index]), f"copy {index + 1}")
figure.suptitle("random_crop_flip(key, 8 copies, padding=2)")
lessons.show(figure)

# %% [markdown]
# ### An epoch's batches from a key (Task 4.4)
#
# `shuffled_batches(key, num_examples, batch_size)` splits the epoch's key in two: one key draws a
# random order of the examples (`jax.random.permutation`), the other is split into a fresh key for
# every step, for that step's augmentation. The last, incomplete batch is dropped, so every step has
# the same shape and runs the same compiled program.
#
# The training loop (`course.train`) makes the epoch's key from the seed and the epoch number
# alone, `jax.random.fold_in(jax.random.key(seed), epoch)`. Nothing carries over from one epoch to
# the next, so training resumed from a checkpoint at epoch 5 draws exactly the batches and
# augmentations the uninterrupted run drew.

# %%
def epoch_key(seed: int, epoch: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), epoch)


batches, step_keys = week.shuffled_batches(epoch_key(0, 0), num_examples=10, batch_size=3)
print("epoch 0, 10 examples in batches of 3 (one left out):\n", batches)
print("its step keys, all different:", [tuple(int(word) for word in jax.random.key_data(step_key)) for step_key in step_keys])
batches_again, _ = week.shuffled_batches(epoch_key(0, 0), num_examples=10, batch_size=3)
next_batches, _ = week.shuffled_batches(epoch_key(0, 1), num_examples=10, batch_size=3)
print("epoch 0 drawn again is the same:", bool(jnp.array_equal(batches, batches_again)))
print("epoch 1 is another order:\n", next_batches)

# %% [markdown]
# ### Augmentation is off at evaluation (Task 4.5)
#
# `augment(key, images, training)` is the recipe's augmentation: `random_crop_flip` with shifts of
# up to 2 pixels when `training` is True, the images unchanged (and no key needed) when it is
# False. Test images are measured as they are: random shifts there would only add noise to the
# accuracy. `training` is a Python bool that the training loop passes as a static argument, so the
# `if` is decided while tracing and each setting compiles its own program.

# %%
augment = jax.jit(week.augment, static_argnames="training")  # as the training loop compiles it
prepared = week.prepare(jnp.asarray(train_images[:8]))
print("training=True changes the batch:  ",
      not bool(jnp.array_equal(augment(jax.random.key(4), prepared, training=True), prepared)))
print("training=False leaves it as it is:", bool(jnp.array_equal(augment(None, prepared, training=False), prepared)))

# %% [markdown]
# ## 4. Training
#
# The recipe (`week.RECIPES["simple_cnn"]`) normalises each channel to $[-1, 1]$ with mean 0.5 and
# std 0.5, as the original; augments each training batch with random shifts of up to 2 pixels and
# left-right flips (your `augment`, with a fresh key per step from your `shuffled_batches`: the
# network sees a slightly different image each epoch, which curbs overfitting); and trains with
# Adam through your week 2 `train_step`, warming the learning rate up over the first epoch and
# decaying it along a cosine. `course train simple_cnn` trains it fully on CIFAR-10.

# %%
recipe = week.RECIPES["simple_cnn"]
epochs = 16 if lessons.full_data() else 4
model, history = lessons.fit_model(recipe, train_data, test_data, epochs=epochs, dataset=dataset, model_name="simple_cnn",
                                   batch_size=None if lessons.full_data() else 64)
lessons.show(viz_training.plot_history(history))

# %% [markdown]
# ## 5. What the trained network does
#
# Twenty test images titled "predicted (true)", green when right; then where the errors go (the
# confusion matrix: row = true class, column = predicted) and the accuracy of each class.

# %%
test_images, test_labels = test_data
outputs, predictions = viz_predictions.predict(model, recipe.prepare, test_images)
lessons.show(viz_predictions.plot_predictions(test_images[:20], test_labels[:20], predictions[:20], names))
matrix = viz_predictions.confusion_matrix(test_labels, predictions, len(names))
lessons.show(viz_predictions.plot_confusion(matrix, names))
lessons.show(viz_predictions.plot_class_accuracy(viz_predictions.per_class_accuracy(matrix), names, overall=float(np.mean(predictions == test_labels))))

# %% [markdown]
# The first layer's 16 learned 3x3x3 kernels, shown in colour, and what conv1 computes for one
# test image: its output, after ReLU, and after pooling, filter by filter.

# %%
_, kernels = viz_filters.first_conv_kernels(model)
lessons.show(viz_filters.plot_learned_filters(kernels, "conv1"))
inputs = recipe.prepare(jnp.asarray(test_images[:1]))
lessons.show(viz_filters.plot_feature_maps(test_images[0], viz_filters.layer_feature_maps(model, inputs, "conv1"), title="conv1", max_filters=8))

# %% [markdown]
# ## Your turn
#
# Fill in the tasks of `exercises/week4_simple_cnn.py`:
#
# | task | function | what |
# |---|---|---|
# | 4.1 | `SimpleCNN.__init__` | two `nnx.Conv` (3x3, padding 1), three `nnx.Linear`, `nnx.Dropout(0.4)` |
# | 4.2 | `SimpleCNN.__call__` | conv-ReLU-pool twice, flatten, the fully connected layers |
# | 4.3 | `random_crop_flip` | one key per image (`split`, `vmap`): zero-pad, crop at a random offset, flip half |
# | 4.4 | `shuffled_batches` | a random order from one key, a fresh key for every step |
# | 4.5 | `augment` | `random_crop_flip` with padding 2 when training, the images as they are otherwise |
#
# Rerun this notebook as you go, then grade your work:
#
# ```
# course grade week4
# ```
#
# and train it fully with `course train simple_cnn --out runs/simple_cnn`.
