"""What only a CUDA GPU can show (skipped without one; ``tests/benchmarks/gpu_check.sh`` runs these first on a lent
GPU; 7 of these passed on an H200, 2026-12-04, the gray local stem's and the gpu.yaml fit's are newer): batches copied
ahead on the pin-memory thread's stream (``copy_ahead``), evaluation with gradient saliency under CUDA graphs
(``compile_networks: reduce-overhead``), training with the whole forward as one CUDA graph
(``compile_training_forward``, with CAM patches, and with GradCAM++'s, whose gradient on h_g is closed form), the
space-to-depth stem and the gray local stem in bf16 on cuDNN, and last a whole fit and test with
configs/trainer/gpu.yaml, which compiles GMIC (gpu_check.sh runs that one after its figures, the others
before them)."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_configs import checkpoint, tiny_config, write_config

from wsod_mammo.cli import main
from wsod_mammo.data.pixel_reads import PixelBatch, pixel_ref
from wsod_mammo.models import GMIC
from wsod_mammo.models.resnet import ACTIVATION_NAMES, ResNet22, local_resnet18
from wsod_mammo.saliency.base import available_saliency_methods
from wsod_mammo.training.module import GMICLitModule

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

GPU_TRAINER = {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"}
# gpu.yaml's data options
GPU_DATA = {"standardize_on": "device", "augment_on": "device", "pixel_reads": "main", "num_workers": 2,
            "pin_memory": True, "compile_device_transform": True, "copy_ahead": True}  # fmt: skip


def test_space_to_depth_stem_on_cudnn_in_bf16_channels_last() -> None:
    torch.manual_seed(0)
    conv = ResNet22().cuda().to(memory_format=torch.channels_last).eval()
    blocks = ResNet22(stem="space_to_depth").cuda().to(memory_format=torch.channels_last).eval()
    blocks.load_state_dict(conv.state_dict())
    x = torch.randn(2, 1, 512, 384, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        expected, found = conv(x), blocks(x)
    for name in ACTIVATION_NAMES:
        scale = expected[name].float().abs().max().item()
        torch.testing.assert_close(found[name].float(), expected[name].float(), rtol=0.05, atol=0.02 * scale, msg=name)


def test_gray_local_stem_on_cudnn_in_bf16_channels_last() -> None:
    """GMIC's ``local_stem: space_to_depth``: the local network's features of the gray patches as of the patches
    repeated as 3 channels, and the first kernel's gradient (float32: summed over 200k positions in another order)."""
    torch.manual_seed(0)
    plain = local_resnet18().cuda().to(memory_format=torch.channels_last).eval()
    gray = local_resnet18(stem="space_to_depth").cuda().to(memory_format=torch.channels_last).eval()
    gray.load_state_dict(plain.state_dict())
    patches = torch.randn(12, 1, 256, 256, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        expected, found = plain(patches.expand(-1, 3, -1, -1)), gray(patches)
    scale = expected.float().abs().max().item()
    torch.testing.assert_close(found.float(), expected.float(), rtol=0.05, atol=0.02 * scale)
    tf32, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
    grads = []
    try:
        for network, x in ((plain, patches.expand(-1, 3, -1, -1)), (gray, patches)):
            network(x).square().mean().backward()
            grads.append(network.conv1.weight.grad)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-2, atol=5e-3 * grads[0].abs().max().item())


