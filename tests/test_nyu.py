"""NYU checkpoints: the key layout of nyu_gmic_keys.tsv, legacy files with NYU's extra key, round trip, bad files."""

import io
import logging
import os
import zipfile
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from wsod_mammo.models import GMIC, from_nyu_checkpoint, load_nyu_checkpoint, load_nyu_state_dict, to_nyu_state_dict
from wsod_mammo.training.module import GMICLitModule

KEYS_TSV = Path(__file__).with_name("nyu_gmic_keys.tsv")


def nyu_random_state_dict(seed: int = 0, extra: bool = False) -> dict[str, torch.Tensor]:
    """Random tensors in the exact key layout and shapes of NYU's sample_model_*.p (`extra`: + the unused key)."""
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
    if extra:  # NYU's real files hold this 1024 x 1024 float32 tensor that their model never uses
        state["shared_rep_filter.weight"] = torch.randn(1024, 1024, generator=gen)
    return state


def tiny_input() -> torch.Tensor:
    return torch.randn(2, 1, 256, 192, generator=torch.Generator().manual_seed(3))


def test_key_list_loads_completely_with_two_classes(tmp_path: Path) -> None:
    state = nyu_random_state_dict()
    path = tmp_path / "sample_model_4.p"
    torch.save(state, path)
    model = from_nyu_checkpoint(path, crop_shape=(64, 64))
    assert model.num_classes == 2 and model.percent_t == 0.05  # from the file's shape and name
    ours = to_nyu_state_dict(model)
    assert sorted(ours) == sorted(state)
    assert all(torch.equal(ours[k], state[k]) for k in state)


def test_round_trip_reproduces_outputs_bit_for_bit(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = GMIC(num_classes=2, crop_shape=(64, 64)).eval()
    path = tmp_path / "ours.p"
    torch.save(to_nyu_state_dict(source), path)
    loaded = from_nyu_checkpoint(path, crop_shape=(64, 64)).eval()
    with torch.no_grad():
        a, b = source(tiny_input()), loaded(tiny_input())
    for field_a, field_b in zip(a, b, strict=True):
        assert torch.equal(field_a, field_b)


def test_nyu_sample_model_5_reproduces_nyus_reference_outputs(tmp_path: Path) -> None:
    """Reference numbers from nyukat/GMIC's own forward (src/modeling/modules.py @ e8f539f, gmic.py @ febe243,
    utilities/tools.py @ 9b70ed0; run on CPU, torch 2.14) on these weights (NYU's layout, seed 0, legacy file
    named sample_model_5.p: percent_t 0.1, K 6, crop 256) and this 448 x 960 input: a 7 x 15 map, where
    t * h * w = 10.5 exactly and NYU's y_global averages the top 10 positions (h * w * t rounds half to even).
    """
    path = tmp_path / "sample_model_5.p"
    torch.save(nyu_random_state_dict(seed=0, extra=True), path, _use_new_zipfile_serialization=False)
    model = from_nyu_checkpoint(path).eval()
    x = torch.randn(1, 1, 448, 960, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(x)
    expected = {
        "y_global": [[0.4702903628349304, 0.4795258939266205]],
        "y_local": [[0.47189992666244507, 0.5780194401741028]],
        "y_fusion": [[0.5102435350418091, 0.4794890284538269]],
        "patch_attention": [[0.1666620969772339, 0.16666623950004578, 0.1666673719882965, 0.1666688323020935,
                             0.16666537523269653, 0.1666700690984726]],
    }  # fmt: skip
    for name, values in expected.items():
        # the attention is within 5e-6 of uniform (1/6) here: off by 1.5e-8, it must be held to far less than 1e-5
        atol = 3e-7 if name == "patch_attention" else 1e-5
        torch.testing.assert_close(getattr(out, name), torch.tensor(values), atol=atol, rtol=0, msg=name)
    # NYU's patch_locations (row, col) of the top-left corners, as xyxy boxes of 256 x 256
    corners = [(128, 704), (128, 384), (128, 128), (0, 0), (0, 512), (0, 256)]
    boxes = torch.tensor([[[c, r, c + 256, r + 256] for r, c in corners]], dtype=torch.float32)
    assert torch.equal(out.patch_boxes, boxes)


@pytest.mark.parametrize("stage", ["test", "fit"])
def test_nyu_weights_as_they_are_warn_when_percent_t_is_not_the_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stage: str
) -> None:
    """`wsod test/predict --model.init_from_nyu sample_model_5.p` keeps the config's percent_t (0.02): NYU runs model
    5 with 0.1, so y_global would differ from NYU's in silence. A fit may train with any percent_t: no warning."""
    path = tmp_path / "sample_model_5.p"
    torch.save(nyu_random_state_dict(extra=True), path, _use_new_zipfile_serialization=False)
    for percent_t, warned in ((0.02, stage == "test"), (0.1, False)):
        module = GMICLitModule(GMIC(num_classes=2, percent_t=percent_t), init_from_nyu=str(path))
        module.trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wsod_mammo.training.module"):
            module.setup(stage)
        message = f"nyukat/GMIC runs this model with percent_t 0.1, the model has {percent_t}"
        assert (message in caplog.text) == warned, caplog.text
        assert torch.equal(module.model.attention_w.weight, torch.load(path, weights_only=True)["mil_attn_w.weight"])


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


def test_heads_that_disagree_on_the_class_count_are_refused_naming_them(tmp_path: Path) -> None:
    """A file whose classifier has 3 classes and whose fusion and saliency heads have 2 loaded with a warning: the
    model took 3 classes from the classifier and started the fusion head fresh, whose output is the probability
    reported. Only a model asked for another class count starts its heads fresh (above)."""
    state = nyu_random_state_dict()
    state["classifier_linear.weight"] = torch.cat([state["classifier_linear.weight"]] * 2)[:3]
    path = tmp_path / "edited.p"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"edited.p: its class-specific layers disagree on the number of classes, .*"
                       r"classifier_linear.weight 3, fusion_dnn.weight 2"):  # fmt: skip
        from_nyu_checkpoint(path, crop_shape=(64, 64))


