"""Week 3: convolution and max-pooling from scratch, Sobel edges and four 4x4 feature maps.

The original notebooks applied hand-made kernels to one grayscale image with PyTorch's
`nn.Conv2d`. Here the convolution and the pooling are written out with array slicing, so the
student sees exactly what a convolution layer computes.

Differences from the PyTorch original:
- Images are NHWC (batch, height, width, channels), not NCHW.
- Convolution kernels are HWIO (height, width, in channels, out channels), as in Flax, not
  PyTorch's OIHW (out channels, in channels, height, width). A PyTorch weight `w` becomes
  `w.transpose(2, 3, 1, 0)`.
- Like PyTorch's and Flax's layers (and OpenCV's `filter2D`), `conv2d` computes a
  cross-correlation: the kernel is slid over the image without being flipped.
"""

import jax
import jax.numpy as jnp


def check_conv_inputs(images: jax.Array, kernels: jax.Array, padding: int) -> None:
    """Raises ValueError unless `images` (N, H, W, C_in) and `kernels` (KH, KW, C_in, C_out) fit.

    Checks the ranks, that the channel counts agree and that the kernel fits in the padded image.
    """
    if images.ndim != 4:
        raise ValueError(f"conv2d: images must have shape (N, H, W, C_in), got shape {images.shape}")
    if kernels.ndim != 4:
        raise ValueError(
            f"conv2d: kernels must have shape (KH, KW, C_in, C_out) (HWIO), got shape {kernels.shape}"
        )
    if images.shape[3] != kernels.shape[2]:
        raise ValueError(
            f"conv2d: images have {images.shape[3]} channels (last axis of {images.shape}) but kernels "
            f"expect {kernels.shape[2]} input channels (axis 2 of HWIO shape {kernels.shape})"
        )
    padded_height = images.shape[1] + 2 * padding
    padded_width = images.shape[2] + 2 * padding
    if kernels.shape[0] > padded_height or kernels.shape[1] > padded_width:
        raise ValueError(
            f"conv2d: kernel {kernels.shape[0]}x{kernels.shape[1]} is bigger than the padded image "
            f"{padded_height}x{padded_width} (image {images.shape[1]}x{images.shape[2]}, padding {padding})"
        )


def check_pool_inputs(images: jax.Array, window: int) -> None:
    """Raises ValueError unless `images` is (N, H, W, C) with H and W at least `window`."""
    if images.ndim != 4:
        raise ValueError(f"max_pool2d: images must have shape (N, H, W, C), got shape {images.shape}")
    if window > images.shape[1] or window > images.shape[2]:
        raise ValueError(
            f"max_pool2d: window {window}x{window} is bigger than the image "
            f"{images.shape[1]}x{images.shape[2]}"
        )


def conv2d(
    images: jax.Array,
    kernels: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
) -> jax.Array:
    """2-D convolution (a cross-correlation: the kernel is not flipped), as `nnx.Conv` computes.

    out[n, y, x, o] = bias[o] + sum over i, j, c of
        padded[n, y * stride + i, x * stride + j, c] * kernels[i, j, c, o]
    where `padded` is `images` with `padding` zeros added on each side of H and W.

    Inputs:
    - images: (N, H, W, C_in) batch of images.
    - kernels: (KH, KW, C_in, C_out) filters, HWIO layout.
    - bias: (C_out,) added to every output position, or None for no bias.
    - stride: step between neighbouring windows, the same along H and W.
    - padding: zeros added on each side of H and W.
    stride and padding are Python ints: under `jax.jit` pass them as static arguments.

    Returns:
    - (N, H_out, W_out, C_out) with H_out = (H + 2 * padding - KH) // stride + 1, W_out likewise.

    Raises ValueError when the channel counts differ or the kernel is bigger than the padded image.
    """
    # BEGIN TASK 3.1: check the inputs, pad, gather the KH*KW shifted strided slices, then one einsum
    check_conv_inputs(images, kernels, padding)
    kernel_height, kernel_width, in_channels, out_channels = kernels.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_height = (padded.shape[1] - kernel_height) // stride + 1
    out_width = (padded.shape[2] - kernel_width) // stride + 1
    # Kernel cell (i, j) visits rows i, i + stride, ..., spanning `row_span` rows; likewise columns.
    row_span = stride * (out_height - 1) + 1
    column_span = stride * (out_width - 1) + 1
    # Slice (i, j) holds, for every output position, the input pixel under kernel cell (i, j).
    slices = [
        padded[:, i : i + row_span : stride, j : j + column_span : stride, :]
        for i in range(kernel_height)
        for j in range(kernel_width)
    ]
    patches = jnp.stack(slices, axis=3)  # (N, H_out, W_out, KH * KW, C_in)
    weights = kernels.reshape(kernel_height * kernel_width, in_channels, out_channels)
    outputs = jnp.einsum("nhwkc,kco->nhwo", patches, weights)
    if bias is not None:
        outputs = outputs + bias
    return outputs
    # END TASK


