"""GMIC (Shen et al., "An interpretable classifier for high-resolution breast cancer screening images utilizing
weakly supervised localization", MedIA 2021): global ResNet-22 + saliency head, top-t% aggregation, greedy
patch selection, local ResNet-18 on the patches, gated-attention MIL and a fusion layer.

The saliency method that selects the patches is pluggable (`forward(x, patch_saliency=...)`); with a gradient
method, its gradients are taken inside the forward and the map is detached, while `y_global` and `saliency` always
come from the CAM map A. The gradient of `y_global`'s score with respect to h_g (the layer GradCAM, GradCAM++ and
XGradCAM read) is written in closed form (`_score_gradient_of_h_g`): no autograd call, so a training forward with
these patch methods is one graph for `torch.compile`; other layers (LayerCAM's stages) take `torch.autograd.grad`.

Gradient methods differentiate the target's raw score by default (`gradient_target="logit"`): for `y_global`
the mean of the top t% head logits (the positions of A's top t%, sigmoid being monotone), for `y_fusion` the
fusion layer's logit. This is what Grad-CAM and Grad-CAM++ prescribe (the score before the softmax / sigmoid) and
what pytorch-grad-cam differentiates for a classifier that outputs logits. The probability saturates: its
gradient carries a factor s(1 - s) per position, which weights the most confident cells least, shrinks maps of
confident positives to ~1e-11 and is exactly 0 once float32 rounds s to 1 (logit above ~17), so every gradient
map of y_global vanishes (y_fusion's keep sigmoid(-logit) there, ~1e-8: `head_sigmoid`).
`gradient_target="probability"` differentiates the probabilities themselves (GMIC's outputs, as a pytorch-grad-cam
wrapper around GMIC's forward would).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn

from wsod_mammo.models import roi
from wsod_mammo.models.resnet import (
    ACTIVATION_NAMES,
    MAP_CELL0_CENTER,
    ResNet22,
    StemLayout,
    global_map_size,
    local_resnet18,
)
from wsod_mammo.saliency.base import SaliencyMethod, distinct_methods, get_saliency_method
from wsod_mammo.saliency.compute import check_layers, compute_saliency, compute_saliency_list, required_layers

log = logging.getLogger(__name__)

LOCAL_DIM = 512  # ResNet-18's pooled feature size
ATTENTION_DIM = 128


class GMICOutput(NamedTuple):
    """GMIC's outputs. Probabilities in [0, 1] as float32; boxes xyxy in input pixels."""

    y_global: Tensor  # (N, C)
    y_local: Tensor  # (N, C)
    y_fusion: Tensor  # (N, C)
    saliency: Tensor  # (N, C, h, w) the CAM map A = sigmoid(head logits)
    patch_boxes: Tensor  # (N, K, 4)
    patch_attention: Tensor  # (N, K), sums to 1 over K


class GlobalPass(NamedTuple):
    """The global network's part of GMIC (what saliency methods and pytorch-grad-cam wrappers need)."""

    activations: dict[str, Tensor]  # ACTIVATION_NAMES -> tensors, `final` = h_g (N, 256, h, w)
    cam: Tensor  # (N, C, h, w)
    y_global: Tensor  # (N, C)
    score: Tensor  # (N, C) what gradient methods differentiate for y_global (its logit or y_global itself)
    score_positions: Tensor  # (N, C, top) the flattened map positions `score` averages (its topk's indices)
    pooled: Tensor  # (N, 256) h_g's spatial maximum, what the fusion reads (taken before the local network runs)


