"""One device resolver and one eval-mode context for the whole kernel (neuroplex.torchutils)."""

from __future__ import annotations

import pytest
import torch
from onnx import TensorProto, helper

from neuroplex.analysis.backend import resolve_device
from neuroplex.errors import ConfigError
from neuroplex.onnx import OnnxModule
from neuroplex.torchutils import eval_mode, torch_device
from neuroplex.training import Trainer


def _identity_onnx() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return bytes(model.SerializeToString())


def _error(call: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call()  # type: ignore[operator]
    return info.value


@pytest.mark.requires_plugins("neuroplex-devices")
@pytest.mark.parametrize("bad", ["nonsense", "cuda:x"])
def test_a_bad_device_gives_one_error_through_every_entry_point(bad: str) -> None:
    model = torch.nn.Linear(2, 2)
    data = (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    errors = [
        _error(lambda: torch_device(bad)),
        _error(lambda: resolve_device(bad, model)),
        _error(lambda: OnnxModule(_identity_onnx(), device=bad)),
        _error(lambda: Trainer(model, device=bad).train(data)),
    ]
    assert {type(e) for e in errors} == {type(errors[0])}
    assert {str(e) for e in errors} == {str(errors[0])}
    assert repr(bad) in str(errors[0]) and "installed devices" in str(errors[0])


def test_a_value_of_the_wrong_type_names_the_value_and_the_fix() -> None:
    error = _error(lambda: torch_device(3.5))
    assert "3.5" in str(error) and "torch.device" in str(error)


@pytest.mark.requires_plugins("neuroplex-devices")
def test_device_names_torch_devices_and_neuroplex_devices_resolve() -> None:
    class Placement:
        def torch_device(self) -> str:
            return "cpu"

    assert torch_device("cpu") == torch_device(torch.device("cpu")) == torch.device("cpu")
    assert torch_device(Placement()) == torch.device("cpu")
    assert torch_device("auto").type in {"cpu", "cuda", "mps"}  # a registered device


def test_eval_mode_restores_each_module_and_each_parameter() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(), torch.nn.Linear(2, 2))
    model.train()
    model[1].eval()  # a submodule the user froze stays frozen after
    model[2].weight.requires_grad_(False)
    with eval_mode(model) as inside:
        assert inside is model
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
    assert [m.training for m in model] == [True, False, True]
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, True]
    with eval_mode(model, freeze=False):
        assert all(p.requires_grad for p in model[0].parameters())
