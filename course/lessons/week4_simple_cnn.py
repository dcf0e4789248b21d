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
import numpy as np
from flax import nnx

from course import data, lessons, viz

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
for name, value in viz.layer_outputs(model, jnp.zeros((1, 32, 32, 3))).items():
    print(f"  {name:8s} output {tuple(value.shape)}")

# %% [markdown]
# ## 3. Training
#
# The recipe (`week.RECIPES["simple_cnn"]`) normalises each channel to $[-1, 1]$ with mean 0.5 and
# std 0.5, as the original; augments each training batch with random shifts of up to 2 pixels and
# left-right flips (the network sees a slightly different image each epoch, which curbs
# overfitting); and trains with Adam, warming the learning rate up over the first epoch and
# decaying it along a cosine. `course train simple_cnn` trains it fully on CIFAR-10.

# %%
recipe = week.RECIPES["simple_cnn"]
epochs = 16 if lessons.full_data() else 4
model, history = lessons.fit_model(recipe, train_data, test_data, epochs=epochs, dataset=dataset, model_name="simple_cnn",
                                   batch_size=None if lessons.full_data() else 64)
lessons.show(viz.plot_history(history))

# %% [markdown]
# ## 4. What the trained network does
#
# Twenty test images titled "predicted (true)", green when right; then where the errors go (the
# confusion matrix: row = true class, column = predicted) and the accuracy of each class.

# %%
test_images, test_labels = test_data
outputs, predictions = viz.predict(model, recipe.prepare, test_images)
lessons.show(viz.plot_predictions(test_images[:20], test_labels[:20], predictions[:20], names))
matrix = viz.confusion_matrix(test_labels, predictions, len(names))
lessons.show(viz.plot_confusion(matrix, names))
lessons.show(viz.plot_class_accuracy(viz.per_class_accuracy(matrix), names, overall=float(np.mean(predictions == test_labels))))

# %% [markdown]
# The first layer's 16 learned 3x3x3 kernels, shown in colour, and what conv1 computes for one
# test image: its output, after ReLU, and after pooling, filter by filter.

# %%
_, kernels = viz.first_conv_kernels(model)
lessons.show(viz.plot_learned_filters(kernels, "conv1"))
inputs = recipe.prepare(jnp.asarray(test_images[:1]))
lessons.show(viz.plot_feature_maps(test_images[0], viz.layer_feature_maps(model, inputs, "conv1"), title="conv1", max_filters=8))

# %% [markdown]
# ## Your turn
#
# Fill in the tasks of `exercises/week4_simple_cnn.py`:
#
# | task | function | what |
# |---|---|---|
# | 4.1 | `SimpleCNN.__init__` | two `nnx.Conv` (3x3, padding 1), three `nnx.Linear`, `nnx.Dropout(0.4)` |
# | 4.2 | `SimpleCNN.__call__` | conv-ReLU-pool twice, flatten, the fully connected layers |
#
# Rerun this notebook as you go, then grade your work:
#
# ```
# course grade week4
# ```
#
# and train it fully with `course train simple_cnn --out runs/simple_cnn`.
