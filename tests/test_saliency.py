"""Saliency methods: registry, formulas against independent computations, the one-call contract, training,
`Trainer.test` under inference mode, and a comparison with pytorch-grad-cam where it is installed."""

import logging
import re
from pathlib import Path
from typing import ClassVar

import lightning
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from wsod_mammo.models import GMIC, GlobalScore
from wsod_mammo.saliency import (
    CAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    SaliencyInputs,
    SaliencyMethod,
    XGradCAM,
    available_saliency_methods,
    compute_saliency,
    get_saliency_method,
    normalize_saliency,
    register_saliency_method,
    upsample_saliency,
)
from wsod_mammo.training.module import GMICLitModule

ALL = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam"]
GRADIENT = ALL[1:]
SIZE = (256, 192)


def tiny_gmic(num_classes: int = 1) -> GMIC:
    torch.manual_seed(0)
    return GMIC(num_classes=num_classes, crop_shape=(64, 64), num_patches=2)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, *SIZE, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ registry and helpers
def test_registry_names_classes_and_errors() -> None:
    assert available_saliency_methods() == sorted(ALL)
    classes = [CAM, GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM]
    assert [type(get_saliency_method(n)) for n in ALL] == classes
    instance = LayerCAM(layers=["final"])
    assert get_saliency_method(instance) is instance
    with pytest.raises(ValueError, match="'gradcam', 'gradcampp'"):
        get_saliency_method("scorecam")
    with pytest.raises(ValueError, match="already registered"):
        register_saliency_method("cam")(type("Other", (SaliencyMethod,), {}))
    with pytest.raises(ValueError, match="at least one layer"):
        LayerCAM(layers=[])


