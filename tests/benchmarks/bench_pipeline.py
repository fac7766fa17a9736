"""End-to-end training throughput at 2944 x 1920: the real Trainer, DataModule and GMICLitModule, data loading included.

Writes synthetic VinDr-format DICOMs, prepares a memory-mapped NPY cache, then runs `Trainer.fit` for warm-up +
timed steps in a fresh process per variant:
- `pipeline`: batches from the DataModule (workers, pinned memory, prefetching, augmentation, standardization
  where `--standardize_on` says);
- `pipeline_copy_ahead`: the same with `copy_ahead` (the pin-memory thread copies each batch to the GPU on its
  own stream while the previous step computes; needs `--pixel_reads main`);
- `model only`: the same model and Trainer fed one standardized batch held in memory (no loading at all);
- `model_only_rotating`: the same with `--rotate` batches held (each its own images and augmentation) and fed in
  turn: new input data at a new address every step, no device work beside the model's; set beside `model only` it
  says whether the model's own step depends on its input changing (compiled graphs copying a new input, the chip's
  clocks on other data), which `model_device_transform` would otherwise be blamed for;
- `model_device_transform`: the same, but the held batch is the one the device receives (uint16, with its sampled
  augmentation), warped and standardized every step by the DataModule's `on_after_batch_transfer`: all the device's
  work, no loading. Between `model only` and `pipeline` it splits the gap: the device half of the data path (GPU
  work `model only` leaves out) against loading and transfer.
Their ratio is how well the data pipeline keeps the device busy. On CUDA it also reports the GPU utilization, SM
clock, power and the clock-event reasons (nvidia-smi sampled every 100 ms over the timed steps: the same kernels run
slower on a chip that holds its clocks down) and peak memory, and `--sync_debug` runs every step
after the first with `torch.cuda.set_sync_debug_mode("error")` from the batch's start to the optimizer update
(the training step, its logging and the backward pass): any host-device synchronization there raises.

    python tests/benchmarks/bench_pipeline.py                                   # CPU, batch 1, 1 worker
    python tests/benchmarks/bench_pipeline.py --device cuda --batch 6 --workers 12 --standardize_on device \
        --studies 16 --steps 60 --sync_debug
    python tests/benchmarks/bench_pipeline.py --device cuda --batch 6 --workers 12 --standardize_on device \
        --augment_on device --compile default --data DIR --json out.json    # DIR from synthdata.py, reused
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer
    from torch.optim import Optimizer

#: the least the DataModule takes (it refuses 0: validation picks the checkpoint): one study held out, so
#: --studies N trains on N - 1 studies' images
VAL_FRACTION = 1e-6


class _SmiQuery:
    """One ``nvidia-smi --query-gpu`` sampled every 100 ms while running: its rows of numbers (hex bit masks read as
    integers). An unknown field makes nvidia-smi print an error instead of rows: that query then has no samples and
    the others are unaffected."""

    def __init__(self, fields: tuple[str, ...], command: str = "nvidia-smi") -> None:
        self.fields, self.command = fields, command
        self.samples: list[tuple[float, ...]] = []
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        query = [self.command, f"--query-gpu={','.join(self.fields)}", "--format=csv,noheader,nounits", "-lms", "100"]
        try:
            self.process = subprocess.Popen(query, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None  # start's, with stdout=PIPE
        for line in self.process.stdout:
            parts = [part.strip() for part in line.split(",")]
            try:
                row = tuple(float(int(p, 16)) if p.startswith("0x") else float(p) for p in parts)
            except ValueError:  # an error line, or "[N/A]"
                continue
            if len(row) == len(self.fields):
                self.samples.append(row)

    def stop(self) -> list[tuple[float, ...]]:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
        return self.samples


#: clock-event bits of nvidia-smi's ``clocks_event_reasons.active``: the chip held its clocks down for power (the
#: software power cap) or for heat / a hardware slowdown. Identical kernels run slower then, whatever the code.
POWER_CAP_BIT, HEAT_BITS = 0x4, 0x8 | 0x20 | 0x40 | 0x80


class _GpuSampler:
    """GPU utilization (%) and memory in use (MiB), and the SM clock, power and clock-event reasons beside them (is a
    slower step the code's, or the chip's clocks?), sampled by nvidia-smi every 100 ms while running."""

    def __init__(self, command: str = "nvidia-smi") -> None:
        self.load = _SmiQuery(("utilization.gpu", "memory.used"), command)
        self.clocks = _SmiQuery(("clocks.sm", "clocks.max.sm", "power.draw", "power.limit", "temperature.gpu"), command)
        self.reasons = _SmiQuery(("clocks_event_reasons.active",), command)  # drivers >= 535

    def start(self) -> None:
        for query in (self.load, self.clocks, self.reasons):
            query.start()

    def stop(self) -> dict[str, float]:
        load, clocks, reasons = self.load.stop(), self.clocks.stop(), self.reasons.stop()
        out: dict[str, float] = {}
        if load:
            utilization = [u for u, _ in load]
            out |= {"gpu_util_mean": sum(utilization) / len(utilization), "gpu_util_min": min(utilization),
                    "gpu_mem_used_mib_max": max(m for _, m in load), "gpu_samples": len(load)}  # fmt: skip
        if clocks:
            sm = [row[0] for row in clocks]
            out |= {"sm_clock_mhz_mean": sum(sm) / len(sm), "sm_clock_mhz_min": min(sm),
                    "sm_clock_mhz_max_possible": clocks[0][1],
                    "power_w_mean": sum(row[2] for row in clocks) / len(clocks), "power_limit_w": clocks[0][3],
                    "temperature_c_max": max(row[4] for row in clocks)}  # fmt: skip
        if reasons:
            bits = [int(row[0]) for row in reasons]
            out |= {"power_capped_share": sum(bool(b & POWER_CAP_BIT) for b in bits) / len(bits),
                    "heat_slowdown_share": sum(bool(b & HEAT_BITS) for b in bits) / len(bits)}  # fmt: skip
        return out


def _host_pinned_stats() -> dict[str, float]:
    """CUDA's pinned host allocator so far: blocks made (each a cudaHostAlloc), seconds spent making them, peak GiB."""
    import torch

    if not torch.cuda.is_available() or not hasattr(torch.cuda, "host_memory_stats"):
        return {}
    stats = torch.cuda.host_memory_stats()
    return {"pinned_allocs": stats.get("num_host_alloc", 0),
            "pinned_alloc_s": stats.get("host_alloc_time.total", 0) / 1e6,
            "pinned_peak_gib": stats.get("allocated_bytes.peak", 0) / 2**30}  # fmt: skip


