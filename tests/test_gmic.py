"""GMIC: shapes, ranges, bad input, determinism, batch independence, autocast, channels_last, training."""

import pytest
import torch

from wsod_mammo.models import GMIC, GMICOutput, roi

SIZE = (256, 192)  # -> 4 x 3 saliency map
CROP = (64, 64)  # -> 1 x 1 window


def tiny_gmic(num_classes: int = 1, **kwargs: object) -> GMIC:
    torch.manual_seed(0)
    return GMIC(num_classes=num_classes, crop_shape=CROP, num_patches=3, **kwargs)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, *SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("num_classes", [1, 2])
def test_output_shapes_and_ranges(num_classes: int) -> None:
    model = tiny_gmic(num_classes).eval()
    with torch.no_grad():
        out = model(images(2))
    assert isinstance(out, GMICOutput)
    for y in (out.y_global, out.y_local, out.y_fusion):
        assert y.shape == (2, num_classes) and y.dtype == torch.float32
        assert ((y > 0) & (y < 1)).all()
    assert out.saliency.shape == (2, num_classes, 4, 3)
    assert out.patch_boxes.shape == (2, 3, 4) and out.patch_attention.shape == (2, 3)
    assert torch.allclose(out.patch_attention.sum(1), torch.ones(2))
    boxes = out.patch_boxes
    assert (boxes[..., 0] >= 0).all() and (boxes[..., 2] <= SIZE[1]).all() and (boxes[..., 3] <= SIZE[0]).all()
    assert torch.equal(boxes[..., 2] - boxes[..., 0], torch.full((2, 3), 64.0))


def test_y_global_is_mean_of_top_t_and_patches_follow_the_cam() -> None:
    model = GMIC(percent_t=0.25, crop_shape=CROP, num_patches=2).eval()
    with torch.no_grad():
        out = model(images(2))
    top = out.saliency.flatten(2).topk(3, dim=2).values.mean(2)  # round(0.25 * 12) = 3
    assert torch.allclose(out.y_global, top)
    corners = roi.select_windows(out.saliency, (1, 1), 2)
    expected = roi.corners_to_boxes(roi.corners_to_pixels(corners, (4, 3), SIZE, CROP), CROP)
    assert torch.equal(out.patch_boxes, expected)


@pytest.mark.parametrize(
    ("shape", "match"),
    [((1, 256, 192), "shape"), ((1, 3, 256, 192), "shape"), ((1, 1, 250, 192), "multiples of 64")],
)
def test_bad_input_is_rejected(shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_gmic()(torch.zeros(shape))


def test_crop_larger_than_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        GMIC(crop_shape=(256, 256))(torch.zeros(1, 1, 128, 128))


def test_bad_constructor_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="percent_t"):
        GMIC(percent_t=0.0)


def test_eval_mode_is_deterministic_and_batch_independent() -> None:
    model = tiny_gmic(2).eval()
    x = images(3)
    with torch.no_grad():
        a, b = model(x), model(x)
        alone = model(x[:1])
    for field_a, field_b, field_alone in zip(a, b, alone, strict=True):
        assert torch.equal(field_a, field_b)
        assert torch.allclose(field_a[:1], field_alone, atol=1e-5)


def test_constant_image_gives_finite_outputs() -> None:
    model = tiny_gmic().eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, *SIZE))
    assert all(torch.isfinite(t).all() for t in out)


def test_bf16_autocast_and_channels_last() -> None:
    model = tiny_gmic().eval()
    x = images(2)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
        last = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert low.y_global.dtype == torch.float32
    # the tiny untrained model's y_global is 0.5 +- 1e-3 for any input (zeros too): compare logits and the map,
    # where bf16 is off by <= 1e-4 here and an autocast path that ignored the image by >= 2.5e-3
    torch.testing.assert_close(torch.logit(low.y_global), torch.logit(ref.y_global), atol=1e-3, rtol=0)
    torch.testing.assert_close(low.saliency.float(), ref.saliency, atol=1e-3, rtol=0)
    assert torch.allclose(last.y_fusion, ref.y_fusion, atol=1e-5)
    assert torch.equal(last.patch_boxes, ref.patch_boxes)


