"""Layers whose fast formulation on the CPU differs from the plain one, behind a clear name, and
`sublayers`, a model's layers in the order its `__init__` defines them.

Each function here computes the same values and gradients as the plain Flax/JAX formulation it
replaces; `tests/test_layers.py` checks that on random inputs.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx


def max_pool(images: jax.Array, window: int, stride: int) -> jax.Array:
    """Max-pooling of `images` (N, H, W, C) with a square `window` and `stride`, no padding.

    Same values and gradients as `nnx.max_pool(images, (window, window), (stride, stride))`.
    When the windows tile the image exactly (window == stride, H and W divisible by it), the pool
    is a reshape and a max: XLA's CPU backend differentiates that far faster than the
    select-and-scatter that `nnx.max_pool`'s gradient needs.
    """
    batch, height, width, channels = images.shape
    if window == stride and height % window == 0 and width % window == 0:
        return _tiled_max_pool(images, window)
    return nnx.max_pool(images, (window, window), strides=(stride, stride))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max_pool(images, window):
    """Max over non-overlapping (window x window) tiles of images (N, H, W, C) -> (N, H/window, W/window, C)."""
    batch, height, width, channels = images.shape
    return images.reshape(batch, height // window, window, width // window, window, channels).max(axis=(2, 4))


def _tiled_max_pool_fwd(images, window):
    pooled = _tiled_max_pool(images, window)
    return pooled, (images, pooled)


def _tiled_max_pool_bwd(window, residuals, pooled_grad):
    # Each tile's gradient goes to its maximum (shared equally by ties, as jax.grad of a max does),
    # computed in one pass over the images instead of autodiff's several.
    images, pooled = residuals
    batch, height, width, channels = images.shape
    tiles = images.reshape(batch, height // window, window, width // window, window, channels)
    is_max = tiles == pooled[:, :, None, :, None, :]
    ties = is_max.sum(axis=(2, 4), keepdims=True, dtype=images.dtype)
    grad = jnp.where(is_max, (pooled_grad / ties[:, :, 0, :, 0, :])[:, :, None, :, None, :], 0.0)
    return (grad.reshape(images.shape).astype(images.dtype),)


_tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)


# ---------------------------------------------------------------------------------------------
# Convolution as patches times kernel (im2col), channels first, a few images at a time

CONV_CHUNK = 16  # images per piece: a piece's patches stay in the CPU's cache


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """`lax.conv_general_dilated`, computed on the CPU as patches times kernel; for `nnx.Conv`.

    Same signature, values and gradients as `lax.conv_general_dilated`. For the case the
    course's networks use (NHWC images, HWIO kernels, any strides and zero padding, no dilation,
    no feature groups), the CPU runs `im2col_conv`; every other platform and every other case
    runs `lax.conv_general_dilated` itself. Pass it to `nnx.Conv(..., conv_general_dilated=...)`,
    or give a model's convolutions it with `use_fast_convolutions`.
    """
    def plain(images, kernel):
        return jax.lax.conv_general_dilated(
            images, kernel, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers, feature_group_count=feature_group_count, precision=precision,
            **kwargs)

    simple = (lhs.ndim == 4 and feature_group_count == 1 and precision is None
              and all(value is None for value in kwargs.values())
              and all(d is None or all(x == 1 for x in d) for d in (lhs_dilation, rhs_dilation))
              and dimension_numbers is not None
              and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
              == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC")))
    if not simple:
        return plain(lhs, rhs)
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    pads = tuple((int(low), int(high)) for low, high in padding)
    return jax.lax.platform_dependent(lhs, rhs, cpu=lambda x, w: im2col_conv(x, w, strides, pads),
                                      default=plain)


def use_fast_convolutions(model: nnx.Module) -> nnx.Module:
    """Makes every `nnx.Conv` of `model` compute through `conv_general_dilated` (im2col on the CPU,
    `lax.conv_general_dilated` elsewhere), in place; returns `model`.

    Students write plain `nnx.Conv`; the training loop calls this for the recipes that set
    `fast_cpu_convolution`. Parameters, values and gradients are unchanged (`tests/test_layers.py`).
    """
    for _, layer in sublayers(model):
        if isinstance(layer, nnx.Conv):
            layer.conv_general_dilated = conv_general_dilated
    return model


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def im2col_conv(images, kernel, strides, padding):
    """2-D convolution (cross-correlation, as in deep learning) by matrix products.

    Inputs:
    - images: (N, H, W, C_in).
    - kernel: (kh, kw, C_in, C_out), HWIO.
    - strides: (stride_h, stride_w).
    - padding: ((top, bottom), (left, right)) zeros added around each image.

    Returns:
    - (N, H_out, W_out, C_out), equal to `lax.conv_general_dilated(images, kernel, strides, padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))`.

    Each output is a patch of the input times the kernel. The patches are laid out channels
    first, (kh * kw * C_in, N * H_out * W_out), so each is copied from whole image rows, and
    the forward pass, the kernel's gradient and the input's gradient are each one matrix
    product. The batch goes through in pieces of CONV_CHUNK images so that a piece's patches
    stay in cache; the backward pass rebuilds them rather than keeping them all.
    """
    return _over_chunks(images, lambda piece: _conv_piece(piece, kernel, strides, padding))


def _conv_fwd(images, kernel, strides, padding):
    return im2col_conv(images, kernel, strides, padding), (images, kernel)


def _conv_bwd(strides, padding, residuals, output_grad):
    images, kernel = residuals
    batch = images.shape[0]
    pieces = -(-batch // CONV_CHUNK)
    image_pieces = _pad_batch(images, pieces * CONV_CHUNK).reshape(pieces, -1, *images.shape[1:])
    grad_pieces = _pad_batch(output_grad, pieces * CONV_CHUNK).reshape(pieces, -1, *output_grad.shape[1:])

    def accumulate(kernel_grad, piece):
        piece_images, piece_grad = piece
        images_grad, piece_kernel_grad = _conv_piece_grads(piece_images, kernel, piece_grad, strides, padding)
        return kernel_grad + piece_kernel_grad, images_grad

    if pieces == 1:
        images_grad, kernel_grad = _conv_piece_grads(images, kernel, output_grad, strides, padding)
        return images_grad, kernel_grad
    kernel_grad, images_grad = jax.lax.scan(accumulate, jnp.zeros_like(kernel), (image_pieces, grad_pieces))
    return images_grad.reshape(-1, *images.shape[1:])[:batch], kernel_grad


im2col_conv.defvjp(_conv_fwd, _conv_bwd)


def _pad_batch(array, size):
    """`array` with zero rows appended along the batch axis up to `size` rows."""
    return jnp.pad(array, [(0, size - array.shape[0])] + [(0, 0)] * (array.ndim - 1))


def _over_chunks(images, fn):
    """`fn` applied to the batch `images` in pieces of CONV_CHUNK images (the last padded with zeros)."""
    batch = images.shape[0]
    if batch <= CONV_CHUNK:
        return fn(images)
    pieces = -(-batch // CONV_CHUNK)
    padded = _pad_batch(images, pieces * CONV_CHUNK).reshape(pieces, CONV_CHUNK, *images.shape[1:])
    outputs = jax.lax.map(fn, padded)
    return outputs.reshape(-1, *outputs.shape[2:])[:batch]


def _output_size(size, window, stride):
    return (size - window) // stride + 1


def _patches(images, kernel_shape, strides, padding):
    """Channels-first patches: (kh * kw * C_in, N * H_out * W_out) rows ordered (i, j, c) like HWIO."""
    kh, kw, channels, _ = kernel_shape
    padded = jnp.pad(images.transpose(3, 0, 1, 2), ((0, 0), (0, 0), *padding))  # (C, N, H, W)
    _, batch, height, width = padded.shape
    out_h, out_w = _output_size(height, kh, strides[0]), _output_size(width, kw, strides[1])
    taps = [jax.lax.slice(padded, (0, 0, i, j), (channels, batch, i + strides[0] * (out_h - 1) + 1,
                                                  j + strides[1] * (out_w - 1) + 1), (1, 1, *strides))
            for i in range(kh) for j in range(kw)]
    return jnp.stack(taps).reshape(kh * kw * channels, batch * out_h * out_w), (batch, out_h, out_w)


def _conv_piece(images, kernel, strides, padding):
    patches, (batch, out_h, out_w) = _patches(images, kernel.shape, strides, padding)
    outputs = kernel.reshape(-1, kernel.shape[-1]).T @ patches  # (C_out, N * H_out * W_out)
    return outputs.reshape(-1, batch, out_h, out_w).transpose(1, 2, 3, 0)


def _conv_piece_grads(images, kernel, output_grad, strides, padding):
    """(images gradient, kernel gradient) of `_conv_piece` for the output gradient `output_grad`."""
    kh, kw, channels, out_channels = kernel.shape
    patches, (batch, out_h, out_w) = _patches(images, kernel.shape, strides, padding)
    grad = output_grad.reshape(-1, out_channels)  # (N * H_out * W_out, C_out)
    kernel_grad = (patches @ grad).reshape(kernel.shape)
    patches_grad = (kernel.reshape(-1, out_channels) @ grad.T).reshape(kh, kw, channels, batch, out_h, out_w)
    (top, bottom), (left, right) = padding
    height, width = images.shape[1] + top + bottom, images.shape[2] + left + right
    padded_grad = jnp.zeros((channels, batch, height, width), images.dtype)
    for i in range(kh):  # each input pixel collects the gradients of every patch it is in
        for j in range(kw):
            padded_grad = padded_grad.at[:, :, i:i + strides[0] * (out_h - 1) + 1:strides[0],
                                         j:j + strides[1] * (out_w - 1) + 1:strides[1]].add(patches_grad[i, j])
    images_grad = padded_grad[:, :, top:height - bottom, left:width - right]
    return images_grad.transpose(1, 2, 3, 0), kernel_grad


# ---------------------------------------------------------------------------------------------
# A model's layers in definition order (`nnx.iter_modules` lists them by name instead)


def _children(node) -> list[tuple[str, object]]:
    """(name, child) pairs of what `node` holds that may hold layers: a module's attributes in
    definition order, the items of lists, tuples, dicts, nnx.List and nnx.Sequential. Anything else
    (activation functions, numbers) is skipped."""
    if isinstance(node, (list, tuple, nnx.List)):
        items = [(str(index), item) for index, item in enumerate(node)]
    elif isinstance(node, dict):
        items = [(str(key), item) for key, item in node.items()]
    elif isinstance(node, nnx.Module):
        items = [(name, value) for name, value in vars(node).items() if not name.startswith("_")]
    else:
        return []
    return [(name, value) for name, value in items if isinstance(value, (nnx.Module, list, tuple, dict))]


def _is_layer(node) -> bool:
    """A module that holds no other module: a layer."""
    return isinstance(node, nnx.Module) and not isinstance(node, nnx.List) and not sublayers(node)


def sublayers(node, prefix: str = "") -> list[tuple[str, nnx.Module]]:
    """The layers under `node` (modules holding no other module), depth first in definition order,
    each with its '/'-joined path ("fc1", "blocks/0/conv")."""
    found = []
    for name, child in _children(node):
        path = f"{prefix}{name}"
        found.extend([(path, child)] if _is_layer(child) else sublayers(child, path + "/"))
    return found
