"""VinDrMammoDataModule: the VinDr-Mammo index, the cache or the DICOMs, augmentation, and batching.

Every dataset yields one sample dict: ``image (1, H, W)`` float32 standardized per image
(with ``standardize_on: device``, uint16 that ``on_after_batch_transfer`` standardizes on the device),
``label (C,)`` float32 multi-hot, ``boxes (M, 4)`` float32 xyxy in the input frame, ``box_labels (M,)``
int64, ``image_id`` str and ``meta`` (``study_id``, ``laterality``, ``view``, ``path``, ``split``,
``geometry``: the plain dict that ``geometry.boxes_to_original`` inverts, and ``error`` for predict
samples that could not be read). With ``standardize_on: device``, an image with DICOM padding also carries
``padding (1, H, W)`` bool (True: padding), which ``on_after_batch_transfer`` warps and hands to
``standardize_batch``; images without padding have no such key. ``collate_samples`` keeps boxes per image.
With ``pixel_reads: main`` a cached image travels as a ``PixelRef`` and the batch's ``image`` as a ``PixelBatch``
until the pin-memory thread or ``on_before_batch_transfer`` reads it (``data/pixel_reads.py``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Literal, cast

import cv2
import lightning as L
import torch
from lightning.fabric.utilities import move_data_to_device
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.fabric.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader

from wsod_mammo.data.cached_records import (
    Cache,
    check_cache_lateralities,
    check_cache_sizes,
    drop_missing,
    open_cache,
    warn_if_partly_cached,
)
from wsod_mammo.data.data_warnings import ImageWarnings
from wsod_mammo.data.dataset import (
    Missing,
    PixelReads,
    VinDrDataset,
    WorkerStart,
    collate_samples,
    seed_worker,
    worker_context,
)
from wsod_mammo.data.device_augment import DeviceAugmentTransform, compiled_device_transform, device_transform
from wsod_mammo.data.errors import DataError
from wsod_mammo.data.geometry import RESIZE_MODES
from wsod_mammo.data.pixel_reads import read_pixel_batch, staged_pixels_ready
from wsod_mammo.data.predict_data import PredictDataset, find_predict_inputs
from wsod_mammo.data.prepare import MANIFEST
from wsod_mammo.data.resume_sampling import ResumeWithinEpoch, ShardResumeWithinEpoch
from wsod_mammo.data.sampling import EpochShuffleSampler
from wsod_mammo.data.synthetic import check_synthetic_options
from wsod_mammo.data.transforms import AugmentationConfig, BoxTransform
from wsod_mammo.data.vindr import FINDING_CSV, ImageRecord, Selection, load_records
from wsod_mammo.data.vindr_selection import (
    check_distinct_classes,
    check_normal_max_birads,
    describe_splits,
    one_class_warning,
    select_records,
    split_train_val,
    unassessed_normals_left_out,
)
from wsod_mammo.logging_setup import package_log_level, said_by_rank_zero

log = logging.getLogger(__name__)
StandardizeOn = Literal["worker", "device"]
AugmentOn = Literal["worker", "device"]
_NO_TENSORS = frozenset({"image_id", "meta"})  # batch keys that never hold a tensor: nothing to move to the device
# Lightning's warning on every fit resumed within an epoch, for any sampler that keeps no position; the resumed
# sampler here goes on after the batches trained (bit for bit), so its "unreliable results" and advice are wrong there
NOT_RESUMABLE_WARNING = "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is"
# Lightning's advice for a loader of fewer than 2 workers on a machine of more cores ("Consider increasing the value of
# the `num_workers` argument`"): a loader given fewer than num_workers has one batch to load, more would only idle
FEW_WORKERS_WARNING = "The '{}_dataloader' does not have many workers"


def check_loader_options(val_fraction: float, batch_size: int, eval_batch_size: int | None, num_workers: int) -> None:
    """Refuse impossible loader options when the data module is built, before any run folder or W&B run exists
    (they used to fail at the first batch, or at the split, after both)."""
    if not 0.0 < val_fraction < 1.0:  # validation picks the best checkpoint and the detection thresholds
        raise ValueError(
            f"data.val_fraction: expected a fraction in (0, 1) of the training studies held out for validation, "
            f"found {val_fraction}"
        )
    for option, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"data.{option}: expected at least 1 image per batch, found {value}")
    if num_workers < 0:
        raise ValueError(f"data.num_workers: expected 0 (load in the main process) or more, found {num_workers}")


def check_data_path_options(
    standardize_on: str, augment_on: str, pixel_reads: str, copy_ahead: bool, compile_device_transform: bool
) -> None:
    """Refuse a data path whose parts do not fit together: augmentation, pixel reads, copying ahead and the compiled
    transform on the device each need standardization there (``standardize_on: device``), copying ahead needs the
    pixels read by the main process (``pixel_reads: main``)."""
    if standardize_on not in ("worker", "device"):
        raise ValueError(f"data.standardize_on: expected 'worker' or 'device', got {standardize_on!r}")
    if augment_on not in ("worker", "device") or (augment_on == "device" and standardize_on != "device"):
        raise ValueError(f"data.augment_on: expected 'worker', or 'device' with standardize_on: device, got "
                         f"augment_on={augment_on!r}, standardize_on={standardize_on!r}")  # fmt: skip
    if pixel_reads not in ("worker", "main") or (pixel_reads == "main" and standardize_on != "device"):
        raise ValueError(f"data.pixel_reads: expected 'worker', or 'main' with standardize_on: device, got "
                         f"pixel_reads={pixel_reads!r}, standardize_on={standardize_on!r}")  # fmt: skip
    if copy_ahead and pixel_reads != "main":
        raise ValueError(f"data.copy_ahead: the pin-memory thread copies ahead only what it reads, with "
                         f"pixel_reads: main (got pixel_reads={pixel_reads!r})")  # fmt: skip
    if compile_device_transform and standardize_on != "device":
        raise ValueError("data.compile_device_transform: there is no device transform to compile without "
                         f"standardize_on: device (got standardize_on={standardize_on!r})")  # fmt: skip


class VinDrMammoDataModule(L.LightningDataModule):
    """VinDr-Mammo (or a synthetic dataset in its layout) for GMIC training, evaluation and prediction.

    Args:
        data_root: VinDr-Mammo folder (``finding_annotations.csv``, ``images/<study>/<image>.dicom``).
        cache_dir: a ``wsod prepare`` cache; used when its manifest exists (images it lacks are decoded).
        classes: finding classes, one output each (default ``["Mass"]``).
        selection: ``balanced`` (as many No Finding images as positives), ``all`` or ``paper``.
        normal_max_birads: the negatives are No Finding images of breasts assessed at most this BI-RADS. VinDr boxes
            only non-benign findings, image by image: No Finding also covers benign breasts (2) and views of a
            breast whose suspicious finding was boxed in its other view only (3-5). 5 (the default, every No
            Finding image, as far as is known the study's reading) keeps them; 2 leaves out the views of suspicious
            breasts, 1 keeps only breasts assessed normal. The terminal's dataset line counts the 3-5 ones.
        input_size: ``(H, W)`` of the model input.
        crop_breast: crop to the breast before resizing.
        val_fraction: fraction of training studies held out for validation (grouped by study).
        seed: seed of negative sampling, the validation split, shuffling and augmentation.
        augmentation: training augmentation (``enabled: false`` switches it off); default ``AugmentationConfig()``;
            its ``seed``, when given, draws the augmentation apart from ``seed`` (same order, other crops).
        num_workers: loading processes per loader (0: the main process loads), at most as many as the loader has
            batches: predicting two images starts one or two, not an idle four.
        prefetch_factor: batches each worker loads ahead (PyTorch's default, 2, when None).
        worker_start: how the ``num_workers`` processes start. ``forkserver`` (the default) forks them from a
            single-threaded server that has imported the dataset code once (a one-off 2.7-2.9 s per training process and
            the server's ~335 MiB on a 2-core CPU, ``bench_worker_start.py``); ``fork`` copies the training process
            itself, instant, but with its threads' locks as they are (W&B's, Lightning's, the pin-memory thread's),
            which can hang a worker at start; ``spawn`` starts each worker as a fresh interpreter (``data/dataset.py``,
            ``worker_context``). With ``forkserver`` and ``spawn`` each worker imports the ``__main__`` script: a script
            of your own needs the ``if __name__ == "__main__":`` guard.
        missing: ``error`` stops on a missing or unreadable image; ``skip`` leaves out, with one warning listing
            them, the images missing from disk or that ``wsod prepare`` could not read; an image that fails to
            decode only when its batch is made is replaced there by the next readable one (a warning names it), so
            that epoch sees that neighbour twice and evaluation (which counts each image once) leaves it out.
        standardize_on: ``worker`` standardizes each image in the dataloader worker (float32 batches);
            ``device`` ships uint16 batches (half the bytes to pin and copy) and standardizes them on the
            training device in ``on_after_batch_transfer``, saving the workers three passes per image.
        augment_on: ``worker`` augments training images in the workers (albumentations, two cv2 resamplings);
            ``device`` (needs ``standardize_on: device``) ships the cache's pixels and one affine matrix per
            image and warps the batch in one ``grid_sample`` on the device (``data/device_augment.py``).
        pixel_reads: ``worker`` ships each cached image's pixels from the workers through shared memory; ``main``
            (needs ``standardize_on: device``; training images also ``augment_on: device``) ships only where the
            pixels lie in the NPY cache, and the main process reads them with a few threads straight into the
            pinned batch, in the DataLoader's pin-memory thread (``data/pixel_reads.py``): one host copy of each
            image instead of three, and the pin-memory thread's copy per batch, which serves every worker, 2.7-3.6x
            cheaper (``bench_loader.py``). Where nothing pins (CPU), ``on_before_batch_transfer`` reads the batch.
        copy_ahead: with ``pixel_reads: main`` on a GPU, the pin-memory thread also copies each batch's images to
            the GPU, on a CUDA stream of its own, while the previous step computes; copied in the step (the default)
            they go in stream order between two steps' kernels (68 MB per batch of six). No effect without CUDA.
        compile_device_transform: run the device half (warp with ``augment_on: device``, standardization) through
            ``torch.compile``, which fuses its full-resolution passes (1.62x on one CPU thread at 2944 x 1920,
            ``bench_loader.py``). Compiles on the first batch of each kind (train, evaluation, with padding).
        predict_paths: files and folders for ``predict`` (DICOMs by content, PNG/TIFF); default: the test split.
        predict_laterality: ``L`` or ``R`` for non-DICOM predict inputs; None infers it from the image.
        resize: ``stretch`` the breast crop to ``input_size`` (the study), ``fit`` it (aspect kept, one scale,
            padded with background), or keep it ``native`` (scale 1, cut to a window of ``input_size`` or padded:
            the closest to nyukat/GMIC's test-time input, see ``geometry.native_window``); boxes map back exactly
            in every mode.
        synthesize_if_missing: the one location that may be synthesized (the demo's own default,
            ``runs/demo/data``): when ``data_root`` is that folder and has no CSV, ``prepare_data`` writes a
            synthetic dataset there and says so on the terminal. Any other ``data_root`` must hold the data, so a
            mistyped path fails instead of silently training on synthetic images.
        synthetic_studies, synthetic_size, synthetic_mass_radius: its number of studies, image ``(H, W)`` and
            mass radius range (fractions of the width; see ``make_synthetic_dataset``).
    """

    def __init__(
        self,
        data_root: str,
        cache_dir: str | None = None,
        classes: list[str] | None = None,
        selection: Selection = "balanced",
        normal_max_birads: int = 5,
        input_size: tuple[int, int] = (2944, 1920),
        crop_breast: bool = True,
        val_fraction: float = 0.1,
        seed: int = 42,
        batch_size: int = 6,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        persistent_workers: bool = True,
        worker_start: WorkerStart = "forkserver",
        pin_memory: bool = True,
        prefetch_factor: int | None = None,
        augmentation: AugmentationConfig | None = None,
        missing: Missing = "error",
        standardize_on: StandardizeOn = "worker",
        augment_on: AugmentOn = "worker",
        pixel_reads: PixelReads = "worker",
        copy_ahead: bool = False,
        compile_device_transform: bool = False,
        predict_paths: list[str] | str | None = None,
        predict_laterality: Literal["L", "R"] | None = None,
        resize: Literal["stretch", "fit", "native"] = "stretch",
        synthesize_if_missing: str | bool | None = None,
        synthetic_studies: int = 24,
        synthetic_size: tuple[int, int] = (512, 320),
        synthetic_mass_radius: tuple[float, float] = (0.04, 0.08),
    ):
        super().__init__()
        if missing not in ("error", "skip"):
            raise ValueError(f"data.missing: expected 'error' or 'skip', got {missing!r}")
        check_data_path_options(standardize_on, augment_on, pixel_reads, copy_ahead, compile_device_transform)
        self.standardize_on, self.augment_on, self.pixel_reads = standardize_on, augment_on, pixel_reads
        self.copy_ahead = copy_ahead
        # torch.compile only wraps here; it compiles on the first batch of each kind
        self._device_transform = compiled_device_transform() if compile_device_transform else device_transform
        # `~` read as the shell reads it (YAML and `--opt=~/x` leave it to the program): `data_root: ~/vindr` named a
        # folder `~` in the working directory ("does not exist" of a dataset that does), `cache_dir: ~/cache` made one
        self.data_root, self.cache_dir = os.path.expanduser(data_root), cache_dir and os.path.expanduser(cache_dir)
        check_normal_max_birads(normal_max_birads)
        self.normal_max_birads = normal_max_birads
        if classes is not None and not classes:
            raise ValueError("data.classes: expected at least one finding class (Mass, the default), found []")
        self.class_names = list(classes or ["Mass"])
        check_distinct_classes(self.class_names)
        self.image_warnings = ImageWarnings()
        self.selection, self.input_size, self.crop_breast = (
            selection,
            (int(input_size[0]), int(input_size[1])),
            crop_breast,
        )
        check_loader_options(val_fraction, batch_size, eval_batch_size, num_workers)
        self.val_fraction, self.seed, self.missing = val_fraction, seed, missing
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.persistent_workers, self.pin_memory = num_workers, persistent_workers, pin_memory
        self.worker_start = worker_start
        worker_context(worker_start)  # an unknown or unavailable method is refused here, before any run starts
        self.prefetch_factor = prefetch_factor
        self.augmentation = augmentation or AugmentationConfig()
        paths = [predict_paths] if isinstance(predict_paths, str) else predict_paths
        self.predict_paths = None if paths is None else [os.path.expanduser(p) for p in paths]
        self.predict_laterality = predict_laterality
        if resize not in RESIZE_MODES:
            raise ValueError(f"data.resize: expected one of {RESIZE_MODES}, got {resize!r}")
        self.resize = resize
        if isinstance(synthesize_if_missing, bool):
            raise ValueError(
                f"data.synthesize_if_missing: expected the data_root that may be synthesized (e.g. runs/demo/data), "
                f"found {synthesize_if_missing}: a mistyped data_root must not silently become a synthetic dataset"
            )
        self.synthesize_if_missing = synthesize_if_missing and os.path.expanduser(synthesize_if_missing)
        self.synthetic_studies = synthetic_studies
        self.synthetic_size = synthetic_size
        self.synthetic_mass_radius = (float(synthetic_mass_radius[0]), float(synthetic_mass_radius[1]))
        # refused now, naming the option, not in a traceback when the data is written
        names = {"n_studies": "data.synthetic_studies", "size": "data.synthetic_size",
                 "mass_radius": "data.synthetic_mass_radius"}  # fmt: skip
        check_synthetic_options(synthetic_studies, *synthetic_size, self.synthetic_mass_radius, names)
        self.datasets: dict[str, VinDrDataset | PredictDataset] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def augmentation_seed(self) -> int:
        """The augmentation draws' seed: ``augmentation.seed``, or ``seed`` when that is None."""
        return self.seed if self.augmentation.seed is None else self.augmentation.seed

    def prepare_data(self) -> None:
        """Write the synthetic dataset when asked to and ``data_root`` has no VinDr CSV (rank 0 only); not to predict
        on ``predict_paths``, which reads no dataset."""
        if self.predict_paths and self.trainer is not None and self.trainer.predicting:
            return
        own = (
            self.synthesize_if_missing and Path(self.synthesize_if_missing).resolve() == Path(self.data_root).resolve()
        )
        if own and not (Path(self.data_root) / FINDING_CSV).is_file():
            from wsod_mammo.data.synthetic import synthesize_once

            # a [wsod] line on stderr as every other: stdout stays for what a command prints as data
            log.info("data_root %s has no %s: writing a SYNTHETIC demo dataset there", self.data_root, FINDING_CSV)
            height, width = self.synthetic_size
            synthesize_once(
                self.data_root, n_studies=self.synthetic_studies, height=height, width=width, seed=self.seed,
                mass_radius=self.synthetic_mass_radius,
            )  # fmt: skip

    def _records(self, cache: Cache | None) -> dict[str, list[ImageRecord]]:
        root = Path(self.data_root)
        if not (root / FINDING_CSV).is_file():
            what = "does not exist" if not root.exists() else f"has no {FINDING_CSV}"
            # `wsod predict --ckpt_path FILE` without inputs read the predict defaults' data_root `.`, which the user
            # never gave: say what predict reads it for and what it takes instead
            predicting = self.trainer is not None and self.trainer.predicting
            hint = "; predict reads it only without --data.predict_paths, the images to predict" if predicting else ""
            raise FileNotFoundError(
                f"data_root: {root} {what}; expected a VinDr-Mammo folder ({FINDING_CSV}, images/<study>/<image>.dicom)"
                f" (synthetic data is written only to synthesize_if_missing: {self.synthesize_if_missing}){hint}"
            )
        with said_by_rank_zero(self._says_data_warnings):  # its CSV warnings (repeated rows, unused boxless rows)
            records = load_records(root, self.class_names)  # are the same in every DDP process: said once
        selected = select_records(records, self.class_names, self.selection, self.seed, self.normal_max_birads)
        unassessed = unassessed_normals_left_out(records, self.normal_max_birads)
        if unassessed and self._says_data_warnings:
            log.warning("data %s: %s", root, unassessed)
        train, val = split_train_val(selected, self.val_fraction, self.seed)  # before: a lost file moves no study
        if cache is not None:
            check_cache_sizes(selected, cache[1], self.cache_dir, root)
            check_cache_lateralities(selected, cache[1], self.cache_dir, root)
        kept = {r.image_id for r in drop_missing(selected, cache, self.missing, say=self._says_data_warnings)}
        splits = {"train": train, "val": val, "test": [r for r in selected if r.split == "test"]}
        return {name: [r for r in records if r.image_id in kept] for name, records in splits.items()}

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of ``stage`` (``fit``, ``validate``, ``test``, ``predict`` or all); what is wrong with
        the data raises DataError."""
        try:
            self._setup(stage)
        except (ValueError, OSError) as err:  # the messages name the file, row or option
            raise DataError(str(err)) from err

    def _setup(self, stage: str | None) -> None:
        cache = open_cache(self.cache_dir, self.input_size, self.crop_breast, self.resize)
        in_worker = self.standardize_on == "worker"
        train_tf: BoxTransform | DeviceAugmentTransform
        train_tf = BoxTransform(self.input_size, self.augmentation, train=True, standardize=in_worker)
        if self.augment_on == "device" and self.augmentation.enabled:
            train_tf = DeviceAugmentTransform(self.input_size, self.augmentation)
        train_tf.set_seed(self.augmentation_seed)
        eval_tf = BoxTransform(self.input_size, self.augmentation, train=False, standardize=in_worker)
        if stage == "predict" and self.predict_paths:
            self.datasets["predict"] = self._predict_inputs(self.predict_paths, eval_tf)
            return
        splits = self._records(cache)
        log.info("data %s: %s", self.data_root, describe_splits(splits, self.class_names))
        one_class = one_class_warning(splits["val"], self.class_names) if stage in ("fit", "validate", None) else None
        if one_class and self._says_data_warnings:
            log.warning("data %s: %s", self.data_root, one_class)
        # a misspelt path read every DICOM, many times slower, unsaid
        if self.cache_dir is not None and cache is None and self._says_data_warnings:
            log.warning(
                "cache_dir %s holds no `wsod prepare` cache (no %s): every image is decoded from its DICOM; "
                "`wsod prepare --data_root %s --cache_dir %s` makes it", self.cache_dir, MANIFEST, self.data_root,
                self.cache_dir,
            )  # fmt: skip
        if cache is not None and self._says_data_warnings:
            selected_by = (f"--classes '{json.dumps(self.class_names)}' --selection {self.selection} "
                           f"--seed {self.seed} --normal_max_birads {self.normal_max_birads}")  # fmt: skip
            warn_if_partly_cached(splits, cache, selected_by)
        dataset = functools.partial(VinDrDataset, classes=self.class_names, crop_breast=self.crop_breast, cache=cache,
                                    missing=self.missing, resize=self.resize, pixel_reads=self.pixel_reads)  # fmt: skip
        self.datasets["train"] = dataset(splits["train"], transform=train_tf)
        for name in ("val", "test"):
            self.datasets[name] = dataset(splits[name], transform=eval_tf)
        # predict writes one row per image: the test split once each (selection: paper lists some twice)
        distinct = list({r.image_id: r for r in splits["test"]}.values())
        same = len(distinct) == len(splits["test"])
        self.datasets["predict"] = self.datasets["test"] if same else dataset(distinct, transform=eval_tf)

    @property
    def _says_data_warnings(self) -> bool:
        """Whether this process says the data's warnings: under DDP the first alone, not once per process."""
        return self.trainer is None or self.trainer.is_global_zero

    def _predict_inputs(self, paths: list[str], transform: BoxTransform) -> PredictDataset:
        """``predict_paths`` as a dataset: the files given, and those found in the folders given but their folder
        metadata, which is counted once (``find_predict_inputs``)."""
        files, metadata = find_predict_inputs(paths)
        if metadata and self._says_data_warnings:
            log.info("predict: left out %d file(s) of folder metadata found in the input folders, never images (the "
                     "operating system's .DS_Store, Thumbs.db, desktop.ini, macOS's ._<name> files, its trash and "
                     "search index folders, and DICOMDIR indexes, whose images the folders hold), the first "
                     "%s", len(metadata), metadata[0])  # fmt: skip
        laterality = self.predict_laterality
        return PredictDataset(files, self.num_classes, transform, self.crop_breast, laterality, self.resize)

    def _loader(
        self, name: str, shuffle: bool = False, shards: dict[str, int] | None = None, resume: tuple[int, int] = (0, 0)
    ) -> DataLoader:
        """``shards``: ``num_replicas`` and ``rank`` of a DDP run, for a shuffled loader's sharding wrapper;
        ``resume``: ``(epoch, batches)``, the batches of that epoch a resumed run trained before it stopped."""
        if name not in self.datasets:
            raise RuntimeError(f"{name} dataloader requested before setup() built the {name} dataset")
        if len(self.datasets[name]) == 0:
            raise DataError(
                f"the {name} split is empty: data_root {self.data_root} has no {'/'.join(self.class_names)} or "
                f"No Finding images for it with selection={self.selection!r}, normal_max_birads="
                f"{self.normal_max_birads} (val_fraction={self.val_fraction})"
            )
        batch_size = self.batch_size if name == "train" else self.eval_batch_size
        # no worker without a batch to load: it would start only to idle (past the CPUs, with torch's warning)
        workers = min(self.num_workers, math.ceil(len(self.datasets[name]) / batch_size))
        if workers < self.num_workers:  # Lightning's advice to raise num_workers (with 1, on a many-core machine)
            warnings.filterwarnings("ignore", message=FEW_WORKERS_WARNING.format(name), category=PossibleUserWarning)
        if workers > 0 and self.worker_start == "fork":  # forked workers inherit it (see seed_worker)
            cv2.setNumThreads(1)
        # Training order and augmentation follow (seed, epoch) alone, so `--ckpt_path last` resumes exactly.
        sampler: EpochShuffleSampler | DistributedSamplerWrapper | ResumeWithinEpoch | None = None
        if shuffle:
            sampler = self._shuffled(name, batch_size, shards, resume)
        return DataLoader(
            self.datasets[name],
            batch_size=batch_size,
            sampler=sampler,
            drop_last=False,
            num_workers=workers,
            persistent_workers=self.persistent_workers and workers > 0,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            multiprocessing_context=worker_context(self.worker_start) if workers > 0 else None,
            collate_fn=functools.partial(collate_samples, copy_ahead=self.copy_ahead),
            worker_init_fn=functools.partial(seed_worker, log_level=package_log_level(), owner_pid=os.getpid()),
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _shuffled(
        self, name: str, batch_size: int, shards: dict[str, int] | None, resume: tuple[int, int]
    ) -> EpochShuffleSampler | DistributedSamplerWrapper | ResumeWithinEpoch:
        """The training sampler: (seed, epoch)-keyed order, sharded under DDP (the shuffle is the inner sampler's:
        the wrapper only shards), and within an epoch a fit resumed past its first batches goes on after them."""
        inner = EpochShuffleSampler(len(self.datasets[name]), self.seed, self.augmentation_seed)
        sampler = DistributedSamplerWrapper(inner, shuffle=False, **shards) if shards else inner
        epoch, done = resume
        batches = math.ceil(len(sampler) / batch_size)
        if not 0 < done < batches:  # a fresh fit, or one resumed at an epoch's start or end
            return sampler
        log.info("resuming epoch %d at its batch %d of %d: the batches trained before the stop are not drawn again",
                 epoch, done, batches)  # fmt: skip
        warnings.filterwarnings("ignore", message=NOT_RESUMABLE_WARNING, category=PossibleUserWarning)
        if shards:
            return ShardResumeWithinEpoch(inner, done * batch_size, epoch, **shards)
        return ResumeWithinEpoch(inner, done * batch_size, epoch)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Say the warnings of an image seen for the first time (``data_warnings``; predict's inputs say theirs as
        they are read), and read a ``pixel_reads: main`` batch that nothing pinned (CPU runs) in this process, before
        the transfer."""
        if not (self.trainer is not None and self.trainer.predicting):
            self.image_warnings.report(batch)
        return read_pixel_batch(batch)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Lightning's move, minus its walk through every image's ``meta`` and ``image_id``, which hold no tensor
        (the sample contract): 0.37 ms of the main thread per batch of six on this project's 2-core CPU, every
        training step, against 0.03 ms without it (``bench_loader.py``'s transfer-walk row)."""
        if not isinstance(batch, dict):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        return {key: value if key in _NO_TENSORS else move_data_to_device(value, device)
                for key, value in batch.items()}  # fmt: skip

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Warp (``augment_on: device``), then standardize (``standardize_on: device``) where the batch now lives;
        the padding mask, if any, is warped alike and consumed by the standardization. No host sync. Returns a new
        dict: the one it is given stays as it was (a held batch can be transformed again)."""
        batch = dict(staged_pixels_ready(batch))
        padding, theta = batch.pop("padding", None), batch.pop("theta", None)
        if self.standardize_on == "device":
            batch["image"] = self._device_transform(batch["image"], theta, padding)
        return batch

    def train_dataloader(self) -> DataLoader:
        """The sampler starts at the epoch about to run: Lightning creates the iterator (and workers prefetch)
        before it calls ``set_epoch``, so a run resumed at epoch k would otherwise replay epoch 0's order. Under
        DDP the sharding wrapper is made here, at that epoch too: Lightning's own would be made at epoch 0 and
        reshuffle the first resumed epoch otherwise than the uninterrupted run did."""
        if self.trainer is None:
            return self._loader("train", shuffle=True)
        shards = self.trainer.distributed_sampler_kwargs
        replace = getattr(self.trainer._accelerator_connector, "use_distributed_sampler", True)  # Trainer option
        sharded = bool(shards and shards.get("num_replicas", 1) > 1 and replace)
        # Lightning annotates the counter narrower than the _ProcessedTracker it is
        epoch = self.trainer.fit_loop.epoch_progress.current.processed  # type: ignore[attr-defined]
        resume = (epoch, batches_done_within_epoch(self.trainer))
        if (note := unvalidated_epoch_note(self.trainer)) and self.trainer.is_global_zero:
            log.warning("resuming: %s", note)
        loader = self._loader("train", shuffle=True, shards=shards if sharded else None, resume=resume)
        sampler = cast("EpochShuffleSampler | DistributedSamplerWrapper | ResumeWithinEpoch", loader.sampler)
        sampler.set_epoch(epoch)
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Each process predicts a share of the inputs, repeating none (Lightning's unrepeated sampler), so each
        needs one: with fewer inputs Lightning failed on a bare assertion in every process."""
        processes = self.trainer.world_size if self.trainer is not None else 1
        inputs = len(self.datasets.get("predict", ()))
        if 0 < inputs < processes:
            raise DataError(
                f"predict: {inputs} input(s) for {processes} processes (trainer.devices x trainer.num_nodes): each "
                f"process needs one; run it with --trainer.devices {inputs}"
            )
        return self._loader("predict")


def batches_done_within_epoch(trainer: Any) -> int:
    """How many batches of the epoch it resumes a fit restarting within an epoch had trained (Lightning goes on at
    the next one); 0 for a fresh fit or one resumed at an epoch's start or end. Read when the training loader is
    made, the loops' progress restored from the checkpoint: an epoch started but not processed (Lightning's
    ``RESTARTED_MID_EPOCH``), and the batches processed in it."""
    if not restarted_within_epoch(trainer) or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
        return 0  # after an epoch's last batch Lightning counts the epoch done and goes on at the next
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


def restarted_within_epoch(trainer: Any) -> bool:
    """Whether the fit restarts from a checkpoint saved within an epoch (Lightning's ``RESTARTED_MID_EPOCH``: an
    epoch started, not processed), its loops' progress restored."""
    fit = trainer.fit_loop
    epochs = fit.epoch_progress.total
    within = epochs.started == epochs.ready and epochs.processed == epochs.started - 1 == epochs.completed
    return bool(fit.restarting and within)


def unvalidated_epoch_note(trainer: Any) -> str | None:
    """The warning for a fit resumed from a checkpoint saved after an epoch's last batch but before its
    validation: Lightning counts that epoch done and goes on at the next one without validating it, so the best
    checkpoint never weighs it; None otherwise."""
    if not restarted_within_epoch(trainer) or not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
        return None
    epoch = trainer.fit_loop.epoch_progress.current.processed
    return (
        f"the checkpoint was saved after epoch {epoch}'s last batch, before its validation: Lightning goes on at epoch "
        f"{epoch + 1} without validating epoch {epoch} (its best checkpoint will not weigh it)"
    )