def test_cuda_graph_evaluation_gives_eager_maps_for_every_method() -> None:
    """compile_networks reduce-overhead in evaluation: the maps (both targets), patches and probabilities of three
    inputs equal eager mode's, and the first input's results survive the later replays (CUDA graphs write their
    outputs into static memory that the next replay overwrites). With LayerCAM among the methods the global
    network runs eagerly (GMIC._needs_eager), so the four others are also asked alone: the global network's
    gradients then come through its CUDA graphs."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    eager = GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)).cuda().eval()
    graphed = GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64), compile_networks="reduce-overhead").cuda()
    graphed.load_state_dict(eager.state_dict())
    graphed.eval()
    every = available_saliency_methods()
    inputs = [torch.randn(2, 1, 256, 192, device="cuda", generator=torch.Generator("cuda").manual_seed(i))
              for i in range(3)]  # fmt: skip
    for methods in (every, [m for m in every if m != "layercam"]):
        for target in ("y_global", "y_fusion"):
            found = [graphed.evaluate(x, "cam", methods, target=target) for x in inputs]
            for x, (out_g, maps_g) in zip(inputs, found, strict=True):
                out_e, maps_e = eager.evaluate(x, "cam", methods, target=target)
                for name in methods:
                    scale = maps_e[name].abs().max().item()
                    torch.testing.assert_close(maps_g[name], maps_e[name], rtol=1e-3, atol=1e-3 * scale,
                                               msg=f"{target} {name} of {methods}")  # fmt: skip
                assert torch.equal(out_g.patch_boxes, out_e.patch_boxes), target
                torch.testing.assert_close(out_g.y_fusion, out_e.y_fusion, rtol=1e-3, atol=1e-4, msg=target)


def _lit_module(
    device: str, compile_mode: str | bool, train_saliency: str = "cam", channels_last: bool = True
) -> GMICLitModule:
    """A small GMICLitModule in train mode, seed 0's weights; the whole training forward compiled in
    ``compile_mode`` unless it is False."""
    torch.manual_seed(0)
    gmic = GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64), compile_networks=compile_mode,
                compile_training_forward=bool(compile_mode))  # fmt: skip
    module = GMICLitModule(gmic, train_saliency=train_saliency, channels_last=channels_last).to(device).train()
    module.log_dict = lambda *args, **kwargs: None  # no Trainer here
    return module


def _clear_choices_image(model: GMIC, step: int, margin: float = 1e-3) -> torch.Tensor:
    """A (2, 1, 256, 192) batch on ``model``'s device at which GMIC's discrete choices are clear in eager mode: each
    h_g channel's spatial maximum (the fusion's amax) leads its runner-up, and the map's top positions (y_global's
    top t%, CAM's patches) are apart, by ``margin``. At a near tie the gradient jumps (all of it moves to the other
    position): on the CPU one channel's flipped amax moved first_conv's gradient by 1-7% of its norm with the loss
    unchanged, and the compiled network's h_g differs from eager's by ~3.5e-5 here, enough to resolve a tie of 1e-4
    the other way (an H200 run failed so, on first_conv, at 4%). Train mode like the step (batch statistics), on a
    copy (running statistics untouched)."""
    probe = copy.deepcopy(model)
    device = next(model.parameters()).device
    for attempt in range(200):
        image = torch.randn(2, 1, 256, 192, generator=torch.Generator().manual_seed(1000 * step + attempt)).to(device)
        with torch.no_grad():
            h_g = probe.global_network(image)["final"]
            logits = probe.saliency_head(h_g).flatten(2)  # (N, C, h*w)
        first, second = h_g.flatten(2).topk(2, dim=2).values.unbind(-1)  # (N, 256) each
        clear = (first - second >= margin) | (first <= 0)  # a channel that is 0 everywhere passes no gradient
        # the map's ranking down to the top-t% boundary and past the patches (CAM's 1 x 1 windows here)
        ranked = max(round(probe.percent_t * logits.shape[-1]), probe.num_patches) + 1
        ordered = logits.topk(min(ranked, logits.shape[-1]), dim=2).values
        if bool(clear.all()) and bool((ordered[..., :-1] - ordered[..., 1:] >= margin).all()):
            return image
    raise AssertionError(f"no batch with every choice {margin} clear in 200 tries at step {step}")


def _relative_error(found: torch.Tensor, expected: torch.Tensor) -> float:
    return ((found - expected).norm() / expected.norm()).item()


def compare_training_steps(device: str, compile_mode: str, steps: int = 4, train_saliency: str = "cam") -> None:
    """``steps`` training steps of an eager and a compiled module on the same batches, float32: the same losses,
    gradients, BatchNorm statistics and heads kept for the epoch's metrics. After each step all take the same SGD
    update, written in place (parameters keep their addresses, as an optimizer's update does). TF32 off.

    Each gradient may differ from eager's by 1% of its norm, or by 3 times what eager itself gives in the other
    memory format (NCHW), whichever is more: with batch statistics over two images some steps are ill-conditioned,
    and two eager layouts then disagree too (1.7% on a BatchNorm bias at step 0 on the CPU, where inductor's step
    differed as much). Stale weights or a wrong graph move every gradient far more.
    """
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    eager, compiled = _lit_module(device, False, train_saliency), _lit_module(device, compile_mode, train_saliency)
    other_layout = _lit_module(device, False, train_saliency, channels_last=False)
    modules = (eager, compiled, other_layout)
    for step in range(steps):
        image, label = _clear_choices_image(eager.model, step), torch.tensor([[1.0], [0.0]], device=device)
        batch = {"image": image, "label": label}
        losses = []
        for module in modules:
            loss = module.training_step(batch, step)
            module.zero_grad(set_to_none=True)
            loss.backward()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=1e-4), step
        over = []  # every parameter over its allowance, for the message
        named = zip(compiled.named_parameters(), eager.parameters(), other_layout.parameters(), strict=True)
        for (name, p), q, r in named:
            error, noise = _relative_error(p.grad, q.grad), _relative_error(r.grad, q.grad)
            if error > max(1e-2, 3 * noise):
                over.append((round(error, 5), round(noise, 5), name))
        assert not over, f"step {step}: {len(over)} gradients off (error, NCHW eager's), worst {sorted(over)[-8:]}"
        for (name, b), c in zip(compiled.named_buffers(), eager.buffers(), strict=True):
            torch.testing.assert_close(b, c, rtol=1e-4, atol=1e-5, msg=f"step {step} {name}")
        with torch.no_grad():
            for p, q, r in zip(compiled.parameters(), eager.parameters(), other_layout.parameters(), strict=True):
                q -= 0.01 * q.grad
                p.copy_(q)
                r.copy_(q)
    for kept, expected in zip(compiled._train_outputs, eager._train_outputs, strict=True):
        for head, head_eager in zip(kept, expected, strict=True):
            torch.testing.assert_close(head, head_eager, rtol=1e-4, atol=1e-5)


def test_the_training_forward_as_one_cuda_graph_trains_as_eager() -> None:
    """compile_training_forward under reduce-overhead (inductor; CUDA graphs record, then replay the forward and the
    backward): eager's losses, gradients, statistics and kept heads (copies: the next replay overwrites the graph's
    outputs), step after step."""
    compare_training_steps("cuda", "reduce-overhead")


def _gpu_config(directory: Path, data_root: Path, npy_cache: Path, **data: object) -> dict:
    """tiny_config on the GPU with gpu.yaml's data options; a CSV logger (the lent GPU machine has no wandb)."""
    settings = tiny_config(directory, data_root, cache_dir=str(npy_cache), **(GPU_DATA | data))
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger",
              "init_args": {"save_dir": str(directory / "runs"), "name": "wsod-test"}}  # fmt: skip
    settings["trainer"] |= GPU_TRAINER | {"max_epochs": 2, "logger": logger}
    return settings


