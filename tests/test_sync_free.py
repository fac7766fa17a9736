"""A training step never reads a tensor value on the host (the CPU stand-in for CUDA's sync-debug mode).

Every host read of a tensor value (``.item()``, ``bool(t)``, ``int(t)``, ``if t:``, ``.tolist()``) goes through
``aten::_local_scalar_dense``; on a GPU each one is a host-device synchronization that stalls the pipeline. A
dispatch mode records the ops a step runs, so this test fails wherever such a read sneaks into the model, the
loss, the saliency methods or the per-step metric bookkeeping.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from wsod_mammo.data.transforms import standardize_batch
from wsod_mammo.models import GMIC
from wsod_mammo.saliency import available_saliency_methods
from wsod_mammo.training.loss import gmic_loss
from wsod_mammo.training.module import GMICLitModule

HOST_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default}


class HostReadRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


def test_the_recorder_sees_a_host_read() -> None:
    with HostReadRecorder() as recorder:
        torch.ones(2).sum().item()
    assert recorder.reads


CASES = [(method, True) for method in available_saliency_methods()] + [("cam", False)]


@pytest.mark.parametrize(("method", "autocast"), CASES)
def test_training_step_has_no_host_reads(method: str, autocast: bool) -> None:
    torch.manual_seed(0)
    module = GMICLitModule(GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)), train_saliency=method)
    images, labels = torch.randn(2, 1, 128, 128), torch.tensor([[1.0], [0.0]])
    with HostReadRecorder() as recorder, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        output = module(images)
        gmic_loss(output, labels, module.beta).total.backward()
        module._train_outputs.append((output.y_global.detach(), output.y_local.detach(), output.y_fusion, labels))
    assert recorder.reads == []


def test_device_standardization_has_no_host_reads() -> None:
    raw = torch.randint(0, 65536, (2, 1, 64, 48), dtype=torch.int32).to(torch.uint16)
    with HostReadRecorder() as recorder:
        standardize_batch(raw)
    assert recorder.reads == []
