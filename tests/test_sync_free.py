"""A training step never synchronizes host and device (the CPU stand-in for CUDA's sync-debug mode).

Every host read of a tensor value (``.item()``, ``bool(t)``, ``int(t)``, ``if t:``, ``.tolist()``) goes through
``aten::_local_scalar_dense``; every tensor made from host data (``torch.tensor(...)``, ``torch.as_tensor``,
``torch.from_numpy``) through ``aten::lift_fresh``, which on a GPU becomes a blocking host-to-device copy (CUDA's
sync-debug mode flags both). A dispatch mode records the ops a step runs, so this test fails wherever either
sneaks into the model, the loss, the saliency methods or the per-step metric bookkeeping.
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

from wsod_mammo.data.device_augment import warp_batch, warp_padding
from wsod_mammo.data.transforms import standardize_batch
from wsod_mammo.models import GMIC
from wsod_mammo.saliency import available_saliency_methods
from wsod_mammo.training.module import GMICLitModule

HOST_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default}
HOST_DATA = {torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default}
# Ops whose output size depends on tensor values: on a GPU the size must be read back to the host.
SIZE_READS = {torch.ops.aten.nonzero.default, torch.ops.aten.masked_select.default, torch.ops.aten._unique2.default,
              torch.ops.aten.unique_dim.default, torch.ops.aten.unique_consecutive.default,
              torch.ops.aten.repeat_interleave.Tensor}  # fmt: skip
INDEXING = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default, torch.ops.aten.index_put_.default}


def _is_host_sync(func, args) -> bool:
    if func in HOST_READS or func in HOST_DATA or func in SIZE_READS:
        return True
    indices = args[1] if func in INDEXING and len(args) > 1 else ()
    return any(i is not None and i.dtype == torch.bool for i in indices)  # x[mask]: a nonzero inside


class HostReadRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _is_host_sync(func, args):
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


def test_the_recorder_sees_host_reads_host_data_and_value_sized_outputs() -> None:
    x = torch.arange(4.0)
    for sync in (lambda: x.sum().item(), lambda: x * torch.tensor([1.0, 2.0, 3.0, 4.0]), lambda: x[x > 1],
                 lambda: torch.nonzero(x)):  # fmt: skip
        with HostReadRecorder() as recorder:
            sync()
        assert len(recorder.reads) == 1


CASES = [(method, True) for method in available_saliency_methods()] + [("cam", False)]


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer here: the step's log is a no-op
@pytest.mark.parametrize(("method", "autocast"), CASES)
def test_training_step_has_no_host_reads(method: str, autocast: bool) -> None:
    torch.manual_seed(0)
    module = GMICLitModule(GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)), train_saliency=method)
    images, labels = torch.randn(2, 1, 128, 128), torch.tensor([[1.0], [0.0]])
    with HostReadRecorder() as recorder, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        module.training_step({"image": images, "label": labels}, 0).backward()  # the step itself, not a copy of it
    assert recorder.reads == [] and len(module._train_outputs) == 1


def test_device_standardization_has_no_host_reads() -> None:
    raw = torch.randint(0, 65536, (2, 1, 64, 48), dtype=torch.int32).to(torch.uint16)
    padding = torch.zeros(raw.shape, dtype=torch.bool)
    padding[0, ..., 40:] = True
    theta = torch.tensor([[[1.0, 0, 0.1, -1, 1], [0, 1, 0, -1, 1]]]).repeat(2, 1, 1)
    with HostReadRecorder() as recorder:
        standardize_batch(raw)
        standardize_batch(warp_batch(raw, theta), warp_padding(padding, theta))  # DICOM padding, augment_on device
    assert recorder.reads == []


class StepWindowRecorder(Callback):
    """Records host reads and host data per step, from the batch's start until the optimizer update: the
    training step, Lightning's logging of it, and the backward pass. Adam's own update is left out: on CPU it
    keeps its step count in a CPU tensor that it reads, as it does on a GPU, where that read touches no device."""

    def __init__(self) -> None:
        self.recorder: HostReadRecorder | None = None
        self.windows: list[list[str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.recorder = HostReadRecorder().__enter__()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.recorder.__exit__(None, None, None)
        self.windows.append(self.recorder.reads)


def test_lightning_training_steps_have_no_host_reads() -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(6, 1, 128, 128), torch.tensor([[1.0], [0.0], [1.0], [0.0], [0.0], [1.0]])
    batches = [{"image": images[i : i + 2], "label": labels[i : i + 2]} for i in (0, 2, 4)]
    module = GMICLitModule(GMIC(num_classes=1, num_patches=2, crop_shape=(64, 64)), train_saliency="gradcampp")
    window = StepWindowRecorder()
    trainer = Trainer(accelerator="cpu", max_epochs=1, precision="bf16-mixed", logger=False, callbacks=[window],
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert len(window.windows) == 3
    # The first step registers each logged key once (Lightning makes its accumulators from host values); every
    # later step must be free of host reads and host data.
    assert window.windows[1:] == [[], []]