def _phases(starts: list[float], sizes: list[int], epochs: list[int], waits: list[float]) -> dict:
    """The timed steps in halves (a pool or queue still filling shows as a slower first half), the waits' spread,
    the epoch boundaries apart (the last step of an epoch runs on into the next: the train metrics, Lightning's
    epoch end, the loader's new iterator and refill), and every step's seconds, wait, batch size and epoch."""
    steps = [b - a for a, b in itertools.pairwise(starts)]
    half = len(steps) // 2

    def rate(lo: int, hi: int) -> float:
        return sum(sizes[lo:hi]) / max(sum(steps[lo:hi]), 1e-9)

    ordered = sorted(waits) or [0.0]
    boundary = [i for i in range(len(steps) - 1) if epochs[i + 1] != epochs[i]]
    inner = [i for i in range(len(steps)) if i not in boundary]
    typical = sorted(steps[i] for i in inner)[len(inner) // 2] if inner else 0.0
    return {"first_half_images_per_s": rate(0, half), "second_half_images_per_s": rate(half, len(steps)),
            "wait_ms_median": 1000 * ordered[len(ordered) // 2], "wait_ms_max": 1000 * ordered[-1],
            "epoch_boundaries": len(boundary),
            "within_epochs_images_per_s": sum(sizes[i] for i in inner) / max(sum(steps[i] for i in inner), 1e-9),
            "boundary_excess_s": sum(steps[i] - typical for i in boundary) / max(len(boundary), 1),
            "per_step": {"seconds": [round(s, 5) for s in steps], "wait_s": [round(w, 5) for w in waits],
                         "batch": sizes, "epoch": epochs}}  # fmt: skip


class _StepProfiler:
    """torch.profiler over the steps after the timed window, in the real loop (data, hooks, step, optimizer): the
    host's time per step against the GPU's, and what each spends it on. Started at a step's start; stopped at the
    end of training, after a synchronization."""

    def __init__(self, cuda: bool) -> None:
        from torch.profiler import ProfilerActivity, profile

        self.cuda = cuda
        self.profiler = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []))
        self.profiler.__enter__()
        self.start = time.perf_counter()

    def stop(self, steps: int, batch: int) -> str:
        import torch
        from torch.autograd import DeviceType

        if self.cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - self.start
        self.profiler.__exit__(None, None, None)
        averages = self.profiler.key_averages()
        # the device's own events (kernels, copies), summed: how busy the GPU was in these steps (a CPU op's device
        # time is its kernels' again)
        device_us = sum(e.self_device_time_total for e in averages if e.device_type != DeviceType.CPU)
        lines = [f"{steps} profiled steps of batch {batch}: {1000 * wall / steps:.2f} ms per step wall (profiler on)"]
        if self.cuda:
            lines.append(f"device time {device_us / 1000 / steps:.2f} ms per step ({100 * device_us / 1e6 / wall:.0f}% "
                         "of the wall time; overlapping kernels counted each)")  # fmt: skip
            lines += ["", "by device time:", averages.table(sort_by="self_device_time_total", row_limit=25)]
        lines += ["", "by host time (self):", averages.table(sort_by="self_cpu_time_total", row_limit=25)]
        return "\n".join(lines)