def test_a_name_registered_with_capitals_is_found_as_the_built_in_ones_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names are looked up in lower case: a method registered as ``"GradXAct"`` was never found ("unknown saliency
    method 'GradXAct': expected one of ['GradXAct', ...]"), and ``"CAM"`` was registered beside the built-in
    ``"cam"``. A name is registered in lower case."""
    import wsod_mammo.saliency.base as base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # the registry as it was, after the test
    registered = register_saliency_method("GradXAct")(type("GradXAct", (_SquaredCAM,), {}))
    assert registered.name == "gradxact" and "gradxact" in available_saliency_methods()
    assert type(get_saliency_method("GradXAct")) is registered and type(get_saliency_method("gradxact")) is registered
    with pytest.raises(ValueError, match="'CAM' is already registered to CAM"):
        register_saliency_method("CAM")(type("Other", (SaliencyMethod,), {}))


@pytest.mark.parametrize(
    ("name", "why"),
    [("y_global", "beside method"), ("Weights", "beside method"), ("my/cam", "nests"), ("my:cam", "splits")],
)
def test_a_name_the_outputs_would_mistake_for_another_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, why: str
) -> None:
    """A method named ``y_global`` had its maps replaced by GMIC's probabilities of that key (its detection read an
    (N, C) tensor), ``weights`` doubled a column of ``table2_row.csv``, ``my/cam`` nested W&B's keys: each is refused
    where a module is given it, or where it is registered, in one line naming it."""
    import wsod_mammo.saliency.base as base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    named = type("Named", (_SquaredCAM,), {"name": name})
    with pytest.raises(ValueError, match=rf"^saliency method .*\.Named: name {re.escape(repr(name))} .*{why}[^\n]*$"):
        GMICLitModule(tiny_gmic(), test_saliency=["cam", named()])
    with pytest.raises(ValueError, match=rf"^saliency method .*\.Fine: name {re.escape(repr(name.lower()))} "):
        register_saliency_method(name)(type("Fine", (_SquaredCAM,), {}))
    assert name.lower() not in available_saliency_methods()
    with pytest.raises(ValueError, match="name 'y_global' cannot be used"):  # its name from the class
        GMICLitModule(tiny_gmic(), train_saliency=type("Y_Global", (SaliencyMethod,), {})())
    register_saliency_method("gradxact")(type("Y_Global", (_SquaredCAM,), {}))  # a name of its own: fine


def test_unknown_layer_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['stage9'\].*'stage1'.*'final'"):
        tiny_gmic().saliency_maps(images(1), [LayerCAM(layers=["stage9"])])
    with pytest.raises(ValueError, match="valid layer names"):
        tiny_gmic()(images(1), GradCAM(layer="nope"))


def test_normalize_and_upsample() -> None:
    maps = torch.stack([torch.arange(12.0).view(1, 3, 4), torch.full((1, 3, 4), 5.0)])  # (2, 1, 3, 4)
    out = normalize_saliency(maps)
    assert out[0].min() == 0 and out[0].max() == 1 and torch.equal(out[1], torch.zeros(1, 3, 4))
    assert torch.allclose(out[0, 0, 1, 1], torch.tensor(5 / 11))
    assert upsample_saliency(maps, (6, 8)).shape == (2, 1, 6, 8)
    assert torch.allclose(upsample_saliency(torch.ones(1, 2, 3, 4), (5, 7)), torch.ones(1, 2, 5, 7))


def test_a_finer_layers_map_shrinks_by_the_mean_of_the_cells_each_map_cell_covers() -> None:
    """LayerCAM fuses stage3 (1/16 of the input) onto the saliency map (1/64): bilinear alone read rows and columns
    4i+1 and 4i+2 only, so a stage3 peak at 4i or 4i+3 added nothing to the fused map."""
    fine = torch.rand(2, 1, 16, 12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(upsample_saliency(fine, (4, 3)), F.avg_pool2d(fine, 4))
    assert torch.allclose(upsample_saliency(fine, (8, 6)), F.avg_pool2d(fine, 2))
    grown = upsample_saliency(fine, (4, 24))  # one side shrinks, the other grows: means over rows, then bilinear
    assert torch.allclose(grown, F.interpolate(F.avg_pool2d(fine, (4, 1)), size=(4, 24), mode="bilinear"))
    final = torch.zeros(1, 1, 4, 3)
    final[0, 0, 3, 2] = 1.0  # the coarse layer's peak elsewhere, so each fused map is min-max normalized apart
    for row, col in [(0, 0), (4, 4), (7, 11), (5, 5)]:
        stage3 = torch.zeros(1, 1, 16, 12)
        stage3[0, 0, row, col] = 1.0
        inputs = SaliencyInputs(
            cam=torch.zeros(1, 1, 4, 3),
            activations={"stage3": stage3, "final": final},
            gradients={"stage3": torch.ones(1, 1, 1, 16, 12), "final": torch.ones(1, 1, 1, 4, 3)},
        )
        fused = LayerCAM(layers=["stage3", "final"]).compute(inputs)[0, 0]
        assert fused[row // 4, col // 4] == pytest.approx(1 / 32), (row, col)  # (1/16 of the cell's area) / 2 layers


# ------------------------------------------------------------------ formulas
def random_inputs(seed: int, zero_some: bool = True) -> SaliencyInputs:
    gen = torch.Generator().manual_seed(seed)
    acts = torch.relu(torch.randn(2, 4, 3, 5, generator=gen))  # (N, K, h, w)
    grads = torch.randn(2, 3, 4, 3, 5, generator=gen)  # (N, C, K, h, w)
    if zero_some:
        grads[0, 1] = 0.0  # all-zero gradient for one image and class
        grads[1, :, :, 0] = 0.0
    cam = torch.rand(2, 3, 3, 5, generator=gen)
    return SaliencyInputs(cam=cam, activations={"final": acts}, gradients={"final": grads})


def loop_map(acts: torch.Tensor, grads: torch.Tensor, weight_fn) -> torch.Tensor:
    """Independent per-image, per-class, per-channel computation in float64."""
    n, c = grads.shape[:2]
    out = torch.zeros(n, c, *acts.shape[-2:], dtype=torch.float64)
    for i in range(n):
        for j in range(c):
            for k in range(acts.shape[1]):
                a, g = acts[i, k].double(), grads[i, j, k].double()
                out[i, j] += weight_fn(a, g) * a
    return out.clamp(min=0)


def gradcampp_weight(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    total = 0.0
    for gv in g.flatten().tolist():
        if gv != 0:
            alpha = gv**2 / (2 * gv**2 + a.sum().item() * gv**3 + 1e-6)
            total += max(gv, 0.0) * alpha
    return torch.tensor(total, dtype=torch.float64)


@pytest.mark.parametrize(
    ("method", "weight_fn"),
    [
        (GradCAM(), lambda a, g: g.mean()),
        (GradCAMPlusPlus(), gradcampp_weight),
        (XGradCAM(), lambda a, g: (g * a).sum() / (a.sum() + 1e-7)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_channel_weight_formulas(method: SaliencyMethod, weight_fn, seed: int) -> None:
    inputs = random_inputs(seed)
    expected = loop_map(inputs.activations["final"], inputs.gradients["final"], weight_fn)
    got = method(inputs)
    assert got.shape == (2, 3, 3, 5) and (got >= 0).all()
    assert torch.allclose(got.double(), expected, atol=1e-5)
    assert torch.equal(got[0, 1], torch.zeros(3, 5))  # zero gradient -> zero map, no NaN (GradCAM++'s alpha)


def test_gradcampp_epsilon_zero_is_the_papers_formula_where_gradients_are_small() -> None:
    """At 2944 x 1920 GMIC's gradients at h_g are ~1e-3 to 1e-4: pytorch-grad-cam's 1e-6 (the default) then
    dominates the denominator; ``epsilon=0`` is Chattopadhyay et al.'s alpha = G^2 / (2 G^2 + sum A G^3)."""
    inputs = random_inputs(3)
    small = SaliencyInputs(inputs.cam, inputs.activations, {"final": inputs.gradients["final"] * 1e-4})

    def paper_weight(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        alpha = g**2 / torch.where(g != 0, 2 * g**2 + a.sum() * g**3, torch.ones_like(g))
        return (g.clamp(min=0) * alpha).sum()

    expected = loop_map(small.activations["final"], small.gradients["final"], paper_weight)
    paper = GradCAMPlusPlus(epsilon=0)(small)
    torch.testing.assert_close(paper.double(), expected, rtol=1e-5, atol=1e-6 * expected.max().item())
    default = GradCAMPlusPlus()(small)  # the same map as before the option: 1e-6 in every denominator
    expected_default = loop_map(small.activations["final"], small.gradients["final"], gradcampp_weight)
    torch.testing.assert_close(default.double(), expected_default, rtol=1e-5, atol=1e-6 * expected_default.max().item())
    assert not torch.allclose(normalize_saliency(paper), normalize_saliency(default), atol=0.01)
    assert repr(GradCAMPlusPlus()) == "GradCAMPlusPlus(layers=['final'])"  # as checkpoints recorded it
    assert repr(GradCAMPlusPlus(epsilon=0)) == "GradCAMPlusPlus(layers=['final'], epsilon=0.0)"
    with pytest.raises(ValueError, match="GradCAMPlusPlus.epsilon: expected a number >= 0, found -1"):
        GradCAMPlusPlus(epsilon=-1)


def test_layercam_single_and_fused_layers() -> None:
    inputs = random_inputs(2)
    acts, grads = inputs.activations["final"], inputs.gradients["final"]
    expected = torch.zeros(2, 3, 3, 5)
    for i in range(2):
        for j in range(3):
            expected[i, j] = (grads[i, j].clamp(min=0) * acts[i]).sum(0).clamp(min=0)
    assert torch.allclose(LayerCAM(layers=["final"])(inputs), expected, atol=1e-6)
    gen = torch.Generator().manual_seed(4)
    inputs.activations["big"] = torch.randn(2, 4, 6, 10, generator=gen)
    inputs.gradients["big"] = torch.randn(2, 3, 4, 6, 10, generator=gen)
    big = (inputs.gradients["big"].clamp(min=0) * inputs.activations["big"][:, None]).sum(2).clamp(min=0)
    big = F.interpolate(normalize_saliency(big), size=(3, 5), mode="bilinear", align_corners=False)
    fused = LayerCAM(layers=["final", "big"])(inputs)
    assert torch.allclose(fused, (normalize_saliency(expected) + big) / 2, atol=1e-6)


def test_cam_is_the_sigmoid_map_and_constant_maps_stay_finite() -> None:
    inputs = random_inputs(0)
    assert torch.equal(CAM()(inputs), inputs.cam)
    inputs.activations["final"] = torch.full_like(inputs.activations["final"], 0.5)
    for method in (GradCAM(), GradCAMPlusPlus(), XGradCAM(), LayerCAM(layers=["final"])):
        out = normalize_saliency(method(inputs))
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


# ------------------------------------------------------------------ the GMIC contract
def test_gradcam_identity_with_y_global() -> None:
    model = tiny_gmic(2).eval()
    x = images(2)
    maps = model.saliency_maps(x, ["gradcam"])
    with torch.no_grad():
        logits = model.saliency_head(model.global_network(x)["final"])
    assert torch.allclose(normalize_saliency(maps["gradcam"]), normalize_saliency(F.relu(logits)), atol=1e-5)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradcam_on_h_g_is_the_relu_of_cams_logits_so_its_patches_are_cams_while_k_cells_are_positive(
    sign: float,
) -> None:
    """The y_global score is the mean of the head's logits l = W h_g at its top t% cells, so G = W / top there and 0
    elsewhere: GradCAM's weights are W / (h w) and its map is exactly ReLU(l) / (h w), CAM's sigmoid(l). Both rise
    with l: one-cell windows pick the same patches while K cells have l > 0 (the README's short study gives the
    cam and gradcam rows one trajectory until then); with no l > 0 GradCAM's map is 0, no box, other patches."""
    model = tiny_gmic().eval()
    with torch.no_grad():  # h_g >= 0 (after ReLU): weights of one sign make every logit of that sign
        model.saliency_head.weight.copy_(sign * model.saliency_head.weight.abs())
    x = images(2)
    maps = model.saliency_maps(x, ["gradcam", "gradcampp", "xgradcam"])
    with torch.no_grad():
        logits = model.saliency_head(model.global_network(x)["final"])
        cam = model(x)
    assert ((logits > 0) if sign > 0 else (logits < 0)).all()
    cells = logits.shape[-2] * logits.shape[-1]
    torch.testing.assert_close(maps["gradcam"], F.relu(logits) / cells, rtol=1e-5, atol=1e-12)
    with torch.no_grad():
        gradcam = model(x, "gradcam")
    assert torch.equal(gradcam.patch_boxes, cam.patch_boxes) == (sign > 0)


def test_patch_ties_cam_gives_gradcam_cams_patches_where_its_map_is_zero_not_one_corner_k_times() -> None:
    """With every head logit negative GradCAM's map is 0: NYU's rule (``patch_ties: first``) takes its first window
    K times; ``patch_ties: cam`` takes CAM's patches there, and changes nothing where the logits are positive."""
    torch.manual_seed(0)
    first = GMIC(num_classes=1, crop_shape=(64, 64), num_patches=2).eval()
    torch.manual_seed(0)
    by_cam = GMIC(num_classes=1, crop_shape=(64, 64), num_patches=2, patch_ties="cam").eval()
    x = images(2)
    for sign in (-1.0, 1.0):
        with torch.no_grad():
            for model in (first, by_cam):
                model.saliency_head.weight.copy_(sign * first.saliency_head.weight.abs())
            cam, repeated, picked = first(x), first(x, "gradcam"), by_cam(x, "gradcam")
        if sign < 0:
            assert all(len({tuple(box) for box in image}) == 1 for image in repeated.patch_boxes.tolist())
        assert torch.equal(picked.patch_boxes, cam.patch_boxes)
    with pytest.raises(ValueError, match="patch_ties must be one of"):
        GMIC(patch_ties="last")  # type: ignore[arg-type]


def test_gradcampp_and_xgradcam_on_h_g_weigh_its_channels_otherwise_than_cam_and_gradcam() -> None:
    """GradCAM++ keeps the channels of positive head weight, each weighed by its alpha, and XGradCAM weighs each by
    its share of activation in the top t% cells: neither map is a function of CAM's logits l (GradCAM's is)."""
    model = tiny_gmic().eval()
    x = images(2)
    maps = {name: normalize_saliency(value) for name, value in model.saliency_maps(x, ALL).items() if name in ALL}
    for name in ("gradcampp", "xgradcam"):
        for other in ("cam", "gradcam"):
            assert (maps[name] - maps[other]).abs().amax() > 0.05, (name, other)


def count_calls(monkeypatch: pytest.MonkeyPatch, model: GMIC) -> dict[str, int]:
    """Live counts of `torch.autograd.grad` calls and of the global and local networks' forwards."""
    calls = {"grad": 0, "global": 0, "local": 0}
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls["grad"] += 1
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    model.global_network.register_forward_hook(lambda *_: calls.__setitem__("global", calls["global"] + 1))
    model.local_network.register_forward_hook(lambda *_: calls.__setitem__("local", calls["local"] + 1))
    return calls


def test_one_forward_and_one_grad_call_for_all_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_gmic(2).eval()
    calls = count_calls(monkeypatch, model)
    out = model.saliency_maps(images(2), ALL)
    assert calls == {"grad": 1, "global": 1, "local": 0}
    assert set(out) == set(ALL) | {"y_global"}
    for name in ALL:
        assert out[name].shape == (2, 2, 4, 3) and (out[name] >= 0).all() and not out[name].requires_grad
    # the GradCAM family reads h_g only, whose gradient is closed form: no autograd call at all
    model.saliency_maps(images(2), ["gradcam", "gradcampp", "xgradcam", LayerCAM(layers=["final"])])
    model.evaluate(images(2), "gradcampp", ["cam", "gradcam"])
    assert calls == {"grad": 1, "global": 3, "local": 1}


@pytest.mark.parametrize("gradient_target", ["logit", "probability"])
@pytest.mark.parametrize("num_classes", [1, 2])
def test_the_closed_form_gradient_of_the_score_with_respect_to_h_g_is_autograds(
    num_classes: int, gradient_target: str
) -> None:
    """``_score_gradient_of_h_g`` against ``torch.autograd.grad`` of y_global's score, each class alone, for a score
    that averages several positions (t = 25% of 4 x 3) in train mode (batch statistics), and the maps from it."""
    torch.manual_seed(0)
    model = GMIC(num_classes, percent_t=0.25, crop_shape=(64, 64), num_patches=2, gradient_target=gradient_target)
    g = model.train().global_pass(images(3))
    assert g.score_positions.shape == (3, num_classes, 3)
    closed = model._score_gradient_of_h_g(g)
    for c in range(num_classes):
        expected = torch.autograd.grad(g.score[:, c].sum(), g.activations["final"], retain_graph=True)[0]
        torch.testing.assert_close(closed[:, c], expected, rtol=1e-6, atol=1e-9 * expected.abs().max().item())
        assert (expected != 0).any()
    model.eval()
    with torch.no_grad():  # the maps, made without autograd, equal those of an explicit autograd call
        maps = model.saliency_maps(images(2), GRADIENT[:3])
    g = model.global_pass(images(2))
    by_autograd = compute_saliency([get_saliency_method(m) for m in GRADIENT[:3]], g.cam, g.activations, g.score)
    for name in GRADIENT[:3]:
        torch.testing.assert_close(maps[name], by_autograd[name], rtol=1e-5, atol=1e-7, msg=name)


def test_passes_that_train_nothing_record_the_graph_from_the_earliest_layer_their_maps_differentiate() -> None:
    """Maps alone need no gradient before the earliest layer they differentiate into (LayerCAM's stage3; h_g for
    the y_fusion target), so the high-resolution layers before it run without a graph; a training forward records
    everything (its loss trains the stem)."""
    model = tiny_gmic().eval()
    recorded = []  # grad mode while the stem's convolution and stage 4 run
    net = model.global_network
    for layer in (net.first_conv, net.layer_list[3]):
        layer.register_forward_hook(lambda *_: recorded.append(torch.is_grad_enabled()))
    x = images(2)
    model.evaluate(x, "cam", ALL)
    model.saliency_maps(x, ["layercam"])
    with torch.no_grad():
        model(x, "layercam")
    assert recorded == [False, True] * 3
    recorded.clear()
    model.evaluate(x, "cam", ["gradcam"], target="y_fusion")  # from h_g: no layer of the network recorded
    model.train()(x, "layercam")
    assert recorded == [False, False, True, True]


def test_parameter_grads_untouched_and_works_under_no_grad() -> None:
    model = tiny_gmic().eval()
    model.classifier.weight.grad = torch.full_like(model.classifier.weight, 3.0)
    with torch.no_grad():
        out = model.saliency_maps(images(1), ALL)
        fwd = model(images(1), "gradcampp")
    assert all(p.grad is None for n, p in model.named_parameters() if n != "classifier.weight")
    assert torch.equal(model.classifier.weight.grad, torch.full_like(model.classifier.weight, 3.0))
    assert out["gradcampp"].abs().sum() > 0 and not fwd.y_global.requires_grad


def test_batched_classes_equal_separate_gradients() -> None:
    model = tiny_gmic(2).eval()
    x = images(2)
    both = model.saliency_maps(x, ["xgradcam"])["xgradcam"]
    acts = model.global_network(x)
    logits = model.saliency_head(acts["final"])
    cam = torch.sigmoid(logits)
    y = logits.flatten(2).topk(1, dim=2).values.mean(2)  # y_global's raw score; round(0.02 * 12) = 0 -> top 1
    for c in range(2):
        g = torch.autograd.grad(y[:, c].sum(), acts["final"], retain_graph=True)[0]
        inputs = SaliencyInputs(cam[:, c : c + 1], {"final": acts["final"]}, {"final": g[:, None]})
        assert torch.allclose(XGradCAM()(inputs), both[:, c : c + 1], atol=1e-6)


def test_batch_independence_in_eval_mode() -> None:
    model = tiny_gmic(2).eval()
    x = images(3)
    other = x.clone()
    other[1:] = images(2, seed=9)
    a, b = model.saliency_maps(x, ALL), model.saliency_maps(other, ALL)
    for name in ALL:
        assert torch.allclose(a[name][0], b[name][0], atol=1e-6), name


@pytest.mark.parametrize("num_classes", [1, 2])
def test_in_training_mode_each_images_map_differentiates_its_own_score(num_classes: int) -> None:
    """BatchNorm in training mode couples a batch: the gradient of the batch's summed score at image i holds how
    i's activations move the other images' scores (a third of a LayerCAM map's peak, 12 of 64 patches moved in an
    audit). LayerCAM's training patches and maps are each image's own score's, as one image at a time gives them."""
    model, x = tiny_gmic(num_classes).train(), images(4)
    layers = ["stage3", "stage4", "stage5"]
    g = model.global_pass(x, eager=True)
    own = {  # d score[i, c] / d activations[i], one autograd call per image and class
        name: torch.stack([
            torch.stack([torch.autograd.grad(g.score[i, c], g.activations[name], retain_graph=True)[0][i]
                         for c in range(num_classes)])
            for i in range(len(x))
        ])
        for name in layers
    }  # fmt: skip
    expected = compute_saliency([LayerCAM()], g.cam, g.activations, None, known_gradients=own)["layercam"]
    maps = model.saliency_maps(x, ["layercam"])["layercam"]
    assert torch.allclose(maps, expected, atol=1e-5 * expected.abs().max().item())
    # the training forward's patches: those the own-score map selects
    assert torch.equal(model(x, "layercam").patch_boxes, model._local_pass(x, expected, g.cam)[2])
    with torch.no_grad():  # in eval mode the images are independent: the sum over the batch is exact, and cheaper
        model.eval()
        assert not model._batch_coupled(x)


def test_y_fusion_target() -> None:
    model = tiny_gmic(2).eval()
    out = model.saliency_maps(images(2), ["gradcam", "cam"], target="y_fusion")
    with torch.no_grad():
        ref = model(images(2))
    assert torch.allclose(out["y_fusion"], ref.y_fusion, atol=1e-6)
    assert out["gradcam"].shape == (2, 2, 4, 3) and torch.isfinite(out["gradcam"]).all()
    with pytest.raises(ValueError, match="target"):
        model.saliency_maps(images(1), ["cam"], target="y_local")


@pytest.mark.parametrize("patch", ["cam", "gradcampp"])
@pytest.mark.parametrize("num_classes", [1, 2])
def test_evaluate_is_forward_and_saliency_maps_in_one_pass(
    monkeypatch: pytest.MonkeyPatch, patch: str, num_classes: int
) -> None:
    model = tiny_gmic(num_classes).eval()
    x = images(2)
    calls = count_calls(monkeypatch, model)
    output, maps = model.evaluate(x, patch, ALL)
    assert calls == {"grad": 1, "global": 1, "local": 1}  # the patch map and all five maps: one forward, one grad
    with torch.no_grad():
        reference = model(x, patch)
    for field, value, expected in zip(reference._fields, output, reference, strict=True):
        torch.testing.assert_close(value, expected, msg=field)
        assert not value.requires_grad
    separately = model.saliency_maps(x, ALL)
    assert set(maps) == set(ALL)
    for name in ALL:
        torch.testing.assert_close(maps[name], separately[name], msg=name)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("patch", [GradCAM(layer="stage4"), LayerCAM(layers=["stage5"])])
def test_evaluate_selects_with_the_patch_methods_own_layers_beside_a_same_named_method(patch) -> None:
    """A train-side GradCAM(layer="stage4") beside the requested `gradcam` (default layer) used to select the
    patches with the requested method's map: validation classified with other patches than training."""
    model = tiny_gmic(2).eval()
    x = images(2)
    output, maps = model.evaluate(x, patch, ALL)
    with torch.no_grad():
        reference = model(x, patch)
    for field, value, expected in zip(reference._fields, output, reference, strict=True):
        torch.testing.assert_close(value, expected, msg=field)
    separately = model.saliency_maps(x, ALL)  # the requested names keep their default layers
    for name in ALL:
        torch.testing.assert_close(maps[name], separately[name], msg=name)


def test_evaluate_with_the_y_fusion_target_differentiates_its_own_y_fusion() -> None:
    model = tiny_gmic(2).eval()
    x = images(2)
    output, maps = model.evaluate(x, "cam", ["gradcam", "layercam"], target="y_fusion")
    # By hand: CAM patches, y_fusion, and each class's gradient of its logit with respect to h_g (GradCAM's layer).
    g = model.global_pass(x)
    z, _, _ = model._local_pass(x, g.cam.detach(), g.cam)
    logit = model._fusion_logit(g.pooled, z)
    y_fusion = torch.sigmoid(logit)
    grads = [torch.autograd.grad(logit[:, c].sum(), g.activations["final"], retain_graph=True)[0] for c in (0, 1)]
    inputs = SaliencyInputs(
        g.cam.detach(), {"final": g.activations["final"].detach()}, {"final": torch.stack(grads, 1)}
    )
    torch.testing.assert_close(output.y_fusion, y_fusion.detach())
    torch.testing.assert_close(maps["gradcam"], GradCAM()(inputs))
    separately = model.saliency_maps(x, ["gradcam", "layercam"], target="y_fusion")  # CAM patches too
    torch.testing.assert_close(output.y_fusion, separately["y_fusion"])
    for name in ("gradcam", "layercam"):
        torch.testing.assert_close(maps[name], separately[name], msg=name)
    output, maps = model.evaluate(x, "xgradcam", ["gradcam"], target="y_fusion")  # two grad calls, one forward
    with torch.no_grad():
        torch.testing.assert_close(output.y_fusion, model(x, "xgradcam").y_fusion)
    assert torch.isfinite(maps["gradcam"]).all() and maps["gradcam"].shape == (2, 2, 4, 3)


def test_evaluate_under_inference_mode_asks_for_it_to_be_lifted() -> None:
    model = tiny_gmic().eval()
    with torch.inference_mode():
        output, maps = model.evaluate(images(1), "gradcampp", ["cam", "gradcam"])  # no autograd needed: fine
        assert not model.needs_autograd("gradcampp", ["cam", "gradcam"])
        assert model.needs_autograd("cam", ["gradcam"], target="y_fusion") and model.needs_autograd("layercam")
        with pytest.raises(RuntimeError, match="inference_mode"):
            model.evaluate(images(1), "cam", ["layercam"])
        with pytest.raises(RuntimeError, match="inference_mode"):
            model.evaluate(images(1), "cam", ["gradcam"], target="y_fusion")
    assert maps["cam"].shape == maps["gradcam"].shape == (1, 1, 4, 3) and output.y_fusion.shape == (1, 1)
    expected_output, expected = model.evaluate(images(1), "gradcampp", ["cam", "gradcam"])
    torch.testing.assert_close(maps, expected)
    torch.testing.assert_close(output.patch_boxes, expected_output.patch_boxes)


@pytest.mark.parametrize("name", ALL)
def test_training_step_with_each_train_saliency(name: str) -> None:
    model = tiny_gmic().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images(2), name)
    loss = sum(F.binary_cross_entropy(y, torch.ones_like(y)) for y in out[:3]) + out.saliency.mean()
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert torch.isfinite(loss)


