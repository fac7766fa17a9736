"""NYU checkpoints: the key layout of nyu_gmic_keys.tsv, the bit-exact round trip, and bad files."""

import logging
from pathlib import Path

import pytest
import torch

from wsod_mammo.models import GMIC, load_nyu_checkpoint, load_nyu_state_dict

KEYS_TSV = Path(__file__).with_name("nyu_gmic_keys.tsv")


def nyu_random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the exact key layout and shapes of NYU's sample_model_*.p."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for line in KEYS_TSV.read_text().splitlines():
        key, shape = line.split("\t")
        dims = tuple(int(d) for d in shape.split(",")) if shape else ()
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(dims, generator=gen) + 0.5
        else:
            state[key] = torch.randn(dims, generator=gen) * 0.1
    return state


def tiny_input() -> torch.Tensor:
    return torch.randn(2, 1, 256, 192, generator=torch.Generator().manual_seed(3))


def test_key_list_loads_completely_with_two_classes(tmp_path: Path) -> None:
    state = nyu_random_state_dict()
    path = tmp_path / "sample_model_4.p"
    torch.save(state, path)
    model = GMIC.from_nyu_checkpoint(path, crop_shape=(64, 64))
    assert model.num_classes == 2 and model.percent_t == 0.05  # from the file's shape and name
    ours = model.to_nyu_state_dict()
    assert sorted(ours) == sorted(state)
    assert all(torch.equal(ours[k], state[k]) for k in state)


def test_round_trip_reproduces_outputs_bit_for_bit(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = GMIC(num_classes=2, crop_shape=(64, 64)).eval()
    path = tmp_path / "ours.p"
    torch.save(source.to_nyu_state_dict(), path)
    loaded = GMIC.from_nyu_checkpoint(path, crop_shape=(64, 64)).eval()
    with torch.no_grad():
        a, b = source(tiny_input()), loaded(tiny_input())
    for field_a, field_b in zip(a, b, strict=True):
        assert torch.equal(field_a, field_b)


def test_other_class_count_reports_fresh_layers(caplog: pytest.LogCaptureFixture) -> None:
    model = GMIC(num_classes=1, crop_shape=(64, 64))
    state = nyu_random_state_dict()
    with caplog.at_level(logging.WARNING):
        fresh = load_nyu_state_dict(model, state)
    assert fresh == ["classifier", "fusion", "saliency_head"]
    assert "freshly initialized" in caplog.text
    assert torch.equal(model.global_network.first_conv.weight, state["ds_net.first_conv.weight"])
    assert torch.equal(model.local_network.layer4[1].conv2.weight, state["dn_resnet.layer4.1.conv2.weight"])
    assert torch.equal(model.attention_w.weight, state["mil_attn_w.weight"])
    assert model.classifier.weight.shape == (1, 512)


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path: Path) -> None:
    state = nyu_random_state_dict()
    del state["mil_attn_V.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["ds_net.final_bn.weight"] = torch.zeros(128)
    path = tmp_path / "broken.p"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        GMIC.from_nyu_checkpoint(path)
    message = str(error.value)
    assert "broken.p" in message and "mil_attn_V.weight" in message and "extra.weight" in message
    assert "ds_net.final_bn.weight: file (128,), model (256,)" in message


def test_not_a_state_dict_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.p"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="list.p: expected a state dict"):
        load_nyu_checkpoint(path)


class Payload:
    def __reduce__(self):  # noqa: ANN204 - would run code if unpickled without weights_only
        return (print, ("executed",))


def test_pickled_code_is_never_executed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.p"
    torch.save({"x": Payload()}, path)
    with pytest.raises(ValueError, match="evil.p: not a weights-only"):
        load_nyu_checkpoint(path)
    assert "executed" not in capsys.readouterr().out