@pytest.mark.parametrize("num_classes", [1, 2])
def test_the_heads_give_float32_logits_of_their_features_under_bf16_autocast(num_classes: int) -> None:
    """Under bf16-mixed the backbones run in bf16, but the heads' logits are float32 functions of their features:
    bf16 rounded them to 8 bits (logits -2.8203 and -2.8259 both -2.8125), tying CAM cells that then picked other
    patches, and `wsod test` of one checkpoint gave other tables under bf16-mixed than in float32."""
    model = tiny_gmic(num_classes).eval()
    heads = {"saliency_head": model.saliency_head, "classifier": model.classifier, "fusion": model.fusion}
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(name: str):  # a hook that returns nothing leaves the output as it is
        return lambda module, inputs, output: seen.__setitem__(name, (inputs[0], output))

    for name, head in heads.items():
        head.register_forward_hook(keep(name))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(images(3))
    assert seen["saliency_head"][0].dtype == torch.float32  # h_g itself came from the bf16 backbone
    with torch.no_grad():
        for name, (features, logits) in seen.items():
            assert logits.dtype == torch.float32, name
            torch.testing.assert_close(logits, heads[name](features.float()), rtol=0, atol=0)


def test_space_to_depth_stem_trains_like_the_plain_stem_under_bf16_channels_last() -> None:
    """The configuration GPUs train in: the same weights give the same patches and outputs, and the stem's weight
    gets the same gradient, with either global_stem."""
    plain, blocks = tiny_gmic(2).train(), tiny_gmic(2, global_stem="space_to_depth").train()
    blocks.load_state_dict(plain.state_dict())
    x = images(2).contiguous(memory_format=torch.channels_last)
    outputs = []
    for model in (plain, blocks):
        model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.y_fusion.sum().backward()
        outputs.append(out)
    assert torch.equal(outputs[1].patch_boxes, outputs[0].patch_boxes)
    torch.testing.assert_close(outputs[1].y_fusion, outputs[0].y_fusion, rtol=0.02, atol=0.02)
    stem_grads = [m.global_network.first_conv.weight.grad for m in (plain, blocks)]
    torch.testing.assert_close(stem_grads[1], stem_grads[0], rtol=0.05, atol=0.05 * stem_grads[0].abs().max().item())


def test_gray_local_stem_trains_like_the_repeated_patch_channels_last() -> None:
    """local_stem: space_to_depth: the same weights give the same outputs and the same gradient of the local
    network's first kernel as the patch repeated as 3 channels (float32; in bf16 the outputs, as the first layer's
    bf16 gradients of a tiny untrained model differ from float32's by more than the two layouts do)."""
    plain, gray = tiny_gmic(2).train(), tiny_gmic(2, local_stem="space_to_depth").train()
    gray.load_state_dict(plain.state_dict())
    x = images(2).contiguous(memory_format=torch.channels_last)
    outputs = []
    for model in (plain, gray):
        model.to(memory_format=torch.channels_last)
        out = model(x)
        out.y_fusion.sum().backward()
        outputs.append(out)
    assert torch.equal(outputs[1].patch_boxes, outputs[0].patch_boxes)  # the global network is the same
    torch.testing.assert_close(outputs[1].y_local, outputs[0].y_local)
    grads = [m.local_network.conv1.weight.grad for m in (plain, gray)]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5 * grads[0].abs().max().item())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        found, expected = gray(x), plain(x)
    torch.testing.assert_close(found.y_local, expected.y_local, rtol=0.02, atol=0.02)
    torch.testing.assert_close(found.y_fusion, expected.y_fusion, rtol=0.02, atol=0.02)


def test_training_step_reaches_every_parameter() -> None:
    model = tiny_gmic(2).train()
    out = model(images(2))
    loss = sum(torch.nn.functional.binary_cross_entropy(y, torch.ones_like(y)) for y in out[:3])
    (loss + out.saliency.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_an_unknown_compile_mode_is_refused_with_the_modes() -> None:
    with pytest.raises(ValueError, match="compile_networks must be a bool or one of .*reduce-overhead.*'fast'"):
        GMIC(compile_networks="fast")


def test_compile_networks_keeps_state_dict_keys() -> None:
    assert list(GMIC(compile_networks=True).state_dict()) == list(GMIC().state_dict())


@pytest.mark.parametrize(("option", "mode"), [(True, "default"), ("reduce-overhead", "reduce-overhead")])
def test_the_compile_mode_reaches_both_networks(monkeypatch, option: bool | str, mode: str) -> None:
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: seen.append(kwargs.get("mode")) or fn)
    GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64), compile_networks=option)
    assert seen == [mode, mode]