def test_gradient_method_changes_the_patches_not_y_global() -> None:
    model = tiny_gmic(2).eval()
    x = images(2)
    with torch.no_grad():
        cam = model(x)
    grad = model(x, "xgradcam")
    assert torch.allclose(grad.y_global, cam.y_global) and torch.allclose(grad.saliency, cam.saliency)
    maps = model.saliency_maps(x, ["xgradcam"])["xgradcam"]
    from wsod_mammo.models import roi

    corners = roi.corners_to_pixels(roi.select_windows(maps, (1, 1), 2), (4, 3), SIZE, (64, 64))
    assert torch.equal(grad.patch_boxes, roi.corners_to_boxes(corners, (64, 64)))


# ------------------------------------------------------------------ Lightning test under inference mode
class SaliencyProbe(lightning.LightningModule):
    """Minimal module using the pattern the training module uses in test/predict steps."""

    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_gmic()
        self.maps: list[dict[str, torch.Tensor]] = []

    def test_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        with torch.inference_mode(False), torch.enable_grad():
            x = batch[0].clone()
            out = self.model(x, "gradcampp")
            maps = self.model.saliency_maps(x, ALL)
        self.maps.append({**maps, "boxes": out.patch_boxes})


def test_maps_from_trainer_test() -> None:
    probe = SaliencyProbe()
    loader = DataLoader(TensorDataset(images(2)), batch_size=2)
    trainer = lightning.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(probe, loader, verbose=False)
    assert len(probe.maps) == 1
    for name in ALL:
        assert probe.maps[0][name].shape == (2, 1, 4, 3) and probe.maps[0][name].sum() > 0
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        probe.model(images(1), "layercam")


