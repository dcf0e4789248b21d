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
# # Week 3: convolution and pooling by hand
#
# A fully connected layer looks at every pixel with its own weight: a 28x28 image and 256 hidden
# units already need 200,704 weights, and a cat in the top-left corner teaches the network nothing
# about a cat in the bottom-right. A **convolution** instead slides one small set of weights, a
# *kernel*, over the whole image. This week you write that operation and max-pooling yourself, then
# use them on a photograph and on the original course's four edge filters.
#
# This lesson runs your code in `exercises/week3_convolutions.py`. Until a function is written, the
# cell that needs it says which one to fill in.

# %%
import jax
import jax.numpy as jnp
import matplotlib.cbook
import matplotlib.pyplot as plt
import numpy as np

from course import lessons, viz_filters

week = lessons.load_week("week3_convolutions", data_note="small made-up arrays, then a photograph that ships with matplotlib")

# %% [markdown]
# ## 1. What a convolution computes
#
# For images $x$ of shape $(N, H, W, C_\text{in})$ (NHWC) and kernels $k$ of shape
# $(K_H, K_W, C_\text{in}, C_\text{out})$ (HWIO, Flax's layout), output channel $o$ at position
# $(y, x)$ is
#
# $$
# \text{out}[n, y, x, o] = b_o + \sum_{i=0}^{K_H-1} \sum_{j=0}^{K_W-1} \sum_{c=0}^{C_\text{in}-1}
#     \text{padded}[n,\; y s + i,\; x s + j,\; c]\; k[i, j, c, o]
# $$
#
# where $s$ is the stride and `padded` is the image with $P$ zeros added on every side. The kernel is
# *not* flipped: deep-learning libraries (PyTorch's `nn.Conv2d`, Flax's `nnx.Conv`) compute this
# cross-correlation and call it convolution.
#
# **Output size.** The kernel's top-left corner can sit at rows $0, s, 2s, \dots$ as long as the
# kernel still fits in the $H + 2P$ padded rows:
#
# $$
# H_\text{out} = \left\lfloor \frac{H + 2P - K_H}{s} \right\rfloor + 1,
# \qquad W_\text{out} \text{ likewise.}
# $$
#
# A 3x3 kernel with $P = 1$, $s = 1$ keeps the size ("same" padding); AlexNet's first layer,
# 11x11 with $s = 4$ on 227x227 images, gives $\lfloor (227 - 11) / 4 \rfloor + 1 = 55$.