def test_legacy_file_with_extra_key_reproduces_outputs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """NYU's real files: torch 1.x legacy (non-zip) format with `shared_rep_filter.weight`, read weights-only."""
    torch.manual_seed(2)
    source = GMIC(num_classes=2, crop_shape=(64, 64)).eval()
    plain, legacy = tmp_path / "plain.p", tmp_path / "sample_model_1.p"
    torch.save(to_nyu_state_dict(source), plain)
    state = to_nyu_state_dict(source) | {"shared_rep_filter.weight": torch.ones(1024, 1024)}
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(legacy) and zipfile.is_zipfile(plain)
    with caplog.at_level(logging.INFO, logger="wsod_mammo.models.nyu"):
        a = from_nyu_checkpoint(plain, crop_shape=(64, 64)).eval()
        b = from_nyu_checkpoint(legacy, crop_shape=(64, 64)).eval()
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "shared_rep_filter.weight (1024, 1024)" in dropped[0]
    with torch.no_grad():
        for field_a, field_b in zip(a(tiny_input()), b(tiny_input()), strict=True):
            assert torch.equal(field_a, field_b)


def test_missing_and_misshaped_keys_are_listed_unused_dropped(tmp_path: Path) -> None:
    state = nyu_random_state_dict(extra=True)
    del state["mil_attn_V.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["ds_net.final_bn.weight"] = torch.zeros(128)
    path = tmp_path / "broken.p"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        from_nyu_checkpoint(path)
    message = str(error.value)
    assert "init_from_nyu" in message and "broken.p" in message and "mil_attn_V.weight" in message
    assert "extra.weight" not in message and "shared_rep_filter" not in message
    assert "ds_net.final_bn.weight: file (128,), model (256,)" in message
    assert "1 missing key(s): mil_attn_V.weight; 1 mis-shaped key(s): " in message


def test_another_networks_weights_are_named_as_such_in_one_short_line(tmp_path: Path) -> None:
    """A torchvision ResNet's weights listed all of GMIC's keys as missing: one line of 10,000 characters."""
    state = {f"layer{i}.{j}.conv1.weight": torch.zeros(1) for i in range(1, 5) for j in range(2)}
    torch.save(state, tmp_path / "resnet18.p")
    with pytest.raises(ValueError) as error:
        from_nyu_checkpoint(tmp_path / "resnet18.p")
    message = str(error.value)
    assert "resnet18.p: none of its 8 keys is one of GMIC's NYU keys (ds_net.first_conv.weight, " in message
    assert "its keys look like layer1.0.conv1.weight, layer1.1.conv1.weight, " in message and "3 more" in message
    assert len(message) < 500
    torch.save({"ds_net.conv1.weight": torch.zeros(1)}, tmp_path / "other.p")  # NYU's prefix, not GMIC's key
    with pytest.raises(ValueError, match=r"other.p: none of its 1 keys is one of GMIC's NYU keys \(ds_net.first"):
        from_nyu_checkpoint(tmp_path / "other.p")  # said "none of GMIC's NYU keys (ds_net., ...) found": ds_net.?


def test_not_a_state_dict_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.p"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="init_from_nyu: .*list.p: expected a state dict"):
        load_nyu_checkpoint(path)


def test_a_wrapped_state_dict_is_said_to_be_one(tmp_path: Path) -> None:
    """A dict holding the weights under a key, or a Lightning checkpoint given as init_from_nyu, said "expected a
    state dict {str: Tensor}, found dict": a dict was expected, and it named nothing of what was wrong."""
    path = tmp_path / "wrapped.p"
    torch.save({"state_dict": nyu_random_state_dict(), "epoch": 3}, path, _use_new_zipfile_serialization=False)
    message = r"wrapped.p: expected a state dict \{str: Tensor\}, found a dict with 2 of its 2 entries not tensors: "
    with pytest.raises(ValueError, match=message + r"'state_dict' \(dict\), 'epoch' \(int\); the weights may be the "
                       r"dict under 'state_dict' \(save that dict itself\)$"):  # fmt: skip
        load_nyu_checkpoint(path)
    lightning = {"state_dict": {"model.fusion.bias": torch.zeros(1)}, "pytorch-lightning_version": "2.5", "epoch": 0}
    torch.save(lightning, tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match=r"last.ckpt: .* 3 of its 3 entries not tensors: .*; a Lightning checkpoint, "
                       r"not NYU's weights \(give it as --ckpt_path\)$"):  # fmt: skip
        load_nyu_checkpoint(tmp_path / "last.ckpt")


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - would run a shell command if unpickled without weights_only
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_never_executed(tmp_path: Path, legacy: bool) -> None:
    path, marker = tmp_path / "evil.p", tmp_path / "pwned"
    torch.save({"x": Payload(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ValueError, match="init_from_nyu: .*evil.p: not a weights-only") as refused:
        load_nyu_checkpoint(path)
    assert not marker.exists()
    # the real cause, not torch's advice to load the file unsafely (which was all the message kept)
    assert "posix.system" in str(refused.value) and "weights_only set to False" not in str(refused.value)


def test_foreign_and_missing_files_name_option_and_file(tmp_path: Path) -> None:
    (tmp_path / "notes.p").write_text("these are not weights")
    with pytest.raises(ValueError, match="init_from_nyu: .*notes.p: not a weights-only"):
        load_nyu_checkpoint(tmp_path / "notes.p")
    with pytest.raises(ValueError, match="model.init_from_nyu: .*absent.p: no such file"):
        load_nyu_checkpoint(tmp_path / "absent.p", option="model.init_from_nyu")


class Custom:
    pass


def test_a_file_torch_cannot_read_says_what_it_is(tmp_path: Path) -> None:
    """torch said `KeyError: 101` for a text file, `EOFError: EOFError` for an empty or cut one, and advised
    allowlisting the class of a pickled object (running the file's code) "if you trust this class"."""
    whole = io.BytesIO()
    torch.save({"w": torch.zeros(64)}, whole)
    legacy = io.BytesIO()
    torch.save({"w": torch.zeros(64)}, legacy, _use_new_zipfile_serialization=False)
    files = {"text.p": b"these are not weights", "empty.p": b"", "cut.p": whole.getvalue()[:300],
             "cut_legacy.p": legacy.getvalue()[:15], "short_legacy.p": legacy.getvalue()[:-100]}  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"object": Custom()}, tmp_path / "object.p")
    expected = {
        "text.p": r"not a torch file, zip or legacy \(it begins with b'these ar'\)",
        "empty.p": r"an empty file \(0 bytes\)",
        "cut.p": r"a zip archive without its end \(torch's format cut short",
        "cut_legacy.p": r"the file ends before its data does \(cut short",  # after its first pickle
        "short_legacy.p": r"RuntimeError: unexpected EOF, expected 100 more bytes",  # torch's own words say it
        "object.p": r"UnpicklingError: .*Unsupported global: GLOBAL .*Custom was not an allowed global by default.\)$",
    }
    for name, reason in expected.items():
        with pytest.raises(
            ValueError, match=rf"init_from_nyu: .*{name}: not a weights-only torch state dict \({reason}"
        ):
            load_nyu_checkpoint(tmp_path / name)
    with pytest.raises(ValueError) as refused:
        load_nyu_checkpoint(tmp_path / "object.p")
    assert "add_safe_globals" not in str(refused.value) and "trust" not in str(refused.value)


def test_a_zip_file_damaged_inside_its_data_is_refused_not_loaded_as_other_weights(tmp_path: Path) -> None:
    """torch reads a zip-format file's tensors without checking their CRC: a file with bytes damaged in its data (a
    copy, a download, a disk) loaded as other weights without a word."""
    torch.save(nyu_random_state_dict(), tmp_path / "whole.pt")
    data = bytearray((tmp_path / "whole.pt").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    (tmp_path / "damaged.pt").write_bytes(bytes(data))
    assert set(load_nyu_checkpoint(tmp_path / "whole.pt")) == set(nyu_random_state_dict())
    with pytest.raises(ValueError, match=r"damaged\.pt: not a weights-only torch state dict \(its entry .* does not "
                                         r"match its checksum \(damaged"):  # fmt: skip
        load_nyu_checkpoint(tmp_path / "damaged.pt")


def test_imports_run_one_way() -> None:
    """gmic.py never imports nyu.py (the NYU conversion depends on GMIC, not the reverse)."""
    import wsod_mammo.models.gmic as gmic

    assert "nyu" not in Path(gmic.__file__).read_text()