def max_pool2d(images: jax.Array, window: int = 2, stride: int = 2) -> jax.Array:
    """Max-pooling with a square `window` moved by `stride`, no padding (PyTorch's and Flax's default).

    Inputs:
    - images: (N, H, W, C) batch of images.
    - window: height and width of each pooling window.
    - stride: step between neighbouring windows, the same along H and W.
    window and stride are Python ints: under `jax.jit` pass them as static arguments.

    Returns:
    - (N, H_out, W_out, C), the maximum of each window, channel by channel, with
      H_out = (H - window) // stride + 1, W_out likewise.
    """
    # BEGIN TASK 3.2: check the inputs, gather the window*window strided slices, then take their max
    check_pool_inputs(images, window)
    out_height = (images.shape[1] - window) // stride + 1
    out_width = (images.shape[2] - window) // stride + 1
    row_span = stride * (out_height - 1) + 1
    column_span = stride * (out_width - 1) + 1
    # Slice (i, j) holds, for every window, its pixel at offset (i, j).
    slices = [
        images[:, i : i + row_span : stride, j : j + column_span : stride, :]
        for i in range(window)
        for j in range(window)
    ]
    return jnp.max(jnp.stack(slices), axis=0)
    # END TASK


def sobel_kernels() -> tuple[jax.Array, jax.Array]:
    """The 3x3 Sobel kernels, with the original notebook's signs.

    Returns:
    - sobel_x: (3, 3) [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]. With `conv2d` (no flip) it responds
      positively where brightness increases from left to right: it finds vertical edges.
    - sobel_y: (3, 3) the transpose of sobel_x; positive where brightness increases downwards.
    """
    # BEGIN TASK 3.3: write sobel_x as a float32 array; sobel_y is its transpose
    sobel_x = jnp.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=jnp.float32)
    return sobel_x, sobel_x.T
    # END TASK


def four_filters() -> jax.Array:
    """The original notebook's four 4x4 edge filters.

    Returns:
    - (4, 4, 4) float32 array [f1, f2, f3, f4]: f1 has every row [-1, -1, 1, 1] (dark-to-bright
      vertical edge), f2 = -f1, f3 = f1.T (horizontal edge), f4 = -f3.

    As the weights of a 1-in/4-out convolution they become HWIO shape (4, 4, 1, 4):
    `jnp.transpose(filters, (1, 2, 0))[:, :, None, :]`. (PyTorch's OIHW weight was (4, 1, 4, 4).)
    """
    # BEGIN TASK 3.4: build f1 from its row, then the other three by negating and transposing
    f1 = jnp.tile(jnp.array([-1, -1, 1, 1], dtype=jnp.float32), (4, 1))
    f3 = f1.T
    return jnp.stack([f1, -f1, f3, -f3])
    # END TASK


def filters_first(maps: jax.Array) -> jax.Array:
    """Maps of one image (1, H, W, K) -> (K, H, W), one map per filter, as the notebook plotted them."""
    return jnp.transpose(maps[0], (2, 0, 1))


def feature_maps(image: jax.Array, kernels: jax.Array) -> dict[str, jax.Array]:
    """The conv, ReLU and 2x2 max-pooled maps of one grayscale image, as the original notebook showed.

    The convolution has no bias and no padding, as the original `nn.Conv2d(1, 4, kernel_size=(4, 4),
    bias=False)`; pooling is 2x2 with stride 2, as in the original.

    Inputs:
    - image: (H, W) grayscale image with values in [0, 1].
    - kernels: (K, KH, KW) filters, e.g. `four_filters()`.

    Returns a dict of arrays, one map per filter, filter first:
    - "conv": (K, H - KH + 1, W - KW + 1) convolution outputs.
    - "relu": same shape, max(conv, 0).
    - "pooled": (K, (H - KH + 1) // 2, (W - KW + 1) // 2), relu max-pooled 2x2 with stride 2.
    """
    # BEGIN TASK 3.5: make a batch of one 1-channel image and HWIO weights, then conv2d, relu, max_pool2d
    if image.ndim != 2:
        raise ValueError(f"feature_maps: image must have shape (H, W), got shape {image.shape}")
    if kernels.ndim != 3:
        raise ValueError(f"feature_maps: kernels must have shape (K, KH, KW), got shape {kernels.shape}")
    images = image[None, :, :, None]  # (1, H, W, 1)
    weights = jnp.transpose(kernels, (1, 2, 0))[:, :, None, :]  # (KH, KW, 1, K)
    conv = conv2d(images, weights)
    relu = jax.nn.relu(conv)
    pooled = max_pool2d(relu, window=2, stride=2)
    return {"conv": filters_first(conv), "relu": filters_first(relu), "pooled": filters_first(pooled)}
    # END TASK


RECIPES = {}