def _variant(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """One Trainer.fit of warm-up + timed steps; returns its figures."""
    import torch
    from lightning.pytorch import Callback, Trainer, seed_everything
    from synthdata import repeat_images
    from timing import gmic_options
    from torch.utils.data import DataLoader, Dataset

    from wsod_mammo.data.datamodule import VinDrMammoDataModule, collate_samples
    from wsod_mammo.models import GMIC
    from wsod_mammo.training.module import GMICLitModule

    cuda = args.device == "cuda"
    size = (args.height, args.width)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    class Timer(Callback):
        def __init__(self) -> None:
            self.start = self.end = 0.0
            self.waits: list[float] = []
            self.last_end: float | None = None
            self.sampler = _GpuSampler()
            self.starts: list[float] = []
            self.sizes: list[int] = []
            self.epochs: list[int] = []
            self.pinned: dict[str, float] = {}
            self.gpu: dict[str, float] = {}
            self.profiler: _StepProfiler | None = None
            self.profile = ""
            # the image as the model receives it (after the DataModule's device hooks): its strides, and how many
            # distinct addresses it had over the timed steps (a held batch: 1), which compiled graphs may key on
            self.image: dict = {}
            self.addresses: set[int] = set()

        def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any,
                                 batch_idx: int) -> None:  # fmt: skip
            step = trainer.global_step
            if step >= args.warmup + args.steps:  # the profiled steps, after the timed window
                if step == args.warmup + args.steps:
                    self.profiler = _StepProfiler(cuda)
                return
            if step == args.warmup:
                sync()
                self.start = time.perf_counter()
                self.pinned = _host_pinned_stats()
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                    self.sampler.start()
            elif step > args.warmup and self.last_end is not None:
                self.waits.append(time.perf_counter() - self.last_end)  # next(), transfer, on_after_batch_transfer
            if step == args.warmup + args.steps // 2:
                sync()  # halves at the GPU's pace: the host may run steps ahead of it
            if step >= args.warmup:
                image = batch["image"]
                self.image = {
                    "image_stride": list(image.stride()),
                    "image_dtype": str(image.dtype).removeprefix("torch."),
                }
                self.addresses.add(image.data_ptr())
                self.starts.append(time.perf_counter())
                self.sizes.append(len(batch["image"]))
                self.epochs.append(trainer.current_epoch)
            if args.sync_debug and cuda and step >= 1:
                torch.cuda.set_sync_debug_mode("error")

        def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule,
                                     optimizer: Optimizer) -> None:  # fmt: skip
            if args.sync_debug and cuda:
                torch.cuda.set_sync_debug_mode("default")

        def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                               batch_idx: int) -> None:  # fmt: skip
            self.last_end = time.perf_counter()
            if trainer.global_step == args.warmup + args.steps:  # the last timed step (counted after its update)
                self.end_window()

        def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
            if self.profiler is not None:
                self.profile = self.profiler.stop(args.profile_steps, args.batch)

        def end_window(self) -> None:
            """The timed window ends when the GPU has finished its last step, before Lightning's end of training (the
            epoch's metrics and teardown: 0.14-0.29 s on the H200, once, which the window used to count)."""
            sync()
            self.end = time.perf_counter()
            after = _host_pinned_stats()  # empty without CUDA
            self.pinned = {key: value - self.pinned.get(key, 0) for key, value in after.items()}
            if after:
                self.pinned["pinned_peak_gib"] = after["pinned_peak_gib"]  # a peak, not a difference
            self.gpu = self.sampler.stop() if cuda else {}

    class HeldBatches(Dataset):
        """Batches made once and held on the device, fed in turn as many times as needed: the model's speed with no
        data loading (one batch: the same tensor every step; several: new data at another address every step)."""

        def __init__(self, batches: list[dict]) -> None:
            self.batches = batches

        def __len__(self) -> int:
            return args.warmup + args.steps + args.profile_steps

        def __getitem__(self, index: int) -> dict:
            return self.batches[index % len(self.batches)]

    class LongEpochs(VinDrMammoDataModule):
        """The training records repeated (the same files) to at least ``--epoch_images`` an epoch: VinDr's epochs
        are thousands of images, a synthetic set of 160 would put an epoch end every 27 steps."""

        held: DataLoader | None = None  # model_device_transform: one raw batch, through this DataModule's hooks

        def setup(self, stage: str | None = None) -> None:
            super().setup(stage)
            if "train" in self.datasets:
                repeat_images(self.datasets["train"], args.epoch_images)

        def train_dataloader(self) -> DataLoader:
            return self.held if self.held is not None else super().train_dataloader()

    seed_everything(0)
    torch.set_num_threads(args.threads)
    data = LongEpochs(
        args.root, cache_dir=args.cache, selection="all", input_size=size, val_fraction=VAL_FRACTION,
        batch_size=args.batch, num_workers=args.workers, pin_memory=cuda, persistent_workers=True,
        prefetch_factor=args.prefetch if args.workers else None, standardize_on=args.standardize_on,
        augment_on=args.augment_on, pixel_reads=args.pixel_reads, copy_ahead=variant == "pipeline_copy_ahead",
        # held model-only batches are transformed once, eagerly
        compile_device_transform=args.compile_device_transform and not variant.startswith("model_only"),
    )  # fmt: skip
    held_loader: DataLoader | None = None  # model only: the held batches fed in place of the DataModule's
    if variant in ("model_only", "model_only_rotating", "model_device_transform"):
        data.setup("fit")
        train = data.datasets["train"]
        count = args.rotate if variant == "model_only_rotating" else 1
        batches = []
        for n in range(count):  # each its own images and sampled augmentation
            held = collate_samples([train[(n * args.batch + i) % len(train)] for i in range(args.batch)])
            held = data.on_before_batch_transfer(held, 0)
            if cuda:  # already on the device: no transfer either
                held = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in held.items()}
            if variant != "model_device_transform":
                held = data.on_after_batch_transfer(held, 0)  # as the model sees it, made where it will be used
            batches.append(held)
        if variant == "model_device_transform":  # Lightning calls the DataModule's hooks on it every step: the
            data.held = DataLoader(HeldBatches(batches), batch_size=None)  # device transform runs each time
        else:
            held_loader = DataLoader(HeldBatches(batches), batch_size=None)
    optimizer = functools.partial(torch.optim.Adam, fused=True) if args.fused_adam else torch.optim.Adam
    model = GMICLitModule(
        GMIC(num_classes=1, **gmic_options(args)),  # compile: the two ResNets (+ the whole training forward)
        train_saliency=args.saliency,
        channels_last=args.channels_last,
        optimizer=optimizer,
    )
    timer, last_step = Timer(), args.warmup + args.steps + args.profile_steps
    trainer = Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision=args.precision, max_steps=last_step,
        max_epochs=-1, limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, benchmark=cuda, callbacks=[timer],
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=held_loader, datamodule=data if held_loader is None else None)
    seconds = timer.end - timer.start
    result = (
        {
            "images_per_s": sum(timer.sizes) / seconds,  # an epoch's short last batch counted as it is
            "step_s": seconds / args.steps,
            "wait_fraction": sum(timer.waits) / seconds,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        }
        | _phases(timer.starts + [timer.end], timer.sizes, timer.epochs, timer.waits)
        | timer.pinned
        | timer.image
        | {"image_addresses": len(timer.addresses)}
    )
    if cuda:
        result |= {"peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
                   "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30} | timer.gpu  # fmt: skip
    if timer.profile and args.profile_out:
        path = Path(f"{args.profile_out}.{variant}.txt")
        path.write_text(timer.profile)
        result["profile"] = str(path)
    return result


def main() -> None:
    from timing import gmic_arguments

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="bf16-mixed", help="Trainer precision (32, bf16-mixed)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=4, help="batches each worker loads ahead")
    parser.add_argument("--standardize_on", default="worker", choices=["worker", "device"])
    parser.add_argument("--augment_on", default="worker", choices=["worker", "device"])
    parser.add_argument("--pixel_reads", default="worker", choices=["worker", "main"])
    parser.add_argument("--fused_adam", action="store_true", help="Adam(fused=True), as configs/trainer/gpu.yaml")
    parser.add_argument("--compile_device_transform", action="store_true", help="as configs/trainer/gpu.yaml")
    gmic_arguments(parser)
    parser.add_argument("--height", type=int, default=2944)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--data", help="reuse DIR/vindr + DIR/cache (tests/benchmarks/synthdata.py writes them)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--steps", type=int, default=6, help="timed steps")
    parser.add_argument("--epoch_images", type=int, default=0,
                        help="repeat the training images (same files) to at least this many an epoch")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocator, cudnn autotuning)")
    parser.add_argument("--studies", type=int, default=6, help="synthetic studies (4 images each) to cycle through")
    parser.add_argument("--saliency", default="cam", help="train_saliency")
    parser.add_argument("--channels_last", type=int, default=1, choices=[0, 1])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    parser.add_argument("--sync_debug", action="store_true", help="CUDA: fail on any host-device sync in a step")
    parser.add_argument("--profile_steps", type=int, default=0,
                        help="profile this many steps after the timed ones (torch.profiler, host and GPU)")  # fmt: skip
    parser.add_argument("--profile_out", help="write each variant's profile tables to PREFIX.VARIANT.txt")
    parser.add_argument("--variants", default="pipeline,model_only",
                        help="comma-separated: pipeline, pipeline_copy_ahead, model_only, model_only_rotating, "
                        "model_device_transform")  # fmt: skip
    parser.add_argument("--rotate", type=int, default=8,
                        help="model_only_rotating: this many held batches, fed in turn")  # fmt: skip
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from timing import require_device

    require_device(args)

    if args.only:  # child process: one variant
        print(json.dumps(_variant(args, args.only)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            root, cache = Path(args.data) / "vindr", Path(args.data) / "cache"
        else:
            from synthdata import make_data

            start = time.perf_counter()
            root, cache = make_data(Path(tmp), args.studies, (args.height, args.width), min(8, os.cpu_count() or 1))
            print(
                f"{4 * args.studies} synthetic images written and cached (npy) in {time.perf_counter() - start:.0f} s"
            )
        results = _run_variants(args, root, cache)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    failed = [name for name, result in results.items() if "failed" in result]
    if failed:  # the figures of the others are printed and written; the exit status says the run is not whole
        sys.exit(f"bench_pipeline: variant(s) failed: {', '.join(failed)} (their errors are above)")


def _run_variants(args: argparse.Namespace, root: Path, cache: Path) -> dict[str, dict]:
    """Each variant in a fresh process; prints one line each and the pipeline / model-only ratio."""
    print(
        f"Trainer.fit at {args.height} x {args.width}, {args.device}, {args.precision}, batch {args.batch}, "
        f"channels_last={bool(args.channels_last)}, compile={args.compile}, "
        f"compile_training_forward={args.compile_training_forward}, train_saliency={args.saliency}, "
        f"{args.workers} workers, standardize_on={args.standardize_on}, augment_on={args.augment_on}, "
        f"pixel_reads={args.pixel_reads}, fused Adam={args.fused_adam}, "
        f"compile_device_transform={args.compile_device_transform}, global_stem={args.global_stem}, "
        f"local_stem={args.local_stem}, "
        f"{args.steps} timed steps after {args.warmup}"
        + (", sync-debug 'error' in every step after the first" if args.sync_debug else "")
    )
    results: dict[str, dict[str, Any]] = {}
    for variant in args.variants.split(","):
        command = [sys.executable, __file__, "--only", variant, "--root", str(root), "--cache", str(cache)]
        done = subprocess.run(command + sys.argv[1:], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{variant}: failed\n{done.stderr[-4000:]}")
            results[variant] = {"failed": done.stderr[-2000:]}
            continue
        results[variant] = r = json.loads(done.stdout.strip().splitlines()[-1])
        print(_line(variant, r))
    ok = {k for k, v in results.items() if "failed" not in v}
    for pipeline in ("pipeline", "pipeline_copy_ahead"):
        if {pipeline, "model_only"} <= ok:
            ratio = results[pipeline]["images_per_s"] / results["model_only"]["images_per_s"]
            results[f"{pipeline}_over_model_only"] = {"ratio": ratio}
            print(f"{pipeline} / model only: {ratio:.2f} (1.00 = data loading costs the device nothing)")
        if {pipeline, "model_device_transform"} <= ok:
            ratio = results[pipeline]["images_per_s"] / results["model_device_transform"]["images_per_s"]
            results[f"{pipeline}_over_model_device_transform"] = {"ratio": ratio}
            print(f"{pipeline} / model_device_transform: {ratio:.2f} (loading and transfer alone)")
    if {"model_device_transform", "model_only"} <= ok:
        ratio = results["model_device_transform"]["images_per_s"] / results["model_only"]["images_per_s"]
        results["model_device_transform_over_model_only"] = {"ratio": ratio}
        print(f"model_device_transform / model only: {ratio:.2f} (the device's warp and standardization alone)")
    if {"model_only_rotating", "model_only"} <= ok:
        ratio = results["model_only_rotating"]["images_per_s"] / results["model_only"]["images_per_s"]
        results["model_only_rotating_over_model_only"] = {"ratio": ratio}
        print(f"model_only_rotating / model only: {ratio:.2f} (new input data and address every step, no transform)")
    if args.sync_debug and args.device == "cuda" and ok & {"pipeline", "pipeline_copy_ahead"}:
        print("sync-debug: no host-device synchronization in any checked step")
    return results


def _line(variant: str, r: dict) -> str:
    wait = 100 * r["wait_fraction"]
    line = (f"{variant:>22}: {r['images_per_s']:8.2f} img/s  {r['step_s']:7.3f} s/step  "
            f"waiting for data {wait:5.1f}%  peak RSS {r['peak_rss_gib']:.2f} GiB")  # fmt: skip
    if "peak_allocated_gib" in r:
        line += f"  GPU peak {r['peak_allocated_gib']:.1f} GiB allocated ({r['peak_reserved_gib']:.1f} reserved)"
    if "first_half_images_per_s" in r:
        line += (f"  halves {r['first_half_images_per_s']:.1f} / {r['second_half_images_per_s']:.1f} img/s, wait "
                 f"median {r['wait_ms_median']:.1f} ms max {r['wait_ms_max']:.1f} ms")  # fmt: skip
    if r.get("epoch_boundaries"):
        line += (f"  {r['epoch_boundaries']} epoch ends in the window, {r['boundary_excess_s']:.3f} s each; within "
                 f"epochs {r['within_epochs_images_per_s']:.1f} img/s")  # fmt: skip
    if "pinned_allocs" in r:
        line += (f"  pinned blocks made {r['pinned_allocs']:.0f} ({r['pinned_alloc_s']:.2f} s), peak "
                 f"{r['pinned_peak_gib']:.2f} GiB")  # fmt: skip
    if "gpu_util_mean" in r:
        line += f"  GPU util mean {r['gpu_util_mean']:.0f}% (min {r['gpu_util_min']:.0f}%)"
    if "sm_clock_mhz_mean" in r:
        line += (f"  SM clock mean {r['sm_clock_mhz_mean']:.0f} MHz (min {r['sm_clock_mhz_min']:.0f}, max possible "
                 f"{r['sm_clock_mhz_max_possible']:.0f}), power mean {r['power_w_mean']:.0f} W of "
                 f"{r['power_limit_w']:.0f}, up to {r['temperature_c_max']:.0f} C")  # fmt: skip
    if "power_capped_share" in r:
        line += (f"  clocks held down for power {100 * r['power_capped_share']:.0f}% / heat "
                 f"{100 * r['heat_slowdown_share']:.0f}% of samples")  # fmt: skip
    if "image_stride" in r:
        line += (f"  model input {r['image_dtype']} strides {tuple(r['image_stride'])} at {r['image_addresses']} "
                 "address(es)")  # fmt: skip
    return line


if __name__ == "__main__":
    main()
