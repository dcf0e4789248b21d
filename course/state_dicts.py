"""Reading a PyTorch checkpoint file of the original course as numpy arrays, in PyTorch's layout.

    arrays = read_state_dict("simple_cnn.pt")    # {"conv1.weight": float32 (16, 3, 3, 3), ...}

A checkpoint file is a `torch.save`d state_dict (`.pt`, `.pth`; read with `weights_only=True`, and
only then is torch imported), or a dict holding it under "state_dict" or "model_state_dict" (as
the original's "saving and loading" notebook wrote), or a numpy `.npz` of the same names.
A missing file, any other file, or a missing torch raises `PortError` saying which.
`course.port` puts the arrays into the JAX models.
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np

STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict")


class PortError(ValueError):
    """A checkpoint that cannot be loaded into the model; the message says what does not fit."""


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a checkpoint file into {name: float32 array in PyTorch's layout}.

    Inputs:
      path: a `torch.save`d state_dict (or a dict holding one under "state_dict" or
        "model_state_dict"), or an `.npz` of the same names.

    Raises PortError for a missing file, a file that is not such a checkpoint, or missing torch.
    """
    path = Path(path)
    if not path.is_file():
        raise PortError(f"no checkpoint file {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return to_arrays(dict(archive), str(path))
        except (OSError, ValueError) as error:
            raise PortError(f"{path} is not a readable .npz archive ({first_line(error)})") from None
    try:
        import torch
    except ImportError:
        raise PortError(f"reading {path} needs PyTorch: pip install torch==2.13.0 (the `torch` extra), "
                        "or save the state_dict as an .npz archive") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is no checkpoint
        hint = ("; it may hold a whole pickled model: save `model.state_dict()` instead"
                if "weights only" in str(error).lower() else "")
        raise PortError(f"{path} is not a PyTorch checkpoint (torch.load failed: {type(error).__name__}: "
                        f"{first_line(error)}){hint}") from None
    return to_arrays(loaded, str(path))


def to_arrays(state_dict, source: str = "the checkpoint") -> dict[str, np.ndarray]:
    """A state_dict of torch tensors or array-likes -> {name: float32 numpy array}.

    Unwraps {"state_dict": ...} and {"model_state_dict": ...}, and drops a `module.` prefix that
    every name shares. Raises PortError for anything but a mapping of names to floating-point arrays.
    """
    if not isinstance(state_dict, Mapping):
        raise PortError(f"{source} holds a {type(state_dict).__name__}, not a state_dict "
                        "(a mapping of parameter names to tensors)")
    for wrapper in STATE_DICT_WRAPPERS:
        if isinstance(state_dict.get(wrapper), Mapping):
            state_dict = state_dict[wrapper]
            break
    if not state_dict:
        raise PortError(f"{source} is an empty state_dict")
    arrays = {str(name): _float_array(name, value, source) for name, value in state_dict.items()}
    if all(name.startswith("module.") for name in arrays):
        arrays = {name.removeprefix("module."): value for name, value in arrays.items()}
    return arrays


def _float_array(name, value, source: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; .float() also reads bfloat16, which numpy cannot
        tensor = value.detach().cpu()
        if not tensor.is_floating_point():
            raise PortError(f"{source}: {name!r} holds {tensor.dtype} values, not floating-point weights")
        return tensor.float().numpy()
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise PortError(f"{source}: {name!r} holds {array.dtype} values, not floating-point weights")
    return array.astype(np.float32)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
