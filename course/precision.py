"""Mixed precision: `course train MODEL --precision bf16`.

In "bf16", every `nnx.Linear` and `nnx.Conv` of a model (`course.layers.Conv` included) multiplies
bfloat16 copies of its input and kernel, and accumulates and returns float32. The matrix products and
convolutions, nearly all of a network's arithmetic, then run on a GPU's or TPU's bfloat16 units (about
twice the TF32 rate), while the parameters, their gradients, the optimizer state, the activations
between layers and the loss all stay float32. bfloat16 keeps float32's range with an 8-bit mantissa
(about 3 significant digits), so no loss scaling is needed. CPUs have no fast bfloat16 path: there,
"float32" (the default) is the one to use.
"""

import jax.numpy as jnp
from flax import nnx

PRECISIONS = ("float32", "bf16")


def set_precision(model: nnx.Module, precision: str) -> nnx.Module:
    """Sets the computation precision of every Linear and Conv layer of `model`, in place.

    Inputs:
    - model: any `nnx.Module`; its parameters are left as they are (float32).
    - precision: "float32" (compute as the parameters are stored) or "bf16" (bfloat16 operands,
      float32 results).

    Returns `model`, for chaining.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    layers = [module for _, module in nnx.iter_modules(model) if isinstance(module, (nnx.Linear, nnx.Conv))]
    if not layers:
        raise ValueError(f"set_precision: {type(model).__name__} has no nnx.Linear or nnx.Conv layer to compute in "
                         f"{precision}")
    for layer in layers:
        layer.dtype = jnp.bfloat16 if precision == "bf16" else None
        layer.preferred_element_type = jnp.float32 if precision == "bf16" else None
    return model