def test_compiled_networks_give_every_saliency_map_and_layercam_patches(compile_without_inductor: None) -> None:
    """A compiled network is one autograd node, so LayerCAM's intermediate layers got no gradient ("appears to
    not have been used in the graph") in `wsod test` and in training with train_saliency layercam; the global pass
    now runs eagerly for them. Maps, patches and probabilities equal eager mode's. Compiled by dynamo and
    AOTAutograd, whose one autograd node this is about, without inductor's code generation (44 s of CPU in the
    suite; inductor's numerics: the next test)."""
    from wsod_mammo.saliency.base import available_saliency_methods

    torch.manual_seed(0)
    eager = GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)).eval()
    compiled = GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64), compile_networks=True).eval()
    compiled.load_state_dict(eager.state_dict())
    x, methods = torch.randn(2, 1, 128, 128), available_saliency_methods()
    assert "layercam" in methods
    for target in ("y_global", "y_fusion"):
        out_e, maps_e = eager.evaluate(x, "layercam", methods, target=target)
        out_c, maps_c = compiled.evaluate(x, "layercam", methods, target=target)
        for name in methods:
            torch.testing.assert_close(maps_c[name], maps_e[name], rtol=1e-4, atol=1e-6, msg=f"{target} {name}")
        torch.testing.assert_close(out_c.patch_boxes, out_e.patch_boxes, msg=target)
        torch.testing.assert_close(out_c.y_fusion, out_e.y_fusion, rtol=1e-4, atol=1e-5, msg=target)
    eager.train(), compiled.train()
    train_e, train_c = eager(x, patch_saliency="layercam"), compiled(x, patch_saliency="layercam")
    torch.testing.assert_close(train_c.patch_boxes, train_e.patch_boxes)
    torch.testing.assert_close(train_c.y_fusion, train_e.y_fusion, rtol=1e-4, atol=1e-5)


def test_compiled_networks_give_the_same_outputs() -> None:
    """torch.compile (inductor) of the global and local networks computes what eager mode computes."""
    torch.manual_seed(0)
    eager = GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)).eval()
    compiled = GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64), compile_networks=True).eval()
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        expected, found = eager(x), compiled(x)
    for name in expected._fields:
        torch.testing.assert_close(getattr(found, name), getattr(expected, name), rtol=1e-4, atol=1e-5, msg=name)


def test_compile_training_forward_needs_compile_networks() -> None:
    with pytest.raises(ValueError, match="compile_training_forward .* set compile_networks"):
        GMIC(compile_training_forward=True)


@pytest.mark.parametrize(("patch", "stems"), [("cam", "conv"), ("gradcampp", "conv"), ("cam", "space_to_depth")])
def test_the_compiled_training_forward_trains_as_eager_mode(
    compile_without_inductor: None, patch: str, stems: str
) -> None:
    """compile_training_forward: one graph (fullgraph, so a graph break fails here) for the whole forward with CAM
    patches or a GradCAM-family method's (its gradient in closed form) gives eager's outputs and every parameter's
    gradient, step after step, with either layout of both stems (configs/trainer/gpu.yaml's space-to-depth). Traced
    by dynamo and AOTAutograd as for inductor, without inductor's code generation (over 2 minutes on 2 cores;
    tests/test_cuda.py runs it whole, with CUDA graphs)."""
    torch.manual_seed(0)
    options = {"num_classes": 1, "num_patches": 2, "crop_shape": (64, 64), "global_stem": stems, "local_stem": stems}
    eager = GMIC(**options).train()
    compiled = GMIC(**options, compile_networks=True, compile_training_forward=True).train()
    compiled.load_state_dict(eager.state_dict())
    for seed in (0, 1):
        x = torch.randn(2, 1, 128, 128, generator=torch.Generator().manual_seed(seed))
        expected, found = eager(x, patch), compiled(x, patch)
        for name in expected._fields:
            torch.testing.assert_close(getattr(found, name), getattr(expected, name), rtol=1e-4, atol=1e-5, msg=name)
        for model, out in ((eager, expected), (compiled, found)):
            model.zero_grad()
            (sum(y.sum() for y in out[:3]) + out.saliency.mean()).backward()
        for (name, p), q in zip(compiled.named_parameters(), eager.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * q.grad.abs().max().item(), msg=name)