# %%
def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output height (or width) of a convolution or pooling layer."""
    return (size + 2 * padding - kernel) // stride + 1


for size, kernel, stride, padding, where in [
    (5, 3, 1, 0, "the worked example below"),
    (32, 3, 1, 1, "SimpleCNN's convolutions (week 4)"),
    (32, 5, 1, 0, "LeNet-5's C1 (week 5)"),
    (227, 11, 4, 0, "AlexNet's C1 (week 6)"),
]:
    print(f"{size}x{size} image, {kernel}x{kernel} kernel, stride {stride}, padding {padding}: "
          f"{output_size(size, kernel, stride, padding)}x{output_size(size, kernel, stride, padding)}   ({where})")

# %% [markdown]
# ### A worked example
#
# A 5x5 image and a 3x3 kernel give a 3x3 output. Each output value is the sum of the
# elementwise product of the kernel with the 3x3 window under it. Compare the value computed by
# hand with your `conv2d` (Task 3.1):

# %%
image = jnp.asarray(np.random.default_rng(3).integers(0, 10, (5, 5)), jnp.float32)
kernel = jnp.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=jnp.float32)
by_hand = float(jnp.sum(image[1:4, 2:5] * kernel))  # output row 1, column 2
print("image:\n", image, "\nkernel:\n", kernel)
print("output[1, 2] by hand:", by_hand)

# %%
outputs = week.conv2d(image[None, :, :, None], kernel[:, :, None, None])
print("conv2d output (3x3):\n", outputs[0, :, :, 0])
print("output[1, 2] from conv2d:", float(outputs[0, 1, 2, 0]))

# %% [markdown]
# The same numbers come from JAX's own convolution, `jax.lax.conv_general_dilated`, on random
# images with several channels, a stride and padding: this is how the tests check `conv2d`.

# %%
images = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
kernels = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
mine = week.conv2d(images, kernels, stride=2, padding=1)
reference = jax.lax.conv_general_dilated(images, kernels, window_strides=(2, 2), padding=((1, 1), (1, 1)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
print("output shape:", mine.shape, " expected:", (2, output_size(9, 3, 2, 1), output_size(9, 3, 2, 1), 4))
print("largest difference from jax.lax:", float(jnp.max(jnp.abs(mine - reference))))

# %% [markdown]
# ## 2. Max-pooling
#
# Max-pooling keeps the largest value of each `window` x `window` block, moved by `stride`. It has no
# weights; it makes the maps smaller (2x2/2 halves each side, a quarter of the values) and the
# network a little insensitive to small shifts. Its output size is the convolution's with $P = 0$:
# $H_\text{out} = \lfloor (H - \text{window}) / \text{stride} \rfloor + 1$.
#
# Backpropagation sends each window's gradient to its largest input only (the others did not
# affect the output). AlexNet uses overlapping 3x3 windows with stride 2 (week 6).

# %%
block = jnp.array([[1, 3, 2, 1], [4, 2, 0, 1], [5, 1, 7, 8], [0, 6, 3, 2]], dtype=jnp.float32)
print("input 4x4:\n", block)
print("2x2 max-pool, stride 2:\n", week.max_pool2d(block[None, :, :, None], window=2, stride=2)[0, :, :, 0])
print("3x3 max-pool, stride 1 (overlapping):\n", week.max_pool2d(block[None, :, :, None], window=3, stride=1)[0, :, :, 0])

# %% [markdown]
# ## 3. Edges in a photograph: the Sobel kernels
#
# The original notebook applied the Sobel kernel to a grayscale photo. `sobel_x` (Task 3.3) weighs
# the column to the right of each pixel $+1, +2, +1$ and the column to the left $-1, -2, -1$: it is
# large where brightness grows from left to right, at vertical edges; `sobel_y` is its transpose.

# %%
with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
    photo = plt.imread(handle)
gray = jnp.asarray(photo[::3, ::3].mean(axis=-1) / 255.0, jnp.float32)  # every third pixel, in [0, 1]
print("photo:", photo.shape, "-> grayscale", gray.shape)

sobel_x, sobel_y = week.sobel_kernels()
lessons.show(viz_filters.plot_kernels([sobel_x, sobel_y], ["sobel_x", "sobel_y"]))

# %% [markdown]
# `feature_maps` (Task 3.5) runs one image through a bias-free convolution with several kernels,
# then ReLU, then 2x2 max-pooling, exactly as the original notebook's `nn.Conv2d(1, 4, 4, bias=False)`
# did, and returns the maps filter first. ReLU keeps only one sign of each edge.

# %%
sobel_maps = week.feature_maps(gray, jnp.stack([sobel_x, sobel_y]))
print({stage: maps.shape for stage, maps in sobel_maps.items()})
lessons.show(viz_filters.plot_feature_maps(np.asarray(gray), sobel_maps, title="Sobel x and y"))

# %% [markdown]
# ## 4. The original course's four 4x4 filters
#
# `four_filters` (Task 3.4) builds $f_1$, every row $[-1, -1, 1, 1]$ (dark on the left, bright on the
# right), $f_2 = -f_1$, $f_3 = f_1^T$ (a horizontal edge) and $f_4 = -f_3$. A 4x4 kernel on an
# $H \times W$ image without padding gives $(H - 3) \times (W - 3)$ maps, pooled to half that.

# %%
filters = week.four_filters()
lessons.show(viz_filters.plot_kernels(list(filters), [f"f{index}" for index in range(1, 5)]))

# %%
maps = week.feature_maps(gray, filters)
height, width = gray.shape
print(f"image {height}x{width}: conv maps {maps['conv'].shape[1:]} = ({height} - 3, {width} - 3), "
      f"pooled {maps['pooled'].shape[1:]}")
lessons.show(viz_filters.plot_feature_maps(np.asarray(gray), maps, title="four 4x4 filters"))

# %% [markdown]
# ## Your turn
#
# Fill in the tasks of `exercises/week3_convolutions.py`:
#
# | task | function | what |
# |---|---|---|
# | 3.1 | `conv2d` | pad, gather the $K_H K_W$ shifted strided slices, one `einsum` |
# | 3.2 | `max_pool2d` | the maximum of the window's shifted strided slices |
# | 3.3 | `sobel_kernels` | the two 3x3 Sobel kernels |
# | 3.4 | `four_filters` | $f_1$ and the three filters made from it |
# | 3.5 | `feature_maps` | conv, ReLU and 2x2 max-pool of one image |
#
# Rerun this notebook as you go, then grade your work:
#
# ```
# course grade week3
# ```