def test_copy_ahead_feeds_the_model_the_batches_copied_in_the_step(tmp_path: Path, data_root: Path, npy_cache: Path):
    """Two epochs of every train and val batch, as the model receives them: the same with and without copy_ahead
    (a copy used before it finished, or memory the copy stream reused too early, would change them)."""
    sums = {}
    for copy_ahead in (False, True):
        settings = _gpu_config(tmp_path / str(copy_ahead), data_root, npy_cache, copy_ahead=copy_ahead)
        path = tmp_path / f"sums_{copy_ahead}.pt"
        settings["trainer"]["callbacks"].append({"class_path": "cli_configs.BatchSums",
                                                 "init_args": {"path": str(path)}})  # fmt: skip
        main(["fit", "--config", str(write_config(tmp_path / f"{copy_ahead}.yaml", settings))])
        sums[copy_ahead] = torch.load(path)
    assert len(sums[True]["train"]) > 2 and len(sums[True]["val"]) > 1
    assert sums[True] == sums[False]


def test_wsod_test_under_cuda_graphs_reports_what_eager_reports(tmp_path: Path, data_root: Path, npy_cache: Path):
    """The user's command: `wsod test` with compile_networks reduce-overhead gives, for each of the five methods,
    the boxes and scores the eager run gives (same checkpoint and data; float32, so rounding cannot move a box)."""
    settings = _gpu_config(tmp_path / "fit", data_root, npy_cache)
    settings["trainer"]["max_epochs"] = 1
    config = write_config(tmp_path / "fit.yaml", settings)
    main(["fit", "--config", str(config)])
    reports = {}
    for mode in ("false", "reduce-overhead"):
        out = tmp_path / f"test_{mode}"
        ckpt = str(checkpoint(tmp_path / "fit"))
        main(["test", "--config", str(config), "--model.init_args.model.init_args.compile_networks", mode,
              "--trainer.logger.init_args.save_dir", str(out), "--trainer.precision", "32",
              "--ckpt_path", ckpt])  # fmt: skip
        (reports[mode],) = [json.loads(p.read_text()) for p in out.glob("**/detection_images.json")]
    eager, graphed = reports["false"]["subsets"]["mass"], reports["reduce-overhead"]["subsets"]["mass"]
    assert set(eager) == set(graphed) == set(available_saliency_methods())
    for name, boxes in eager.items():
        assert graphed[name]["box_image"] == boxes["box_image"] and graphed[name]["box_tp"] == boxes["box_tp"], name
        assert graphed[name]["box_scores"] == pytest.approx(boxes["box_scores"], rel=1e-3, abs=1e-4), name