# ------------------------------------------------------------------ pytorch-grad-cam
@pytest.mark.parametrize(("num_classes", "gradient_target"), [(1, "logit"), (2, "logit"), (2, "probability")])
def test_matches_pytorch_grad_cam(num_classes: int, gradient_target: str) -> None:
    # GlobalScore outputs the score our maps differentiate, so pytorch-grad-cam differentiates the same target.
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = tiny_gmic(num_classes).eval()
    model.gradient_target = gradient_target
    expected = model.global_pass(images(2))
    score = expected.y_global if gradient_target == "probability" else _top_logits(model, images(2))
    torch.testing.assert_close(GlobalScore(model)(images(2)), score)
    x = images(2)
    # LayerCAM of the layers at 1/32 and 1/64 of the input: pytorch-grad-cam shrinks stage4 onto the map (1/64)
    # bilinearly, which for 2x is the mean of 2 x 2 cells, as ours; stage3's 4x it reads partly (see
    # test_a_finer_layers_map_shrinks_by_the_mean_of_the_cells_each_map_cell_covers)
    ours = model.saliency_maps(x, [*ALL[1:4], LayerCAM(layers=["stage4", "stage5"])])
    net = model.global_network
    pairs = {
        "gradcam": (pgc.GradCAM, [net.final_relu]),
        "gradcampp": (pgc.GradCAMPlusPlus, [net.final_relu]),
        "xgradcam": (pgc.XGradCAM, [net.final_relu]),
        "layercam": (pgc.LayerCAM, [net.layer_list[3], net.layer_list[4]]),
    }
    for name, (cls, layers) in pairs.items():
        with cls(model=GlobalScore(model), target_layers=layers) as cam:
            cam.get_target_width_height = lambda _x: (3, 4)  # compare at feature resolution (w, h)
            for c in range(num_classes):
                theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * 2)  # (N, h, w) normalized
                mine = normalize_saliency(ours[name][:, c : c + 1])[:, 0]
                assert torch.allclose(mine, torch.from_numpy(theirs), atol=1e-4), (name, c)


