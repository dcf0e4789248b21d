"""Week 3 checks: convolution and max-pooling from scratch, Sobel kernels, four filters, feature maps."""

import jax
import numpy as np
from flax import nnx

from grader.checks import Check
from grader.judges import all_of, hidden, jit_agrees, same, values
from grader.probing import attempt, block, normal, stand_ins

STAND_INS = {
    "conv2d": lambda images, kernels, bias=None, *, stride=1, padding=0: jax.lax.conv_general_dilated(
        images, kernels, (stride, stride), [(padding, padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"),
    ) + (0 if bias is None else bias),
    "max_pool2d": lambda images, window=2, stride=2: nnx.max_pool(images, (window, window), (stride, stride)),
}


def _error_name(function):
    """The name of the exception `function()` raises ("no error" if none); NotImplementedError propagates."""
    try:
        function()
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - the type of the error is the evidence
        return type(error).__name__
    return "no error"


def probe_conv2d(week, given):
    images, kernels, bias = normal(40, (2, 9, 8, 3)), normal(41, (3, 3, 3, 4)), normal(42, (4,))
    return {
        "plain": attempt(lambda: block(week.conv2d(images, kernels))),
        "bias": attempt(lambda: block(week.conv2d(images, kernels, bias))),
        "padding": attempt(lambda: block(week.conv2d(images, kernels, padding=1))),
        "stride": attempt(lambda: block(week.conv2d(images, kernels, bias, stride=2, padding=2))),
        "rectangular": attempt(lambda: block(week.conv2d(images, normal(43, (2, 4, 3, 1))))),
        "jit": attempt(lambda: block(jax.jit(week.conv2d, static_argnames=("stride", "padding"))(images, kernels, padding=1))),
        "gradient": attempt(lambda: block(jax.grad(lambda k: (week.conv2d(images, k) ** 2).sum())(kernels))),
        "bad_channels": attempt(_error_name, lambda: week.conv2d(images, normal(44, (3, 3, 2, 4)))),
        "kernel_too_large": attempt(_error_name, lambda: week.conv2d(images[:, :4, :4], kernels[:, :, :, :1].repeat(2, 0))),
    }


def probe_max_pool2d(week, given):
    images = normal(45, (2, 9, 10, 3))
    return {
        "default": attempt(lambda: block(week.max_pool2d(images))),
        "window3_stride2": attempt(lambda: block(week.max_pool2d(images, window=3, stride=2))),
        "window2_stride1": attempt(lambda: block(week.max_pool2d(images, window=2, stride=1))),
        "jit": attempt(lambda: block(jax.jit(week.max_pool2d, static_argnames=("window", "stride"))(images, window=3, stride=2))),
    }


def probe_sobel_kernels(week, given):
    result = attempt(lambda: block(week.sobel_kernels()))
    if isinstance(result, (tuple, list)) and len(result) == 2:
        return {"sobel_x": result[0], "sobel_y": result[1]}
    return {"sobel_x": result, "sobel_y": result}


def probe_four_filters(week, given):
    return {"filters": attempt(lambda: block(week.four_filters()))}


def probe_feature_maps(week, given):
    image = np.abs(normal(46, (12, 11)))
    kernels = normal(47, (4, 4, 4))
    with stand_ins(week, STAND_INS):
        maps = attempt(lambda: block(week.feature_maps(image, kernels)))
    if not isinstance(maps, dict):
        return {"conv": maps, "relu": maps, "pooled": maps}
    return {name: maps.get(name, np.asarray("missing key")) for name in ("conv", "relu", "pooled")}


PROBES = {
    "conv2d": probe_conv2d,
    "max_pool2d": probe_max_pool2d,
    "sobel_kernels": probe_sobel_kernels,
    "four_filters": probe_four_filters,
    "feature_maps": probe_feature_maps,
}

CHECKS = [
    Check(name="conv2d: no padding, stride 1", task="3.1", function="conv2d", points=2,
          judge=all_of(same("plain"), same("rectangular", "a 2x4 kernel")),
          hint="out[n, y, x, o] = sum over i, j, c of images[n, y + i, x + j, c] * kernels[i, j, c, o]; no flip"),
    Check(name="conv2d: bias", task="3.1", function="conv2d", points=1, judge=values("bias", "with a bias"),
          hint="add bias[o] to every output position"),
    Check(name="conv2d: padding", task="3.1", function="conv2d", points=1, judge=same("padding", "padding=1"),
          hint="pad H and W with `padding` zeros on each side, not the batch or channel axes"),
    Check(name="conv2d: stride", task="3.1", function="conv2d", points=1, judge=same("stride", "stride=2, padding=2"),
          hint="H_out = (H + 2 * padding - KH) // stride + 1"),
    Check(name="conv2d: gradient", task="3.1", function="conv2d", points=1,
          judge=all_of(jit_agrees("jit", "padding"), values("gradient", "gradient with respect to the kernels"))),
    Check(name="conv2d: rejects bad inputs", task="3.1", function="conv2d", points=1,
          judge=all_of(values("bad_channels", "raises ValueError when channels differ"),
                       values("kernel_too_large", "raises ValueError for a 6x3 kernel on a 4x4 image")),
          hint="check the inputs first (check_conv_inputs)"),
    Check(name="max_pool2d: 2x2 windows, stride 2", task="3.2", function="max_pool2d", points=2, judge=same("default"),
          hint="the maximum of each window, per channel"),
    Check(name="max_pool2d: other windows and strides", task="3.2", function="max_pool2d", points=2,
          judge=all_of(same("window3_stride2", "window 3, stride 2"), same("window2_stride1", "window 2, stride 1"),
                       jit_agrees("jit", "window3_stride2")),
          hint="H_out = (H - window) // stride + 1; windows may overlap"),
    Check(name="sobel_kernels: values", task="3.3", function="sobel_kernels", points=1,
          judge=all_of(same("sobel_x"), same("sobel_y"))),
    Check(name="four_filters: values", task="3.4", function="four_filters", points=1, judge=same("filters"),
          hint="f1 rows are [-1, -1, 1, 1]; f2 = -f1, f3 = f1.T, f4 = -f3"),
    Check(name="feature_maps: conv, relu and pooled maps", task="3.5", function="feature_maps", points=3,
          judge=all_of(same("conv", hint="HWIO weights from (K, KH, KW) filters: transpose to (KH, KW, K) and add "
                                         "the input axis; the image becomes (1, H, W, 1)"),
                       same("relu", hint="the ReLU map is max(conv, 0) of the convolution map"),
                       same("pooled", hint="the pooled map is the 2x2, stride-2 max-pool of the ReLU map"))),
    hidden(task="3.1", function="conv2d", keys=("bias", "stride")),
    hidden(task="3.2", function="max_pool2d", keys=("default", "window3_stride2")),
    hidden(task="3.5", function="feature_maps", keys=("conv", "relu", "pooled")),
]