def test_the_training_forward_with_gradcampp_patches_as_one_cuda_graph_trains_as_eager() -> None:
    """The same with GradCAM++ selecting the patches: its map, from the closed-form gradient on h_g, in the graph."""
    compare_training_steps("cuda", "reduce-overhead", train_saliency="gradcampp")


def test_the_pin_memory_thread_reads_pixel_reads_main_into_pinned_memory(tmp_path: Path) -> None:
    """`pixel_reads: main` reads a batch straight into pinned memory when the loader pins (dropping that read passed
    every CPU test: only a CUDA build pins)."""
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.uint16).reshape(3, 4))
    ref = pixel_ref(np.load(tmp_path / "a.npy", mmap_mode="r"))
    pinned = PixelBatch([ref, ref]).pin_memory()
    assert pinned.is_pinned() and pinned.shape == (2, 1, 3, 4)


def whole_gpu_run(directory: Path, data_root: Path, npy_cache: Path, *extra: str) -> dict:
    """`wsod fit` (two epochs, each validated) then `wsod test --ckpt_path best` with the tiny config composed with
    configs/trainer/gpu.yaml as it is (its compiled GMIC, its data options), as a user runs them; ``extra`` options go
    to both. Returns the test's detection report."""
    config = str(write_config(directory / "tiny.yaml", _gpu_config(directory, data_root, npy_cache)))
    gpu_yaml = str(Path(__file__).resolve().parents[1] / "configs" / "trainer" / "gpu.yaml")
    both = ["--config", config, "--config", gpu_yaml, "--data.num_workers", "2", *extra]  # not gpu.yaml's 4: tiny set
    main(["fit", *both, "--trainer.max_epochs", "2"])
    (metrics,) = list((directory / "runs").glob("**/metrics.csv"))
    rows = list(csv.DictReader(metrics.read_text().splitlines()))
    validated = sorted(int(r["epoch"]) for r in rows if r.get("val/fusion/accuracy"))  # each epoch's validation
    main(["test", *both, "--ckpt_path", str(checkpoint(directory, "best")),
          "--trainer.logger.init_args.save_dir", str(directory / "test")])  # fmt: skip
    (report,) = [json.loads(p.read_text()) for p in (directory / "test").glob("**/detection_images.json")]
    return {"validated_epochs": validated, "report": report}


def test_the_gpu_config_fits_validates_and_tests_with_its_compiled_gmic(
    tmp_path: Path, data_root: Path, npy_cache: Path
) -> None:
    """gpu.yaml compiles GMIC (CUDA graphs; the training forward as one graph; the space-to-depth stem): a whole fit,
    where training graphs and validation's alternate epoch after epoch, then a test of its best.ckpt, end with every
    method's boxes (the compiled pieces are each checked against eager above; this is their use together)."""
    run = whole_gpu_run(tmp_path, data_root, npy_cache)
    assert set(run["report"]["subsets"]["mass"]) == set(available_saliency_methods())
    assert run["validated_epochs"] == [0, 1]