def test_gradient_train_saliency_under_ddp(tmp_path) -> None:
    """Single-process gloo DDP without find_unused_parameters: two steps must not raise (no unused params)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = DistributedDataParallel(tiny_gmic().train(), find_unused_parameters=False)
        for step in range(2):
            out = model(images(2, seed=step), "layercam")
            loss = sum(F.binary_cross_entropy(y, torch.ones_like(y)) for y in out[:3]) + out.saliency.mean()
            loss.backward()
        assert all(p.grad is not None for p in model.parameters())
    finally:
        dist.destroy_process_group()


def test_maps_are_float32_under_bf16_autocast() -> None:
    model = tiny_gmic(2).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.saliency_maps(images(2), ALL, target="y_fusion")
    assert {k: v.dtype for k, v in out.items()} == dict.fromkeys([*ALL, "y_global", "y_fusion"], torch.float32)
    ref = model.saliency_maps(images(2), ["cam"])
    assert torch.allclose(normalize_saliency(out["cam"]), normalize_saliency(ref["cam"]), atol=0.1)


class _ReadsItsInputsAsGiven(SaliencyMethod):
    """The README's gradient x activation, without casting what it is given; keeps the dtypes it saw."""

    needs_gradients = True
    seen: ClassVar[list[torch.dtype]] = []

    def layers(self) -> tuple[str, ...]:
        return ("stage4",)

    def compute(self, inputs: SaliencyInputs) -> torch.Tensor:
        acts, grads = inputs.activations["stage4"], inputs.gradients["stage4"]
        self.seen[:] = [inputs.cam.dtype, acts.dtype, grads.dtype]
        return upsample_saliency(
            F.relu((grads * acts.unsqueeze(1)).sum(2)), (inputs.cam.shape[-2], inputs.cam.shape[-1])
        )


