"""Cost of all five saliency maps from `GMIC.saliency_maps` (one forward + one autograd call), as a ratio to a
plain GMIC forward, side by side with pytorch-grad-cam computing the four gradient maps with its own calls; and
an evaluation step's cost (classification + all five maps) done as two passes vs one `GMIC.evaluate` pass; and
the GradCAM family's three maps from the closed-form gradient on h_g (no autograd graph) vs `torch.autograd.grad`;
all five maps with the autograd graph recorded from the input vs from LayerCAM's earliest layer (time and the bytes
autograd saves for the backward).

    python tests/benchmarks/bench_saliency.py                 # 2944 x 1920, batch 2, CPU, 2 threads
    python tests/benchmarks/bench_saliency.py --height 512 --width 384 --batch 4
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch
from timing import model_arguments, start, timed, timed_side_by_side

from wsod_mammo.models import GMIC, GlobalScore
from wsod_mammo.saliency import compute_saliency, get_saliency_method

METHODS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam"]
ON_H_G = ["gradcam", "gradcampp", "xgradcam"]  # the methods whose gradient GMIC writes in closed form


def grad_cam_runner(model: GMIC, x: torch.Tensor, feature_size: bool) -> Callable[[], None] | None:
    """pytorch-grad-cam's GradCAM, GradCAM++, XGradCAM (on `final`) and LayerCAM (stages 3-5), one call each."""
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    net, wrapper = model.global_network, GlobalScore(model)
    cams = [
        cls(model=wrapper, target_layers=[net.final_relu]) for cls in (pgc.GradCAM, pgc.GradCAMPlusPlus, pgc.XGradCAM)
    ]
    cams.append(pgc.LayerCAM(model=wrapper, target_layers=list(net.layer_list[2:])))
    if feature_size:
        h, w = x.shape[-2] // 64, x.shape[-1] // 64
        for cam in cams:
            cam.get_target_width_height = lambda _x, size=(w, h): size
    targets = [ClassifierOutputTarget(0)] * x.shape[0]

    def run() -> None:
        for cam in cams:
            cam(input_tensor=x, targets=targets)

    return run


def saved_bytes(run: Callable[[], object], model: torch.nn.Module) -> int:
    """Bytes of the tensors autograd saves for the backward while ``run`` records its graph (not counting the
    model's parameters, which it saves by reference)."""
    total, parameters = 0, {p.data_ptr() for p in model.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if tensor.data_ptr() not in parameters:
            total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model_arguments(parser, iters=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", default="cam", help="train_saliency of the evaluation-step comparison")
    args = parser.parse_args()
    start(args)
    model = GMIC().to(args.device).eval()
    x = torch.randn(args.batch, 1, args.height, args.width, device=args.device)

    def plain_forward() -> None:
        with torch.no_grad():
            model(x)

    def global_forward() -> None:
        with torch.no_grad():
            model.global_pass(x)

    t_fwd = timed(plain_forward, args.device, args.iters)
    t_global = timed(global_forward, args.device, args.iters)
    t_ours = timed(lambda: model.saliency_maps(x, METHODS), args.device, args.iters)
    print(
        f"{args.height}x{args.width}, batch {args.batch}, {args.device}, {args.threads} threads, median of {args.iters}"
    )
    print(f"plain GMIC forward (global + local):   {t_fwd:7.2f} s")
    print(f"global network forward only:           {t_global:7.2f} s")
    print(f"ours, all 5 maps (1 fwd + 1 grad):     {t_ours:7.2f} s = {t_ours / t_fwd:4.2f} GMIC forwards")

    def two_passes() -> None:  # classification, then a separate saliency pass (the earlier evaluation step)
        with torch.no_grad():
            model(x, args.patch)
        model.saliency_maps(x, METHODS)

    t_two = timed(two_passes, args.device, args.iters)
    t_one = timed(lambda: model.evaluate(x, args.patch, METHODS), args.device, args.iters)
    print(f"evaluation step, patches by {args.patch}, classification + 5 maps:")
    print(f"  classify, then a saliency pass:      {t_two:7.2f} s")
    print(f"  one GMIC.evaluate pass:              {t_one:7.2f} s = {t_two / t_one:4.2f}x faster")

    def maps(names: list[str], record_from: str | None = None, closed_form: bool = True) -> dict[str, torch.Tensor]:
        """The maps of ``names`` with the graph recorded from ``record_from``; h_g's gradient by autograd unless
        ``closed_form`` (how the GradCAM family's maps were made before the closed form)."""
        with torch.enable_grad():
            g = model.global_pass(x, record_from=record_from)
            methods = [get_saliency_method(m) for m in names]
            known = model._known_gradients(g, methods) if closed_form else None
            return compute_saliency(methods, g.cam, g.activations, g.score, known_gradients=known)

    def by_autograd() -> dict[str, torch.Tensor]:
        return maps(ON_H_G, closed_form=False)

    closed, autograd = model.saliency_maps(x, ON_H_G), by_autograd()
    for name in ON_H_G:
        torch.testing.assert_close(closed[name], autograd[name], rtol=1e-5, atol=1e-7, msg=name)
    t_autograd, t_closed = timed_side_by_side(
        {"autograd": by_autograd, "closed": lambda: model.saliency_maps(x, ON_H_G)}, args.device, args.iters
    ).values()
    print("GradCAM, GradCAM++, XGradCAM (the same maps, checked):")
    print(f"  global forward in grad mode + torch.autograd.grad: {t_autograd:7.2f} s")
    print(
        f"  closed-form gradient, no graph recorded:           {t_closed:7.2f} s = {t_autograd / t_closed:4.2f}x faster"
    )

    def five_maps(record_from: str | None) -> dict[str, torch.Tensor]:  # the evaluation's maps, graph from here
        return maps(METHODS, record_from)

    whole, trimmed = five_maps(None), five_maps("stage3")
    for name in METHODS:
        torch.testing.assert_close(trimmed[name], whole[name], rtol=0, atol=0, msg=name)
    t_whole, t_trimmed = timed_side_by_side(
        {"whole": lambda: five_maps(None), "trimmed": lambda: five_maps("stage3")}, args.device, args.iters
    ).values()
    saved = {start: saved_bytes(functools.partial(five_maps, start), model) for start in (None, "stage3")}
    print("all five maps (the same, checked), the autograd graph recorded:")
    whole_label, trimmed_label = "from the input:", "from stage3 (LayerCAM's first):"
    print(f"  {whole_label:34}{t_whole:7.2f} s, {saved[None] / 2**20:8.1f} MiB saved for backward")
    print(
        f"  {trimmed_label:34}{t_trimmed:7.2f} s, {saved['stage3'] / 2**20:8.1f} MiB saved "
        f"= {t_whole / t_trimmed:4.2f}x faster, {saved[None] / max(saved['stage3'], 1):5.1f}x less saved"
    )
    for feature_size in (True, False):
        run = grad_cam_runner(model, x, feature_size)
        if run is None:
            print("pytorch-grad-cam not installed: comparison skipped")
            break
        t_pgc = timed(run, args.device, args.iters)
        where = "at feature resolution" if feature_size else "resized to the input (its default)"
        print(
            f"pytorch-grad-cam, 4 gradient maps {where}: {t_pgc:7.2f} s = {t_pgc / t_fwd:4.2f} GMIC forwards; "
            f"ours is {t_pgc / t_ours:4.1f}x faster"
        )


if __name__ == "__main__":
    main()
