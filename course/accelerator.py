"""Which accelerator JAX uses here: the set-up cell of every exercise notebook ends with `report()`.

JAX picks the best backend it finds by itself (a TPU, else a GPU, else the CPU); nothing in the
course asks for one. In Colab the choice is Runtime > Change runtime type, and then a fresh session.
"""

import jax

ADVICE = {
    "cpu": "no GPU or TPU is visible: everything runs, the CNN weeks' training is slower "
           "(in Colab: Runtime > Change runtime type > a GPU or TPU, then run the set-up cell again)",
    "gpu": "the training weeks run on the GPU",
    "tpu": "the training weeks run on the TPU",
}


def describe() -> str:
    """One line: the platform JAX uses, its devices, and what that means for the course."""
    devices = jax.devices()
    platform = devices[0].platform
    kinds = sorted({device.device_kind for device in devices})
    return (f"JAX {jax.__version__} runs on {platform.upper()}: {len(devices)} device(s) ({', '.join(kinds)}); "
            f"{ADVICE.get(platform, 'an accelerator JAX supports')}")


def report() -> str:
    """Prints `describe()` and returns the platform's name: "cpu", "gpu" or "tpu"."""
    print(describe())
    return jax.devices()[0].platform