def test_a_method_of_your_own_reads_float32_inputs_under_bf16_autocast() -> None:
    """Under bf16-mixed the activations and their gradients were handed over in bf16: the built-in methods cast them,
    a method of one's own written as the README's made its map in bf16 arithmetic (its cells rounded to 8 bits, ties
    where float32 had none). Methods get float32 inputs, as the maps are."""
    model = tiny_gmic().eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.saliency_maps(images(2), [_ReadsItsInputsAsGiven()])
    assert _ReadsItsInputsAsGiven.seen == [torch.float32] * 3


def test_frozen_network_still_gives_gradient_maps() -> None:
    model = tiny_gmic().eval().requires_grad_(False)
    x = images(1)
    out = model.saliency_maps(x, ["gradcam", "layercam"])
    assert out["gradcam"].abs().sum() > 0 and out["layercam"].abs().sum() > 0
    assert not x.requires_grad and x.grad is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("xgradcam", XGradCAM),
        ('{"class_path": "wsod_mammo.saliency.LayerCAM", "init_args": {"layers": ["stage4", "final"]}}', LayerCAM),
        ('{"class_path": "wsod_mammo.saliency.GradCAMPlusPlus"}', GradCAMPlusPlus),
    ],
)
def test_selectable_from_yaml_by_name_or_class_path(value: str, expected: type) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--train_saliency", type=SaliencyMethod | str, default="cam")
    cfg = parser.instantiate_classes(parser.parse_args(["--train_saliency", value]))
    method = get_saliency_method(cfg.train_saliency)
    assert isinstance(method, expected)
    if expected is LayerCAM:
        assert method.layers() == ("stage4", "final")


def _top_logits(model: GMIC, x: torch.Tensor) -> torch.Tensor:
    """The raw score of y_global by hand: the head's logits at the positions of A's top t%, averaged."""
    g = model.global_pass(x)
    logits = torch.logit(g.cam.double()).flatten(2)  # (N, C, h*w), the head's output recovered from A
    top = max(1, round(model.percent_t * logits.shape[-1]))
    positions = g.cam.flatten(2).topk(top, dim=2).indices
    return logits.gather(2, positions).mean(2).float()


def test_gradient_maps_of_a_saturated_positive_survive_with_the_logit_target() -> None:
    # A confident positive: the head's logits reach ~40, float32 rounds sigmoid to 1, and d y_global / d h_g is 0.
    model = tiny_gmic().eval()
    with torch.no_grad():
        model.saliency_head.weight.copy_(model.saliency_head.weight.abs() * 400)
    x = images(2)
    assert (model.global_pass(x).y_global == 1.0).all()
    gradient_methods = ALL[1:]
    logit_maps = model.saliency_maps(x, gradient_methods)
    model.gradient_target = "probability"
    probability_maps = model.saliency_maps(x, gradient_methods)
    for name in gradient_methods:
        assert probability_maps[name].abs().max() == 0, name  # what the saturated probability gives
        flat = logit_maps[name].flatten(2)
        assert ((flat.amax(2) - flat.amin(2)) > 0).all(), name  # a map with a peak to localize, every image
    with pytest.raises(ValueError, match="gradient_target"):
        GMIC(gradient_target="softmax")


class _SquaredCAM(SaliencyMethod):
    def compute(self, inputs: SaliencyInputs) -> torch.Tensor:
        return inputs.cam.float() ** 2


class _DeepLayerCAM(LayerCAM):
    def __init__(self) -> None:
        super().__init__(layers=["stage5"])


def test_a_method_of_your_own_is_named_after_its_class_not_its_parent() -> None:
    """An unregistered method was named "": a Table II row without a label, and two such methods' maps under one
    key (one lost); a subclass of LayerCAM took "layercam", the label of maps it does not make."""
    assert (_SquaredCAM.name, _DeepLayerCAM.name, LayerCAM.name) == ("_squaredcam", "_deeplayercam", "layercam")
    maps = tiny_gmic().eval().saliency_maps(images(1), [_SquaredCAM(), _DeepLayerCAM(), "layercam"])
    assert set(maps) == {"_squaredcam", "_deeplayercam", "layercam", "y_global"}
    assert not torch.equal(maps["_deeplayercam"], maps["layercam"])


def test_test_time_methods_keep_their_settings_and_share_no_name() -> None:
    """``test_saliency=[LayerCAM(layers=["stage5"])]`` was kept as the name ``layercam``: its maps were the default
    LayerCAM's (stages 3-5). Now the steps, asking by name, get the method as given; two methods of one name with
    other settings are refused, naming the option."""
    x = images(2)
    stage5 = LayerCAM(layers=["stage5"])
    module = GMICLitModule(tiny_gmic(), test_saliency=["cam", stage5], predict_saliency=_SquaredCAM()).eval()
    assert module.test_saliency == ["cam", "layercam"] and module.predict_saliency == "_squaredcam"
    _, maps = module.evaluate(x, ["layercam", "_squaredcam"])
    expected = module.model.saliency_maps(x, [stage5, _SquaredCAM()])
    assert torch.allclose(maps["layercam"], expected["layercam"]) and torch.allclose(
        maps["_squaredcam"], expected["_squaredcam"]
    )
    assert not torch.allclose(maps["layercam"], module.model.saliency_maps(x, ["layercam"])["layercam"])
    with pytest.raises(ValueError, match=r"model.test_saliency: two saliency methods named 'layercam'"):
        GMICLitModule(tiny_gmic(), test_saliency=["layercam", stage5])
    with pytest.raises(ValueError, match=r"model.test_saliency and model.predict_saliency: two .* 'layercam'"):
        GMICLitModule(tiny_gmic(), test_saliency=[stage5], predict_saliency="layercam")