def test_the_compiled_training_forward_serves_training_with_patch_maps_made_without_autograd(monkeypatch) -> None:
    """Train mode with gradients and a patch method that needs no autograd call (CAM, the GradCAM family on h_g): the
    compiled whole forward; LayerCAM's stage layers (autograd), no_grad and eval mode: the ordinary path (with the
    compiled networks)."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    model = GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64), compile_networks="reduce-overhead",
                 compile_training_forward=True).train()  # fmt: skip
    calls, whole = [], model._compiled_forward_in_one_graph
    model._compiled_forward_in_one_graph = lambda gmic, x, method: calls.append(method.name) or whole(gmic, x, method)
    x = torch.randn(2, 1, 128, 128)
    model(x)
    model(x, patch_saliency="gradcam")
    assert calls == ["cam", "gradcam"]
    model(x, patch_saliency="layercam")
    with torch.no_grad():
        model(x)
    model.eval()(x)
    assert calls == ["cam", "gradcam"]


def test_nothing_reads_the_global_networks_outputs_after_the_local_network_runs_without_a_pending_backward() -> None:
    """Under reduce-overhead the local network's CUDA graph overwrites the global network's outputs when no backward
    is pending (no_grad: a new graph generation), so y_fusion must not read h_g after it (an H200 raised "accessing
    tensor output of CUDAGraphs that has been overwritten"). Emulated on the CPU: when the local network starts, the
    global network's outputs that carry no graph are filled with NaN in place, as a replay writes them."""
    model = tiny_gmic().eval()
    x = images(2)
    family = ["cam", "gradcam", "gradcampp", "xgradcam"]
    with torch.no_grad():
        expected = [model(x), model(x, "gradcam")]
    expected_evaluation = model.evaluate(x, "cam", family)
    last: dict[str, dict[str, torch.Tensor]] = {}
    model.global_network.register_forward_hook(lambda module, args, output: last.update(output=output))

    def overwrite(module: torch.nn.Module, args: tuple) -> None:
        for activation in last.pop("output").values():
            if not activation.requires_grad:  # a pending backward keeps them (and in-place would break it)
                activation.fill_(float("nan"))

    model.local_network.register_forward_pre_hook(overwrite)
    with torch.no_grad():
        found = [model(x), model(x, "gradcam")]
    found_evaluation = model.evaluate(x, "cam", family)
    for out, out_expected in [*zip(found, expected, strict=True), (found_evaluation[0], expected_evaluation[0])]:
        for name in GMICOutput._fields:
            torch.testing.assert_close(getattr(out, name), getattr(out_expected, name), msg=name)
    for name in family:
        torch.testing.assert_close(found_evaluation[1][name], expected_evaluation[1][name], msg=name)


def _x(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 1, *SIZE, generator=torch.Generator().manual_seed(0))


def test_top_t_count_rounds_to_nearest_as_nyu_does() -> None:
    """nyukat/GMIC: top_t = int(round(h * w * percent_t)). 12 * 0.3 = 3.6 -> 4 positions (floor would give 3)."""
    torch.manual_seed(0)
    model = GMIC(percent_t=0.3, crop_shape=(64, 64), num_patches=2).eval()
    with torch.no_grad():
        out = model(_x())
    flat = out.saliency.flatten(2).sort(dim=2, descending=True).values
    torch.testing.assert_close(out.y_global, flat[..., :4].mean(2))


def test_no_grad_forward_with_an_autograd_patch_method_returns_detached_outputs() -> None:
    """Under torch.no_grad() nothing returned may carry an autograd graph (memory, .numpy())."""
    torch.manual_seed(0)
    model = GMIC(crop_shape=(64, 64), num_patches=2).eval()
    with torch.no_grad():
        out = model(_x(), "layercam")
    assert [name for name, t in zip(out._fields, out, strict=True) if t.requires_grad] == []


def test_gated_attention_and_fusion_follow_the_paper() -> None:
    """Shen et al. 2021, eqs. 5-8: from the K patches' features h_k (ResNet-18 on the crops at patch_boxes),
    a_k = softmax_k(w^T (tanh(V h_k) * sigm(U h_k))), z = sum_k a_k h_k, y_local = sigm(w_c^T z),
    y_fusion = sigm(w_f^T [GMP(h_g); z] + b)."""
    torch.manual_seed(0)
    model = GMIC(num_classes=2, crop_shape=(64, 64), num_patches=3).eval()
    with torch.no_grad():
        # make the attention far from uniform so a wrong gate is visible
        for layer in (model.attention_v, model.attention_u, model.attention_w):
            layer.weight.mul_(20)
        x = _x()
        out = model(x)
        crops = []
        for n in range(x.shape[0]):
            for left, top, right, bottom in out.patch_boxes[n].long().tolist():
                crops.append(x[n, :, top:bottom, left:right])
        h = model.local_network(torch.stack(crops).expand(-1, 3, -1, -1)).view(2, 3, -1).double()
        V, U, w = (m.weight.double() for m in (model.attention_v, model.attention_u, model.attention_w))
        scores = (torch.tanh(h @ V.T) * torch.sigmoid(h @ U.T)) @ w.T  # (N, K, 1)
        a = torch.softmax(scores[..., 0], dim=1)
        z = (a[..., None] * h).sum(1)
        y_local = torch.sigmoid(z @ model.classifier.weight.double().T)
        pooled = model.global_network(x)["final"].double().amax(dim=(2, 3))
        fw, fb = model.fusion.weight.double(), model.fusion.bias.double()
        y_fusion = torch.sigmoid(torch.cat([pooled, z], 1) @ fw.T + fb)
    assert a.std() > 0.05  # attention is not uniform here
    torch.testing.assert_close(out.patch_attention.double(), a, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.y_local.double(), y_local, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.y_fusion.double(), y_fusion, atol=1e-5, rtol=1e-4)