CompileMode = Literal["default", "reduce-overhead", "max-autotune"]
#: How patch selection orders windows tied for the largest mean of the patch map (GMIC's ``patch_ties``).
PatchTies = Literal["first", "cam"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
#: The options that compile GMIC's networks: how a run runs, not what its weights are (eager: both False).
COMPILE_OPTIONS = ("compile_training_forward", "compile_networks")
#: The options that say how GMIC computes, not what its weights are (the stem's layout too): a checkpoint's recorded
#: value gives way to the command's.
RUNTIME_OPTIONS = (*COMPILE_OPTIONS, "global_stem", "local_stem")


class GMIC(nn.Module):
    """GMIC for `num_classes` image-level labels on (N, 1, H, W) standardized images (H, W multiples of 64).

    Args:
        num_classes: C, the number of labels (1 for `[Mass]`; NYU's checkpoints have 2: benign, malignant).
        percent_t: t, the share of saliency-map positions averaged into `y_global` (NYU: 0.02 to 0.1).
        num_patches: K, the patches selected per image.
        crop_shape: patch size (height, width) in input pixels; must fit in the input.
        post_processing_dim: channels of h_g (the global network's last stage; 256 in GMIC, multiple of 16).
        compile_networks: wrap the global and local networks with `torch.compile` (state-dict keys unchanged):
            `True` or a mode, `default`, `reduce-overhead` (CUDA graphs: static shapes, the launch-bound step of a
            fast GPU) or `max-autotune`. Patch selection stays eager (data-dependent indexing), and so does the
            global network in a pass whose gradient method reads an intermediate layer (LayerCAM).
        gradient_target: what gradient saliency methods differentiate: the target's raw score (`logit`) or its
            probability (`probability`); see the module docstring.
        global_stem: how the global network computes its 7x7/2 first convolution of the 1-channel image: `conv`,
            or `space_to_depth` (a 4x4 convolution of 2x2 pixel blocks; same weights and checkpoints, same result up
            to rounding; `models.resnet.space_to_depth_conv7x7s2`).
        local_stem: how the local network reads a patch: `conv`, the gray patch repeated as 3 channels into its
            first convolution (NYU's way), or `space_to_depth`, the patch itself into that convolution with the 3
            channels' kernels summed, by 2x2 pixel blocks (same weights and checkpoints, same result up to rounding;
            `models.resnet.GrayStemConv`).
        compile_training_forward: also compile the whole training forward (both networks, the patch map, patch
            selection, crops, attention, fusion) as ONE graph, in `compile_networks`' mode (which it needs): under
            `reduce-overhead` a training step is then one CUDA graph forward and one backward, without the eager
            patch selection and its backward between the networks' graphs. Used in train mode with gradients on and
            a patch method that needs no autograd call (CAM, GradCAM, GradCAM++, XGradCAM: their gradient on h_g is
            closed form); LayerCAM's stage layers and evaluation keep the compiled networks. Its outputs may be
            CUDA-graph memory that the next step overwrites: clone what must outlive the step.
        patch_ties: how patch selection orders windows that tie for the largest mean of the patch map: `first`,
            the first in row-major order (NYU's rule), or `cam`, the one CAM's map A rates highest. A gradient map
            is 0 wherever its weighted activations are negative (GradCAM's on h_g is ReLU of the head's logits, 0
            on an image the model calls negative): with `first` such an image's K patches are one corner window K
            times; with `cam` they are CAM's picks there. Identical picks wherever the patch map has no ties
            (always with CAM).
    """

    def __init__(
        self,
        num_classes: int = 1,
        percent_t: float = 0.02,
        num_patches: int = 6,
        crop_shape: tuple[int, int] = (256, 256),
        post_processing_dim: int = 256,
        compile_networks: bool | CompileMode = False,
        gradient_target: Literal["logit", "probability"] = "logit",
        global_stem: StemLayout = "conv",
        compile_training_forward: bool = False,
        local_stem: StemLayout = "conv",
        patch_ties: PatchTies = "first",
    ) -> None:
        super().__init__()
        if num_classes < 1 or num_patches < 1 or not 0 < percent_t <= 1:
            raise ValueError(
                "GMIC: expected num_classes >= 1, num_patches >= 1 and 0 < percent_t <= 1, found "
                f"num_classes={num_classes}, num_patches={num_patches}, percent_t={percent_t}"
            )
        if gradient_target not in ("logit", "probability"):
            raise ValueError(f"GMIC: gradient_target must be 'logit' or 'probability', found {gradient_target!r}")
        if patch_ties not in get_args(PatchTies):
            raise ValueError(f"GMIC: patch_ties must be one of {get_args(PatchTies)}, found {patch_ties!r}")
        if post_processing_dim < 16 or post_processing_dim % 16:
            raise ValueError(
                f"GMIC: expected post_processing_dim to be a positive multiple of 16, found {post_processing_dim}"
            )
        if len(crop_shape) != 2 or min(int(side) for side in crop_shape) < 1:
            raise ValueError(f"GMIC: expected crop_shape [height, width] of at least 1 pixel each, found {crop_shape}")
        self.num_classes = num_classes
        self.percent_t = percent_t
        self.gradient_target = gradient_target
        self.num_patches = num_patches
        self.patch_ties = patch_ties
        self.crop_shape = (int(crop_shape[0]), int(crop_shape[1]))
        self.global_network = ResNet22(in_channels=1, width=post_processing_dim // 16, stem=global_stem)
        self.saliency_head = nn.Conv2d(post_processing_dim, num_classes, kernel_size=1, bias=False)
        self.local_network = local_resnet18(stem=local_stem)
        self.local_stem = local_stem
        self.attention_v = nn.Linear(LOCAL_DIM, ATTENTION_DIM, bias=False)
        self.attention_u = nn.Linear(LOCAL_DIM, ATTENTION_DIM, bias=False)
        self.attention_w = nn.Linear(ATTENTION_DIM, 1, bias=False)
        self.classifier = nn.Linear(LOCAL_DIM, num_classes, bias=False)
        self.fusion = nn.Linear(post_processing_dim + LOCAL_DIM, num_classes)
        if compile_networks not in (False, True, *COMPILE_MODES):
            raise ValueError(
                f"GMIC: compile_networks must be a bool or one of {COMPILE_MODES}, found {compile_networks!r}"
            )
        if compile_training_forward and not compile_networks:
            raise ValueError("GMIC: compile_training_forward compiles in compile_networks' mode: set compile_networks")
        self.networks_compiled = bool(compile_networks)
        # an unbound function (GMIC passed as its argument), so copying the module copies no compiled state
        self._compiled_forward_in_one_graph = None
        if compile_networks:
            mode = "default" if compile_networks is True else compile_networks
            self.global_network.compile(mode=mode)
            self.local_network.compile(mode=mode)
            if compile_training_forward:  # fullgraph: a graph break would silently split the step again
                self._compiled_forward_in_one_graph = torch.compile(GMIC._forward_in_one_graph, mode=mode,
                                                                    fullgraph=True)  # fmt: skip

    @property
    def map_cell0_center(self) -> float:
        """Input pixel on which saliency-map cell 0's receptive field is centred (cell r: ``r * 64 + this``)."""
        return MAP_CELL0_CENTER

    @property
    def activation_names(self) -> tuple[str, ...]:
        """Layer names that saliency methods may read (see `models.resnet.ACTIVATION_NAMES`)."""
        return ACTIVATION_NAMES

    # ------------------------------------------------------------------ pieces
    def _check_input(self, x: Tensor) -> tuple[int, int]:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"GMIC input: expected a tensor of shape (N, 1, H, W), found {tuple(x.shape)}")
        height, width = x.shape[-2:]
        map_size = global_map_size(height, width)
        if height < self.crop_shape[0] or width < self.crop_shape[1]:
            raise ValueError(f"GMIC input: crop_shape {self.crop_shape} does not fit in the {height} x {width} input")
        return map_size

    def global_pass(self, x: Tensor, eager: bool = False, record_from: str | None = None) -> GlobalPass:
        """x (N, 1, H, W) -> activations, CAM map A (N, C, h, w), y_global (N, C) (mean of A's top t%) and the
        score gradient methods differentiate (the mean of the top t% logits, or y_global). ``eager``: run a
        compiled global network eagerly (see ``_needs_eager``). ``record_from``: record the autograd graph from
        that activation on only (``ResNet22.forward``; eagerly), for maps that need no gradient before it."""
        self._check_input(x)
        # forward() itself bypasses the compiled __call__ that nn.Module.compile installs (torch.compiler.set_stance
        # would too, but needs torch >= 2.6; the package supports 2.2)
        eager = eager or (record_from is not None and self.networks_compiled)  # the compiled graph is whole
        network = self.global_network.forward if eager else self.global_network
        activations = network(x) if record_from is None else network(x, record_from)
        logits = _in_float32(self.saliency_head, activations["final"])  # (N, C, h, w)
        cam = torch.sigmoid(logits)
        # h * w first, then t: the reference implementation's order, which rounds map sizes where t * h * w is a
        # half (23 x 15 at t = 0.1, a 1472 x 960 input) as its y_global does; t * h first rounds some the other way
        top = max(1, round(cam.shape[-2] * cam.shape[-1] * self.percent_t))
        top_cam = cam.flatten(2).topk(top, dim=2)
        y_global = top_cam.values.mean(dim=2)  # (N, C)
        # a compiled network's outputs under reduce-overhead are CUDA-graph memory that the local network's graph
        # overwrites when no backward is pending (no_grad): everything read from them is taken here, before it runs
        pooled = activations["final"].amax(dim=(2, 3))
        if self.gradient_target == "probability":
            return GlobalPass(activations, cam, y_global, y_global, top_cam.indices, pooled)
        top_logits = logits.flatten(2).topk(top, dim=2)
        return GlobalPass(activations, cam, y_global, top_logits.values.mean(dim=2), top_logits.indices, pooled)

    def _score_gradient_of_h_g(self, g: GlobalPass) -> Tensor:
        """d g.score[:, c] / d h_g in closed form, (N, C, 256, h, w) float32, detached.

        The score is the mean, over the t% positions p in ``g.score_positions``, of the head's 1x1 convolution
        ``sum_k W_ck h_g[k, p]`` (or of its sigmoid A for the probability target), so its gradient at p is
        ``W_ck / top`` (times ``A_p (1 - A_p)``) and 0 elsewhere: what autograd's topk and convolution backward give,
        in the same order of operations, without an autograd call (which would break a compiled graph).
        """
        cam = g.cam.detach().flatten(2)  # (N, C, h*w)
        positions = g.score_positions
        per_position = torch.full(positions.shape, 1.0, dtype=cam.dtype, device=cam.device) / positions.shape[-1]
        if self.gradient_target == "probability":
            probability = cam.gather(2, positions)
            per_position = per_position * (1 - probability) * probability
        factor = torch.zeros_like(cam).scatter(2, positions, per_position)  # (N, C, h*w)
        weight = self.saliency_head.weight.detach().float().flatten(1)  # (C, 256)
        gradient = weight[None, :, :, None] * factor[:, :, None, :]  # (N, C, 256, h*w)
        return gradient.unflatten(-1, tuple(g.cam.shape[-2:]))

    def _known_gradients(self, g: GlobalPass, methods: Sequence[SaliencyMethod]) -> dict[str, Tensor]:
        """The gradients of ``g.score`` that need no autograd call: h_g's (``final``), when ``methods`` read it."""
        return {"final": self._score_gradient_of_h_g(g)} if "final" in required_layers(methods) else {}

    def _local_pass(self, x: Tensor, selection_map: Tensor, cam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Select and crop patches -> (z (N, 512), attention (N, K), boxes (N, K, 4)); ``cam``: the CAM map A, which
        orders tied windows under ``patch_ties: cam``."""
        image_size, map_size = (x.shape[-2], x.shape[-1]), (selection_map.shape[-2], selection_map.shape[-1])
        window = roi.window_size(self.crop_shape, map_size, image_size)
        ties = cam.detach() if self.patch_ties == "cam" else None
        corners = roi.select_windows(selection_map, window, self.num_patches, ties)  # (N, K, 2) map resolution
        corners = roi.corners_to_pixels(corners, map_size, image_size, self.crop_shape)
        crops = roi.crop_patches(x, corners, self.crop_shape)  # (N, K, 1, ch, cw)
        n, k = crops.shape[:2]
        patches = crops.flatten(0, 1)  # (N*K, 1, ch, cw)
        if self.local_stem == "conv":  # the gray patch as 3 channels (GrayStemConv takes it as it is)
            patches = patches.expand(-1, 3, -1, -1)
        features = self.local_network(patches)  # (N*K, 512)
        features = features.view(n, k, -1)
        scores = self.attention_w(torch.tanh(self.attention_v(features)) * torch.sigmoid(self.attention_u(features)))
        attention = torch.softmax(scores.squeeze(-1).float(), dim=1)  # (N, K)
        z = (attention.unsqueeze(-1) * features.float()).sum(dim=1)  # (N, 512)
        return z, attention, roi.corners_to_boxes(corners, self.crop_shape)

    def _fusion_logit(self, pooled: Tensor, z: Tensor) -> Tensor:
        """y_fusion's logit from h_g's spatial maximum ``pooled (N, 256)`` (``GlobalPass.pooled``) and z."""
        return _in_float32(self.fusion, torch.cat([pooled.float(), z.float()], dim=1))

    def _batch_coupled(self, x: Tensor) -> bool:
        """Whether the images of the batch ``x`` move each other's scores: the global network's BatchNorm in training
        mode normalizes them by the batch's statistics, so a map must differentiate each image's score alone
        (``target_gradients``'s ``per_image``)."""
        return x.shape[0] > 1 and any(
            m.training for m in self.global_network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        )

    def _needs_eager(self, methods: Sequence[SaliencyMethod]) -> bool:
        """Whether the global pass must run eagerly for ``methods``' gradients. A compiled network is one autograd
        node: a gradient reaches its output ``final`` (the saliency head reads it outside), not the intermediate
        layers it also returns, such as LayerCAM's, whose effect on the score lies inside that node."""
        return self.networks_compiled and bool(_autograd_layers(methods))

    def _graph_start(self, layers: Sequence[str]) -> str | None:
        """Where the autograd graph of a pass that trains nothing (maps only) may start: the earliest of ``layers``,
        those the maps differentiate into; None (from the input) when there are none, or when that is h_g of a
        compiled network, which is one autograd node anyway (its graph costs nothing outside it)."""
        if not layers:
            return None
        first = min(layers, key=ACTIVATION_NAMES.index)
        return None if first == "final" and self.networks_compiled else first

    def _begin_evaluation_pass(self, x: Tensor) -> None:
        """Tell CUDA graphs (reduce-overhead) that a pass training nothing starts a new iteration. Their own rule
        waits for the backward of a graph run with gradients, which a map's `torch.autograd.grad` call ending at h_g
        (the y_fusion target) never runs; the previous pass's graph outputs are not needed any more (nothing this
        class returns is graph memory)."""
        if self.networks_compiled and x.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()

    def _resolve(self, methods: Sequence[str | SaliencyMethod]) -> list[SaliencyMethod]:
        resolved = distinct_methods([get_saliency_method(m) for m in methods], "GMIC: methods")
        check_layers(resolved, self.activation_names)
        return resolved

    # ------------------------------------------------------------------ public
    def forward(self, x: Tensor, patch_saliency: SaliencyMethod | str | None = None) -> GMICOutput:
        """x (N, 1, H, W) -> `GMICOutput`. `patch_saliency` selects the patches (None / "cam": the CAM map A).

        A gradient method differentiates `y_global` (by default its logit) with respect to its activations: h_g in
        closed form, other layers (LayerCAM's stages) with `torch.autograd.grad` inside this call (`retain_graph=True`,
        so a loss can be backpropagated afterwards; grad mode is enabled for it even under `torch.no_grad()`; under
        `torch.inference_mode()` wrap the call in `torch.inference_mode(False)`).
        """
        self._check_input(x)
        method = self._resolve([patch_saliency if patch_saliency is not None else "cam"])[0]
        if not _autograd_layers([method]):
            if self._compiled_forward_in_one_graph is not None and self.training and torch.is_grad_enabled():
                return self._compiled_forward_in_one_graph(self, x, method)
            return self._forward_in_one_graph(x, method)
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                f"GMIC.forward(patch_saliency={method.name!r}) needs gradients: call it inside "
                "`torch.inference_mode(False)` and `torch.enable_grad()` with a cloned input"
            )
        grad_was_enabled = torch.is_grad_enabled()
        with torch.enable_grad():
            start = None if grad_was_enabled else self._graph_start(_autograd_layers([method]))  # no loss: trim
            g = self.global_pass(_grad_input(x, self.global_network.parameters()), self._needs_eager([method]), start)
            selection = compute_saliency([method], g.cam, g.activations, g.score, grad_was_enabled,
                                         self._known_gradients(g, [method]),
                                         self._batch_coupled(x))[method.name]  # fmt: skip
        if not grad_was_enabled:
            g = GlobalPass({k: v.detach() for k, v in g.activations.items()}, *(t.detach() for t in g[1:]))
        return self._outputs(x, g, selection)

    def _forward_in_one_graph(self, x: Tensor, method: SaliencyMethod) -> GMICOutput:
        """The forward whose patch map needs no autograd call: CAM's, or a gradient method's that reads only h_g
        (closed form). What `compile_training_forward` compiles whole."""
        g = self.global_pass(x)
        selection = compute_saliency(
            [method], g.cam, g.activations, None, known_gradients=self._known_gradients(g, [method])
        )
        return self._outputs(x, g, selection[method.name])

    def _outputs(self, x: Tensor, g: GlobalPass, selection: Tensor) -> GMICOutput:
        """The local branch on the patches `selection` picks, and the fusion, after the global pass `g`."""
        z, attention, boxes = self._local_pass(x, selection, g.cam)
        y_local = head_sigmoid(_in_float32(self.classifier, z))
        y_fusion = head_sigmoid(self._fusion_logit(g.pooled, z))
        return GMICOutput(g.y_global.float(), y_local, y_fusion, g.cam.float(), boxes, attention)

    def needs_autograd(
        self,
        patch_saliency: SaliencyMethod | str | None,
        methods: Sequence[str | SaliencyMethod] = (),
        target: Literal["y_global", "y_fusion"] = "y_global",
    ) -> bool:
        """Whether ``evaluate(x, patch_saliency, methods, target)`` builds an autograd graph (and so cannot run under
        ``torch.inference_mode()``): when a map reads a layer other than h_g, or differentiates ``y_fusion``. The
        GradCAM family on h_g with the ``y_global`` target needs none (closed form, ``_score_gradient_of_h_g``)."""
        patch = self._resolve([patch_saliency if patch_saliency is not None else "cam"])[0]
        return bool(self._evaluation_autograd_layers(patch, self._resolve(methods), target))

    def _evaluation_autograd_layers(
        self, patch: SaliencyMethod, methods: Sequence[SaliencyMethod], target: str
    ) -> list[str]:
        """The layers ``evaluate``'s maps take from autograd: beyond h_g for ``y_global``; every layer that
        ``methods`` read for ``y_fusion`` (the patch map still differentiates ``y_global``)."""
        if target == "y_global":
            return _autograd_layers([patch, *methods])
        return list(dict.fromkeys([*_autograd_layers([patch]), *required_layers(methods)]))

    def saliency_maps(
        self,
        x: Tensor,
        methods: Sequence[str | SaliencyMethod],
        target: Literal["y_global", "y_fusion"] = "y_global",
        patch_saliency: SaliencyMethod | str | None = None,
    ) -> dict[str, Tensor]:
        """{method name: map (N, C, h, w)} (non-negative, un-normalized, detached) for all `methods`, from ONE
        forward of the global network and at most ONE `torch.autograd.grad` call (none when the methods read h_g
        only: its gradient is closed form; never `.backward()`, parameters' `.grad` untouched). Also returns the
        probabilities it computed under the reserved keys "y_global" (N, C) and, when `target="y_fusion"` (the local
        network then runs on the patches `patch_saliency` selects, CAM's by default), "y_fusion".
        Works under `torch.no_grad()`; under `torch.inference_mode()` wrap it in `torch.inference_mode(False)`.
        Call it in eval mode: in train mode BatchNorm uses batch statistics and updates its running stats.
        """
        if target not in ("y_global", "y_fusion"):
            raise ValueError(f"GMIC.saliency_maps: target must be 'y_global' or 'y_fusion', found {target!r}")
        if target == "y_fusion":  # y_fusion needs the local network too: the whole evaluation pass
            output, maps = self.evaluate(x, patch_saliency, methods, target="y_fusion")
            return {**maps, "y_global": output.y_global, "y_fusion": output.y_fusion}
        self._check_input(x)
        self._begin_evaluation_pass(x)
        resolved = self._resolve(methods)
        layers = _autograd_layers(resolved)
        needs_grad = bool(layers)
        if needs_grad and torch.is_inference_mode_enabled():
            raise RuntimeError("GMIC.saliency_maps needs gradients: call it inside `torch.inference_mode(False)`")
        with torch.enable_grad() if needs_grad else torch.no_grad():
            g = self.global_pass(
                _grad_input(x, self.global_network.parameters()) if needs_grad else x,
                self._needs_eager(resolved),
                self._graph_start(layers),
            )
            maps = compute_saliency(resolved, g.cam, g.activations, g.score if needs_grad else None,
                                    known_gradients=self._known_gradients(g, resolved),
                                    per_image=self._batch_coupled(x))  # fmt: skip
        return {**maps, "y_global": g.y_global.detach().float()}

    def evaluate(
        self,
        x: Tensor,
        patch_saliency: SaliencyMethod | str | None = None,
        methods: Sequence[str | SaliencyMethod] = (),
        target: Literal["y_global", "y_fusion"] = "y_global",
    ) -> tuple[GMICOutput, dict[str, Tensor]]:
        """Evaluation in one pass: `forward(x, patch_saliency)`'s outputs and the maps of `methods` together.

        One global forward serves the classification and every map; with `target="y_global"` at most one
        `torch.autograd.grad` call gives the patch method's map and all others (none for CAM and the GradCAM family
        on h_g, see `needs_autograd`). With `target="y_fusion"` the patches are chosen first (as `forward` does) and
        the maps then differentiate that very `y_fusion`.
        Everything returned is detached (maps float32). Call it in eval mode; under `torch.inference_mode()`
        wrap it in `torch.inference_mode(False)` when a method needs gradients.
        """
        if target not in ("y_global", "y_fusion"):
            raise ValueError(f"GMIC.evaluate: target must be 'y_global' or 'y_fusion', found {target!r}")
        self._check_input(x)
        self._begin_evaluation_pass(x)
        patch = self._resolve([patch_saliency if patch_saliency is not None else "cam"])[0]
        resolved = self._resolve(methods)
        layers = self._evaluation_autograd_layers(patch, resolved, target)
        needs_grad = bool(layers)
        if needs_grad and torch.is_inference_mode_enabled():
            raise RuntimeError("GMIC.evaluate needs gradients: call it inside `torch.inference_mode(False)`")
        with torch.enable_grad() if needs_grad else torch.no_grad():
            g = self.global_pass(
                _grad_input(x, self.global_network.parameters()) if needs_grad else x,
                self._needs_eager([*resolved, patch]),
                self._graph_start(layers),
            )
            graded = g.score if needs_grad else None
            if target == "y_global":  # the patch method's own map, even beside a same-named one of other layers
                together = [*resolved, patch]
                computed = compute_saliency_list(together, g.cam, g.activations, graded,
                                                 known_gradients=self._known_gradients(g, together),
                                                 per_image=self._batch_coupled(x))  # fmt: skip
                selection = computed[-1]
                maps = {m.name: value for m, value in zip(resolved, computed[:-1], strict=True)}
            else:
                keep = any(m.needs_gradients for m in resolved)
                selection = compute_saliency([patch], g.cam, g.activations, graded, keep,
                                             self._known_gradients(g, [patch]),
                                             self._batch_coupled(x))[patch.name]  # fmt: skip
            with torch.no_grad():  # no map depends on the local network's graph (z enters y_fusion as a constant)
                z, attention, boxes = self._local_pass(x, selection, g.cam)
                y_local = head_sigmoid(_in_float32(self.classifier, z))
            fusion_logit = self._fusion_logit(g.pooled, z)
            y_fusion = head_sigmoid(fusion_logit)
            if target == "y_fusion":
                score = fusion_logit if self.gradient_target == "logit" else y_fusion
                maps = compute_saliency(resolved, g.cam, g.activations, score if needs_grad else None,
                                        per_image=self._batch_coupled(x))  # fmt: skip
        output = GMICOutput(g.y_global.float(), y_local, y_fusion, g.cam.float(), boxes, attention)
        return GMICOutput(*(t.detach() for t in output)), maps


class GlobalScore(nn.Module):
    """GMIC's global branch as a plain classifier, ``x (N, 1, H, W) -> score (N, C)``: the score gradient methods
    differentiate for ``y_global`` (its logit, or ``y_global`` itself with ``gradient_target="probability"``).

    What external CAM tools (pytorch-grad-cam) need to differentiate the same target score as ``saliency_maps``:
    hook ``gmic.global_network``'s layers and call this module. It shares ``gmic``'s parameters.
    """

    def __init__(self, gmic: GMIC) -> None:
        super().__init__()
        self.model = gmic

    def forward(self, x: Tensor) -> Tensor:
        return self.model.global_pass(x).score


def _in_float32(head: nn.Module, features: Tensor) -> Tensor:
    """A head's logits in float32 under autocast too: bf16 keeps 8 bits of mantissa, so logits 0.006 apart became
    one value, tied cells of the CAM map picked other patches, and the same checkpoint tested under bf16-mixed gave
    other Table I and II figures than in float32 (an audit: a local head's accuracy 0.947 vs 0.895, 9 of 38 test
    images with other patches). The heads are a few thousand multiply-adds per position: their cost is nil."""
    with torch.autocast(features.device.type, enabled=False):
        return head(features.float())


class _HeadSigmoid(torch.autograd.Function):
    """``torch.sigmoid`` (the same values and, below saturation, the same derivative bit for bit); where float32 has
    rounded the output to 1, the derivative ``sigmoid(-x)`` from the logit instead of ``y (1 - y) = 0``."""

    generate_vmap_rule = True  # torch.autograd.grad(..., is_grads_batched=True) of y_fusion's maps

    @staticmethod
    def forward(logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0], output)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        logits, output = ctx.saved_tensors  # type: ignore[attr-defined]
        below = torch.ops.aten.sigmoid_backward(grad, output)  # torch.sigmoid's own
        return torch.where(output == 1, grad * torch.sigmoid(-logits), below)


def head_sigmoid(logits: Tensor) -> Tensor:
    """y_local's and y_fusion's sigmoid. ``torch.sigmoid``'s backward takes its derivative from the output, ``y (1 -
    y)``: 0 once float32 rounds y to 1 (logit above ~16.6), so a normal image on which a head had saturated as a
    false positive got no gradient from its BCE and could never be pulled back (a positive at the mirror logit -17
    got -0.04). Only those saturated outputs take the derivative from the logit: every other gradient, and so every
    fit that never saturates, is as before bit for bit."""
    return _HeadSigmoid.apply(logits)


def _autograd_layers(methods: Sequence[SaliencyMethod]) -> list[str]:
    """The layers whose gradient of ``y_global``'s score ``methods`` need from autograd: all they read but h_g."""
    return [name for name in required_layers(methods) if name != "final"]


def _grad_input(x: Tensor, params: Iterable[nn.Parameter]) -> Tensor:
    """An input from which the global network records a graph in grad mode.

    Inference tensors (made under `torch.inference_mode()`) are cloned so autograd may save them; the input is
    made to require grad only when no parameter does (frozen network), so training never computes d loss / d x.
    """
    x = x.clone() if x.is_inference() else x
    if x.requires_grad or any(p.requires_grad for p in params):
        return x
    return x.detach().requires_grad_(True)


__all__ = ["GMIC", "GMICOutput", "GlobalPass", "GlobalScore"]