def test_a_checkpoint_says_which_method_selected_its_patches(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A module made in Python with ``train_saliency=GradCAM()`` cannot keep the instance in its hyperparameters:
    ``load_from_checkpoint`` rebuilt it with CAM without a word (other patches, other local and fusion outputs).
    The checkpoint now records the method, and a load that selects with another one says so."""
    trained = GMICLitModule(tiny_gmic(), train_saliency=GradCAM())
    assert "train_saliency" not in trained.hparams
    checkpoint = {"state_dict": trained.state_dict(), "hyper_parameters": dict(trained.hparams)}
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    trained.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "python.ckpt")
    with caplog.at_level(logging.WARNING):
        GMICLitModule.load_from_checkpoint(tmp_path / "python.ckpt", model=tiny_gmic(), train_saliency=GradCAM())
    assert "selecting GMIC's patches" not in caplog.text
    with caplog.at_level(logging.WARNING):
        GMICLitModule.load_from_checkpoint(tmp_path / "python.ckpt", model=tiny_gmic())
    assert "trained selecting GMIC's patches with GradCAM(layers=['final']); this module selects them with " in (
        caplog.text
    )


def test_the_readmes_own_saliency_method_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's ``my_saliency.py``, copied as a user would: it selects patches and makes test-time maps, under
    the name the README gives it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    source = readme.split("```python\n# my_saliency.py", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_saliency.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    from my_saliency import GradTimesActivation

    assert GradTimesActivation.name == "gradtimesactivation"
    module = GMICLitModule(
        tiny_gmic(), train_saliency=GradTimesActivation(), test_saliency=["cam", GradTimesActivation()]
    )
    module.train()(images(2))  # a training forward, patches selected by its maps
    _, maps = module.eval().evaluate(images(2), module.test_saliency)
    assert maps["gradtimesactivation"].shape == maps["cam"].shape and (maps["gradtimesactivation"] >= 0).all()
    assert maps["gradtimesactivation"].amax() > 0


class _ActivationNorm(SaliencyMethod):
    """A method that reads an activation but needs no gradient: the channel norm of stage 4, for every class."""

    def layers(self) -> tuple[str, ...]:
        return ("stage4",)

    def compute(self, inputs: SaliencyInputs) -> torch.Tensor:
        norm = inputs.activations["stage4"].float().norm(dim=1, keepdim=True).expand(-1, inputs.cam.shape[1], -1, -1)
        return upsample_saliency(norm.contiguous(), (inputs.cam.shape[-2], inputs.cam.shape[-1]))


def test_a_method_without_gradients_reads_the_activations_it_names() -> None:
    """A method with ``needs_gradients = False`` that names a layer (an activation-norm map) found its activations
    missing: only gradient methods' layers reached ``SaliencyInputs``, and it failed with ``KeyError: 'stage4'``
    in ``saliency_maps``, ``evaluate`` and as ``train_saliency``."""
    module = GMICLitModule(tiny_gmic(), train_saliency=_ActivationNorm(), test_saliency=["cam", _ActivationNorm()])
    module.train()(images(2))  # a training forward, patches selected by its maps
    _, maps = module.eval().evaluate(images(2), module.test_saliency)
    alone = module.model.saliency_maps(images(2), [_ActivationNorm()])["_activationnorm"]
    torch.testing.assert_close(maps["_activationnorm"], alone)
    assert maps["_activationnorm"].shape == maps["cam"].shape and maps["_activationnorm"].amax() > 0


class _Transposed(SaliencyMethod):
    def compute(self, inputs: SaliencyInputs) -> torch.Tensor:
        return inputs.cam.float().transpose(-2, -1)


class _WithoutClassAxis(SaliencyMethod):
    def compute(self, inputs: SaliencyInputs) -> torch.Tensor:
        return inputs.cam.float()[:, 0]


class _InHalfPrecision(SaliencyMethod):
    def compute(self, inputs: SaliencyInputs) -> torch.Tensor:
        return inputs.cam.half()


@pytest.mark.parametrize("method", [_Transposed(), _WithoutClassAxis()], ids=["transposed", "no class axis"])
def test_a_map_not_of_the_cams_shape_is_an_error_naming_its_method(method: SaliencyMethod) -> None:
    """A method of your own whose map was not (N, C, h, w) at ``inputs.cam``'s size was taken as it was: a transposed
    map (4 x 6 for a 6 x 4 CAM) selected patches and gave boxes, each cell placed as a cell of another size, without a
    word; one without its class axis failed with ``not enough values to unpack``. Both are an error naming it."""
    module = GMICLitModule(tiny_gmic(), train_saliency=method, test_saliency=["cam", method])
    expected = rf"saliency method '{method.name}' \(test_saliency\.{type(method).__qualname__}\): compute\(\) returned"
    with pytest.raises(ValueError, match=expected + r" .* expected a floating-point map of shape \(2, 1, 4, 3\)"):
        module.train()(images(2))
    with pytest.raises(ValueError, match=expected):
        module.eval().evaluate(images(2), module.test_saliency)
    maps = tiny_gmic().eval().saliency_maps(images(2), [_InHalfPrecision()])  # float32, as the maps are
    assert maps["_inhalfprecision"].dtype == torch.float32


def test_a_predict_method_with_settings_stands_in_for_its_namesake_among_the_default_test_methods() -> None:
    """``--model.predict_saliency`` LayerCAM(layers=["stage5"]) was refused against the default test_saliency's own
    LayerCAM, which the user never gave (and predict never uses); it takes that one's place. Given both, they clash."""
    stage5 = LayerCAM(layers=["stage5"])
    module = GMICLitModule(tiny_gmic(), predict_saliency=stage5)
    assert module.test_saliency == ALL and module._named("layercam") is stage5
    with pytest.raises(ValueError, match=r"model.test_saliency and model.predict_saliency: two .* 'layercam'"):
        GMICLitModule(tiny_gmic(), test_saliency=["cam", "layercam"], predict_saliency=stage5)


def test_a_threshold_validated_for_other_settings_of_a_name_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    """A fit that validated LayerCAM(layers=["stage5"]) and a test of the default LayerCAM shared the name
    ``layercam``: the test cut the default's maps at the other's threshold and called it validated. Checkpoints
    record each threshold's method; a load into a module whose method of that name differs drops it, and says so."""
    fitted = GMICLitModule(tiny_gmic(), test_saliency=["cam", LayerCAM(layers=["stage5"])])
    fitted.detection_thresholds = {"cam": 0.3, "layercam": 0.1}
    checkpoint: dict = {}
    fitted.on_save_checkpoint(checkpoint)
    same = GMICLitModule(tiny_gmic(), test_saliency=["cam", LayerCAM(layers=["stage5"])])
    same.on_load_checkpoint(checkpoint)
    assert same.detection_thresholds == {"cam": 0.3, "layercam": 0.1}
    other = GMICLitModule(tiny_gmic())  # the default five: LayerCAM of stages 3-5
    with caplog.at_level(logging.WARNING):
        other.on_load_checkpoint(checkpoint)
    assert other.detection_thresholds == {"cam": 0.3}
    assert "the threshold of layercam was validated for LayerCAM(layers=['stage5']), not for this run's " in caplog.text
    before = {k: v for k, v in checkpoint.items() if k != "detection_methods"}  # a checkpoint of before the record
    other.on_load_checkpoint(before)
    assert other.detection_thresholds == {"cam": 0.3, "layercam": 0.1}


class _PowerCAM(SaliencyMethod):
    """A method of your own with a setting that is no layer."""

    def __init__(self, power: float = 2.0) -> None:
        self.power = power

    def compute(self, inputs: SaliencyInputs) -> torch.Tensor:
        return inputs.cam.float() ** self.power


def test_a_threshold_validated_for_other_settings_of_a_method_of_your_own_is_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A checkpoint recorded a method by its ``repr``, which names its layers only: ``_PowerCAM(power=8)`` had the
    record of the validated ``_PowerCAM(power=2)``, took its threshold as validated, and a module selecting patches
    with it was not warned. The record holds the method's settings, compared where a checkpoint has them."""
    fitted = GMICLitModule(tiny_gmic(), train_saliency=_PowerCAM(2.0), test_saliency=["cam", _PowerCAM(2.0)])
    fitted.detection_thresholds = {"cam": 0.3, "_powercam": 0.1}
    checkpoint: dict = {}
    fitted.on_save_checkpoint(checkpoint)
    same = GMICLitModule(tiny_gmic(), train_saliency=_PowerCAM(2.0), test_saliency=["cam", _PowerCAM(2.0)])
    with caplog.at_level(logging.WARNING):
        same.on_load_checkpoint(checkpoint)
    assert same.detection_thresholds == {"cam": 0.3, "_powercam": 0.1} and not caplog.text
    assert same.validated_threshold(_PowerCAM(2.0)) == 0.1 and same.validated_threshold(_PowerCAM(8.0)) is None
    other = GMICLitModule(tiny_gmic(), train_saliency=_PowerCAM(8.0), test_saliency=["cam", _PowerCAM(8.0)])
    with caplog.at_level(logging.WARNING):
        other.on_load_checkpoint(checkpoint)
    assert other.detection_thresholds == {"cam": 0.3}
    assert "validated for _PowerCAM(layers=[]) (power=2.0), not for this run's _PowerCAM(layers=[]) (power=8.0)" in (
        caplog.text
    )
    assert "trained selecting GMIC's patches with _PowerCAM(layers=[]) (power=2.0); this module selects" in caplog.text
    records = checkpoint["detection_methods"].items()  # a checkpoint of before the settings were recorded:
    older = {
        **checkpoint,
        "detection_methods": {name: {k: v for k, v in r.items() if k != "settings"} for name, r in records},
    }
    other.on_load_checkpoint(older)
    assert other.detection_thresholds == {"cam": 0.3, "_powercam": 0.1}


def test_a_callbacks_methods_name_a_method_of_your_own_as_the_models_test_saliency_does() -> None:
    """``DetectionMetrics``' and ``SaliencyOverlays``' ``methods`` took registered names only: a method of your own,
    given to the model by ``class_path``, could not be named there ("unknown saliency method"), so overlays or
    detection of a subset of the test methods could not include it. It is given as the model's ``test_saliency``
    gives it; other settings than the model's method of that name are refused at setup (the maps are the model's)."""
    from jsonargparse import ArgumentParser

    from wsod_mammo.training.callbacks import DetectionMetrics, SaliencyOverlays

    for callback in (DetectionMetrics, SaliencyOverlays):
        parser = ArgumentParser()
        parser.add_class_arguments(callback, "callback")
        value = '[cam, {"class_path": "test_saliency._PowerCAM", "init_args": {"power": 3.0}}]'
        parsed = parser.instantiate_classes(parser.parse_args([f"--callback.methods={value}"]))
        assert parsed.callback.methods == ["cam", "_powercam"]
    module = GMICLitModule(tiny_gmic(), test_saliency=["cam", _PowerCAM(3.0)])
    DetectionMetrics(methods=["cam", _PowerCAM(3.0)]).setup(None, module, "test")  # type: ignore[arg-type]
    assert module._requested_maps == ["cam", "_powercam"]
    with pytest.raises(ValueError, match=r"DetectionMetrics.methods: _PowerCAM\(layers=\[\]\) is not the model's"):
        DetectionMetrics(methods=[_PowerCAM(2.0)]).setup(None, module, "test")  # type: ignore[arg-type]


def test_a_callbacks_own_saliency_pass_selects_patches_as_the_step_does() -> None:
    """A callback's maps that the step did not make come from ``GMICLitModule.saliency_maps``; with the y_fusion
    target its y_fusion (and the maps of the probability target) depend on the patches: those ``train_saliency``
    selects, as in the step's own pass, not CAM's."""
    module = GMICLitModule(tiny_gmic(), train_saliency="xgradcam", saliency_target="y_fusion").eval()
    x = images(3)
    output, maps = module.evaluate(x, ["gradcam"])
    separately = module.saliency_maps(x, ["gradcam"])
    torch.testing.assert_close(separately["y_fusion"], output.y_fusion)
    torch.testing.assert_close(separately["gradcam"], maps["gradcam"])
    cam_patches = module.model.saliency_maps(x, ["gradcam"], target="y_fusion")["y_fusion"]
    assert not torch.allclose(cam_patches, output.y_fusion)  # the two selections differ on these images


class _ShapedCAM(SaliencyMethod):
    """A method of your own holding a function: its ``repr`` is a memory address, another in every process."""

    def __init__(self, power: float = 2.0) -> None:
        self.power = power
        self.shape = lambda x: x**power

    def compute(self, inputs: SaliencyInputs) -> torch.Tensor:
        return self.shape(inputs.cam.float())


def test_a_setting_whose_repr_is_a_memory_address_does_not_drop_the_threshold_in_another_process() -> None:
    """Settings are recorded by ``repr``: a function's names its address, which the test's process does not share
    with the fit's, so every threshold of such a method would be dropped as validated for another one."""
    fitted = GMICLitModule(tiny_gmic(), test_saliency=["cam", _ShapedCAM(2.0)])
    fitted.detection_thresholds = {"cam": 0.3, "_shapedcam": 0.1}
    checkpoint: dict = {}
    fitted.on_save_checkpoint(checkpoint)
    assert set(checkpoint["detection_methods"]["_shapedcam"]["settings"]) == {"power"}
    tested = GMICLitModule(tiny_gmic(), test_saliency=["cam", _ShapedCAM(2.0)])  # another function object
    tested.on_load_checkpoint(checkpoint)
    assert tested.detection_thresholds == {"cam": 0.3, "_shapedcam": 0.1}
    other = GMICLitModule(tiny_gmic(), test_saliency=["cam", _ShapedCAM(3.0)])
    other.on_load_checkpoint(checkpoint)
    assert other.detection_thresholds == {"cam": 0.3}
