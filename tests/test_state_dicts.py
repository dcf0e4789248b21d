"""course.state_dicts: reading a PyTorch checkpoint file (a state_dict, .pt, .pth or .npz), or refusing it."""

import numpy as np
import pytest

from course import port, state_dicts
from course.state_dicts import PortError
from tests.test_port import abstract_model, random_state_dict


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    with pytest.raises(PortError, match="no checkpoint file"):
        state_dicts.read_state_dict(tmp_path / "absent.pt")
    broken = tmp_path / "weights.npz"
    broken.write_text("not an archive")
    with pytest.raises(PortError, match="weights.npz is not a readable .npz archive"):
        state_dicts.read_state_dict(broken)


def test_npz_checkpoint_reads_back(tmp_path):
    state_dict = random_state_dict("lenet5", "jax")
    np.savez(tmp_path / "lenet5.npz", **state_dict)
    loaded = state_dicts.read_state_dict(tmp_path / "lenet5.npz")
    assert loaded.keys() == state_dict.keys()
    for name in state_dict:
        np.testing.assert_array_equal(loaded[name], state_dict[name])


def test_torch_file_wrapped_in_a_dict_with_a_data_parallel_prefix_loads(tmp_path):
    torch = pytest.importorskip("torch")
    from tests.torch_models import MLP as TorchMLP

    original = TorchMLP()
    state_dict = {f"module.{name}": tensor for name, tensor in original.state_dict().items()}
    torch.save({"input_size": 784, "output_size": 10, "state_dict": state_dict}, tmp_path / "checkpoint.pth")
    model = abstract_model("mlp")
    assert port.load_state_dict(model, "mlp", state_dicts.read_state_dict(tmp_path / "checkpoint.pth")) == "network"
    np.testing.assert_array_equal(model.output_layer.kernel[...], original.output.weight.detach().numpy().T)


def test_torch_files_that_are_not_state_dicts_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from tests.torch_models import LeNet5ReLU as TorchLeNet5ReLU

    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    with pytest.raises(PortError, match=r"notes.pt is not a PyTorch checkpoint \(torch.load failed: "):
        state_dicts.read_state_dict(text)
    torch.save(TorchLeNet5ReLU(), tmp_path / "whole_model.pt")
    with pytest.raises(PortError, match="may hold a whole pickled model: save `model.state_dict\\(\\)` instead"):
        state_dicts.read_state_dict(tmp_path / "whole_model.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(PortError, match="holds a Tensor, not a state_dict"):
        state_dicts.read_state_dict(tmp_path / "tensor.pt")
