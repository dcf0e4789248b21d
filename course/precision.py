"""Mixed precision: `course train MODEL --precision bf16`.

In "bf16", every `nnx.Linear` and `nnx.Conv` of a model (with the fast CPU convolution of
`course.layers.use_fast_convolutions` or without) computes in bfloat16: it casts its input, kernel
and bias to bfloat16 (its `dtype`, applied by flax's `promote_dtype`), so the matrix products and
convolutions, nearly all of a network's arithmetic, run on a GPU's bfloat16 units, and the
activations between layers are bfloat16 too (half the memory traffic). The parameters stay float32
(`param_dtype` is untouched): their gradients and the optimizer state are float32, and small updates
are not lost to rounding. bfloat16 keeps float32's range with an 8-bit mantissa (about 3 significant
digits), so no loss scaling is needed.

The output layer (the last Linear or Conv that `__init__` defines) stays float32: it takes the
bfloat16 activations, computes in float32, and so the logits, the softmax and the loss are float32.
CPUs have no fast bfloat16 path: there, "float32" (the default) is the one to use.
"""

import jax.numpy as jnp
from flax import nnx

from course import layers

PRECISIONS = ("float32", "bf16")


def product_layers(model: nnx.Module) -> list[nnx.Module]:
    """The `nnx.Linear` and `nnx.Conv` layers of `model`, each once, in the order its `__init__`s
    defined them (`course.layers.sublayers`)."""
    found = {id(layer): layer for _, layer in layers.sublayers(model) if isinstance(layer, (nnx.Linear, nnx.Conv))}
    return list(found.values())


def set_precision(model: nnx.Module, precision: str) -> nnx.Module:
    """Sets the computation precision of every Linear and Conv layer of `model`, in place.

    Inputs:
    - model: an `nnx.Module` with float32 parameters, its layers defined in the order they are
      applied (as all the course's models are): the last one defined is taken as the output layer.
    - precision: "float32" (every layer computes as its parameters are stored, flax's default) or
      "bf16" (every layer but the output layer computes in bfloat16).

    Returns `model`, for chaining. Raises ValueError for another `precision`, or if `model` has no
    Linear or Conv layer.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    products = product_layers(model)
    if not products:
        raise ValueError(f"set_precision: {type(model).__name__} has no nnx.Linear or nnx.Conv layer to compute in "
                         f"{precision}")
    for layer in products:
        layer.dtype = jnp.bfloat16 if precision == "bf16" else None
    if precision == "bf16":
        products[-1].dtype = jnp.float32
    return model
