"""ResNet-22 (GMIC's global network): size chain, activation names, NYU-compatible keys, local ResNet-18."""

import pytest
import torch
import torch.nn.functional as F

from wsod_mammo.models.resnet import (
    ACTIVATION_NAMES,
    GrayStemConv,
    ResNet22,
    global_map_size,
    local_resnet18,
    space_to_depth_conv7x7s2,
)


@pytest.mark.parametrize(("height", "width"), [(128, 192), (256, 64), (320, 128)])
def test_size_chain_is_one_64th(height: int, width: int) -> None:
    net = ResNet22().eval()
    with torch.no_grad():
        acts = net(torch.randn(1, 1, height, width))
    assert list(acts) == list(ACTIVATION_NAMES)
    assert acts["final"].shape == (1, 256, height // 64, width // 64)
    assert acts["stage3"].shape == (1, 64, height // 16, width // 16)
    assert global_map_size(height, width) == (height // 64, width // 64)
    assert (acts["final"] >= 0).all()  # post BN + ReLU


def test_paper_input_size_maps_to_46_by_30() -> None:
    assert global_map_size(2944, 1920) == (46, 30)


@pytest.mark.parametrize(("height", "width"), [(100, 128), (128, 0), (32, 64), (2944, 1900)])
def test_sizes_that_do_not_downsample_evenly_are_rejected(height: int, width: int) -> None:
    with pytest.raises(ValueError, match="multiples of 64"):
        global_map_size(height, width)


def test_keys_follow_nyu_ds_net_layout() -> None:
    keys = ResNet22().state_dict()
    assert keys["first_conv.weight"].shape == (16, 1, 7, 7)
    assert keys["layer_list.0.0.downsample.0.weight"].shape == (16, 16, 1, 1)  # stage 0 has a projection too
    assert keys["layer_list.4.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    assert "layer_list.0.1.downsample.0.weight" not in keys
    assert keys["final_bn.weight"].shape == (256,)
    assert len([k for k in keys if k.startswith("layer_list.")]) == 5 * 2 * 12 + 5


def test_preactivation_block_shortcut_uses_preactivated_input() -> None:
    net = ResNet22().eval()
    block = net.layer_list[1][0]
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        pre = torch.relu(block.bn1(x))
        expected = block.conv2(torch.relu(block.bn2(block.conv1(pre)))) + block.downsample(pre)
        assert torch.allclose(block(x), expected)


def test_local_resnet18_pools_to_512() -> None:
    net = local_resnet18().eval()
    with torch.no_grad():
        out = net(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 512)
    assert "fc.weight" not in net.state_dict() and "layer4.1.conv2.weight" in net.state_dict()


def test_map_cell_receptive_field_is_centred_where_map_cell0_center_says() -> None:
    """The gradient of one map cell with respect to the input is symmetric about pixel 64 r + MAP_CELL0_CENTER."""
    from wsod_mammo.models.resnet import MAP_CELL0_CENTER, ResNet22

    torch.manual_seed(0)
    network = ResNet22(in_channels=1).eval()
    for module in network.modules():  # uniform kernels: symmetric, so only the strides and paddings place the field
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data.fill_(1.0 / module.weight[0].numel())
    x = torch.rand(1, 1, 512, 512, requires_grad=True)  # max-pool ties would bias a constant input
    (gradient,) = torch.autograd.grad(network(x)["final"][0, :, 3, 4].sum(), x)
    weights = gradient[0, 0].abs()
    rows, cols = weights.sum(1), weights.sum(0)  # (H,), (W,) profiles
    index = torch.arange(512, dtype=torch.float64)
    centre_y = float((rows.double() * index).sum() / rows.sum())
    centre_x = float((cols.double() * index).sum() / cols.sum())
    assert abs(centre_y - (3 * 64 + MAP_CELL0_CENTER)) < 4 and abs(centre_x - (4 * 64 + MAP_CELL0_CENTER)) < 4
    resize_y, resize_x = 3 * 64 + 31.5, 4 * 64 + 31.5  # where plain resizing of the map would put the cell
    assert abs(centre_y - resize_y) > 20 and abs(centre_x - resize_x) > 20


@pytest.mark.parametrize(
    ("channels", "height", "width", "channels_last"),
    [(1, 64, 96, False), (1, 64, 96, True), (1, 37, 50, False), (3, 20, 33, True), (2, 7, 8, False)],
)
def test_space_to_depth_stem_is_the_7x7_stride_2_convolution(channels, height, width, channels_last) -> None:
    """Odd and even sizes, several input channels, both memory formats: output and both gradients equal."""
    torch.manual_seed(0)
    x = torch.randn(2, channels, height, width, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, channels, 7, 7, dtype=torch.float64, requires_grad=True)
    if channels_last:
        weight = weight.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    expected = F.conv2d(x, weight, stride=2, padding=3)
    found = space_to_depth_conv7x7s2(x, weight)
    assert found.shape == expected.shape
    torch.testing.assert_close(found, expected)
    upstream = torch.randn_like(expected)
    grads_expected = torch.autograd.grad(expected, (x, weight), upstream)
    grads_found = torch.autograd.grad(found, (x, weight), upstream)
    for g_found, g_expected in zip(grads_found, grads_expected, strict=True):
        torch.testing.assert_close(g_found, g_expected)


def test_space_to_depth_stem_gives_the_network_the_same_activations_and_keys() -> None:
    torch.manual_seed(0)
    conv = ResNet22().eval()
    blocks = ResNet22(stem="space_to_depth").eval()
    blocks.load_state_dict(conv.state_dict())  # the same keys and shapes: NYU's checkpoints load into either
    assert list(blocks.state_dict()) == list(conv.state_dict())
    x = torch.randn(2, 1, 192, 128)
    for net in (conv, blocks):
        net.to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, found = conv(x), blocks(x)
    for name in ACTIVATION_NAMES:
        torch.testing.assert_close(found[name], expected[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_gray_local_stem_is_the_convolution_of_the_patch_repeated_as_three_channels(channels_last: bool) -> None:
    """Output, the patch's gradient and each channel's kernel gradient equal the 3-channel network's (float64), with
    the same keys and parameters; a 3-channel input still runs as the plain convolution."""
    torch.manual_seed(0)
    plain, gray = local_resnet18().double(), local_resnet18(stem="space_to_depth").double()
    assert isinstance(gray.conv1, GrayStemConv) and not isinstance(plain.conv1, GrayStemConv)
    gray.load_state_dict(plain.state_dict())
    assert list(gray.state_dict()) == list(plain.state_dict())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for network in (plain, gray):
        network.train().to(memory_format=memory_format)
    x = torch.randn(3, 1, 70, 52, dtype=torch.float64, requires_grad=True)
    expected, found = plain(x.expand(-1, 3, -1, -1)), gray(x)
    torch.testing.assert_close(found, expected)
    upstream = torch.randn_like(expected)
    grads_expected = torch.autograd.grad(expected, (x, plain.conv1.weight), upstream)
    grads_found = torch.autograd.grad(found, (x, gray.conv1.weight), upstream)
    for g_found, g_expected in zip(grads_found, grads_expected, strict=True):
        torch.testing.assert_close(g_found, g_expected)
    rgb = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    torch.testing.assert_close(gray.eval()(rgb), plain.eval()(rgb))
    with pytest.raises(ValueError, match="GrayStemConv: expected 1 or 3 input channels, found 2"):
        gray(rgb[:, :2])
    with pytest.raises(ValueError, match=r"GrayStemConv: expected a 7x7 convolution, .* found kernel \(3, 3\)"):
        GrayStemConv(3, 8, 3, 2, 1, bias=False)  # another convolution than space_to_depth_conv7x7s2's


def test_unknown_stem_layout_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="stem must be one of .*'space_to_depth'.*found 'pixel_shuffle'"):
        ResNet22(stem="pixel_shuffle")


@pytest.mark.parametrize("record_from", ["stage3", "final"])
def test_recording_from_an_activation_gives_its_gradients_without_the_graph_before_it(record_from: str) -> None:
    """``record_from``: the same activations; those before it carry no graph, it is a leaf, and what is
    differentiated after it reaches it (and the later layers) exactly as through the whole graph."""
    torch.manual_seed(0)
    net = ResNet22().eval()
    x = torch.randn(2, 1, 256, 192)
    whole, trimmed = net(x), net(x, record_from=record_from)
    later = list(ACTIVATION_NAMES)[list(ACTIVATION_NAMES).index(record_from) :]
    for name in ACTIVATION_NAMES:
        torch.testing.assert_close(trimmed[name], whole[name], rtol=0, atol=0, msg=name)
        assert trimmed[name].requires_grad == (name in later), name
    assert trimmed[record_from].grad_fn is None
    for acts in (whole, trimmed):
        acts["score"] = (acts["final"].amax(dim=(2, 3)) * torch.arange(256)).sum()
    for name in later:
        expected = torch.autograd.grad(whole["score"], whole[name], retain_graph=True)[0]
        found = torch.autograd.grad(trimmed["score"], trimmed[name], retain_graph=True)[0]
        torch.testing.assert_close(found, expected, rtol=0, atol=0, msg=name)
    with torch.no_grad():
        assert not any(a.requires_grad for a in net(x, record_from=record_from).values())
    with pytest.raises(ValueError, match="record_from must be one of .* found 'stage9'"):
        net(x, record_from="stage9")
