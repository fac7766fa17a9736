"""A model gone NaN or infinite: the run stops saying where and what to change, keeps the checkpoints written before
it and writes none of the diverged weights; test refuses to report NaN probabilities and predict says so per image.
Before, the BCE refused the NaN ("all elements of input should be between 0 and 1", a device-side assertion on
CUDA) in a 100-line traceback, a checkpoint could hold the diverged weights, and predict wrote NaN as results.
A model collapsed to one answer for every image is said too: its AUROC of 0.5 read as a weak model, not a broken one."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_configs import checkpoint, run_wsod, tiny_config, write_config
from torchmetrics.functional.classification import binary_auroc

from wsod_mammo.training.collapse import COLLAPSE_SPREAD, ProbabilitySpread, constant_probabilities
from wsod_mammo.training.divergence import DivergenceWatch
from wsod_mammo.training.loss import _bce

_wsod = functools.partial(run_wsod, check=False)  # most runs here are meant to fail: each says its exit status


def test_the_bce_of_finite_probabilities_is_unchanged_bit_for_bit_and_a_nan_one_is_nan() -> None:
    """The training numbers (and the README's figures) must not move: same values and gradients as before."""

    def before(p: torch.Tensor, t: torch.Tensor, reduction: str) -> torch.Tensor:
        clamped = p + (p.clamp(1e-6, 1 - 1e-6) - p).detach()
        return F.binary_cross_entropy(clamped, t, reduction=reduction)

    for n, reduction in ((6, "mean"), (37, "none")):
        p = torch.rand(n, 2)
        p[0, 0], p[1, 1] = 1e-9, 1 - 1e-9  # clamped in value, not in gradient
        p.requires_grad_()
        t = (torch.rand(n, 2) > 0.5).float()
        old, new = before(p, t, reduction), _bce(p, t, reduction)
        assert torch.equal(old, new)
        assert torch.equal(*(torch.autograd.grad(v.sum(), p)[0] for v in (old, new)))
    p = torch.tensor([[0.3], [float("nan")], [float("inf")]], requires_grad=True)
    t = torch.tensor([[1.0], [0.0], [1.0]])
    assert math.isnan(_bce(p, t).item())  # before: RuntimeError "all elements of input should be between 0 and 1"
    assert torch.isnan(_bce(p, t, "none")[1:]).all() and torch.isfinite(_bce(p, t, "none")[0])


def test_the_watch_keeps_the_first_bad_step_on_the_device() -> None:
    watch = DivergenceWatch()
    assert watch.first_bad_step() is None
    for step, loss in enumerate([1.0, 0.5, float("nan"), 0.7, float("inf")]):
        watch.update(torch.tensor(loss), step)
    assert watch.first_bad_step() == 2
    assert watch.first_bad_step(lambda t: torch.minimum(t, torch.tensor(1))) == 1  # another process's earlier one


def _diverging_fit(directory: Path, data_root: Path, **trainer: object) -> dict:
    settings = tiny_config(directory, data_root, num_workers=2, persistent_workers=True)
    settings["trainer"] |= {"max_epochs": 3, "limit_train_batches": 2, **trainer}
    settings["trainer"]["callbacks"].append(
        {"class_path": "cli_configs.LearningRateFrom", "init_args": {"epoch": 1, "lr": 1.0e20}}
    )
    return settings


def test_a_fit_that_diverges_stops_in_one_line_and_keeps_the_checkpoints_of_the_epoch_before(
    tmp_path: Path, data_root: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", _diverging_fit(tmp_path, data_root))
    fit = _wsod("fit", "--config", str(config), cwd=tmp_path)
    assert fit.returncode == 1 and "Traceback" not in fit.stderr, fit.stderr[-3000:]
    # epoch 0 trained 2 steps; epoch 1's first update (step 2) made the loss of step 3 NaN
    assert "wsod fit: training diverged: the loss was NaN or infinite at step 3 (epoch 1)" in fit.stderr
    assert "--model.optimizer.init_args.lr, 1e+20 now" in fit.stderr
    last, best = checkpoint(tmp_path), checkpoint(tmp_path, "best")
    assert f"the checkpoints written before it are kept ({best}, {last})" in fit.stderr
    for path in (last, best):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        assert saved["epoch"] == 0 and saved["global_step"] == 2, path
        assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point()), path


def test_under_ddp_one_process_s_nan_loss_stops_both_processes_alike(tmp_path: Path, data_root: Path) -> None:
    """A NaN on one process only (its shard's image): both read the first bad step over all processes and stop
    together, where one stopping alone would leave the other waiting in the next all-reduce."""
    settings = tiny_config(tmp_path, data_root, num_workers=1)
    settings["trainer"] |= {"devices": 2, "strategy": "ddp", "max_epochs": 2, "limit_train_batches": 3}
    settings["trainer"]["callbacks"].append(
        {"class_path": "cli_configs.NaNImageOn", "init_args": {"rank": 1, "batch": 1}}
    )
    config = write_config(tmp_path / "c.yaml", settings)
    fit = _wsod("fit", "--config", str(config), cwd=tmp_path, timeout=300)
    assert fit.returncode == 1 and "Traceback" not in fit.stderr, fit.stderr[-3000:]
    assert "training diverged: the loss was NaN or infinite at step 1 (epoch 0)" in fit.stderr
    assert not list(tmp_path.glob("runs/**/*.ckpt"))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> tuple[dict, Path]:
    """A fitted tiny run's last.ckpt (loaded) and its config; the fit's log in ``fit.stderr`` beside the config."""
    directory = tmp_path_factory.mktemp("fitted")
    settings = tiny_config(directory, data_root)
    settings["trainer"] |= {"limit_train_batches": 1}
    config = write_config(directory / "c.yaml", settings)
    fit = _wsod("fit", "--config", str(config), cwd=directory, check=True)
    (directory / "fit.stderr").write_text(fit.stderr)
    return torch.load(checkpoint(directory), map_location="cpu", weights_only=True), config


def _edited(fitted: tuple[dict, Path], name: str, key_end: str, value: float) -> tuple[Path, Path]:
    """The fitted checkpoint with the tensor whose key ends in ``key_end`` set to ``value``, saved as ``name``."""
    saved, config = fitted
    state = dict(saved["state_dict"])
    key = next(k for k in state if k.endswith(key_end))
    state[key] = torch.full_like(state[key], value)
    path = config.parent / name
    torch.save({**saved, "state_dict": state}, path)
    return path, config


@pytest.fixture(scope="module")
def nan_checkpoint(fitted: tuple[dict, Path]) -> tuple[Path, Path]:
    """The fitted checkpoint with its first convolution's weights set to a finite value so large that the model's
    probabilities are NaN (weights holding NaN themselves are refused as they are read), and its config."""
    return _edited(fitted, "nan.ckpt", "first_conv.weight", 3e38)


def test_weights_holding_nan_or_inf_are_refused_as_read_naming_the_first(tmp_path: Path) -> None:
    """A checkpoint or NYU file whose weights hold a NaN or an infinity gives NaN for every image: `wsod test`
    refused it only after running its whole split, `wsod predict` wrote every row without a probability, and a fit
    from such NYU weights said it "diverged at step 0" and to lower the learning rate."""
    from wsod_mammo.cli_checkpoints import check_checkpoint
    from wsod_mammo.models.nyu import load_nyu_checkpoint
    from wsod_mammo.training.module_from_checkpoint import module_from_checkpoint

    state = {"model.global_network.first_conv.weight": torch.ones(2), "model.fusion.weight": torch.ones(2),
             "model.global_network.bn.num_batches_tracked": torch.tensor(3)}  # fmt: skip
    state["model.fusion.weight"][1] = float("inf")
    path = tmp_path / "diverged.ckpt"
    torch.save(saved := {"state_dict": state, "pytorch-lightning_version": "2.6.0"}, path)
    match = r"diverged.ckpt: its weights hold NaN or infinite values \(first: model.fusion.weight\)"
    with pytest.raises(ValueError, match=rf"^--ckpt_path .*{match}"):
        check_checkpoint(path)
    with pytest.raises(ValueError, match=rf"^checkpoint: .*{match}"):
        module_from_checkpoint(saved, path)
    nyu = tmp_path / "sample_model_1.p"
    torch.save({"ds_net.first_conv.weight": torch.tensor([0.5, float("nan")])}, nyu)
    with pytest.raises(ValueError, match=r"^model.init_from_nyu: .*sample_model_1.p: its weights hold NaN or "
                       r"infinite values \(first: ds_net.first_conv.weight\)"):  # fmt: skip
        load_nyu_checkpoint(nyu, option="model.init_from_nyu")


def test_testing_a_checkpoint_whose_model_gives_nan_reports_nothing_and_says_so(
    tmp_path: Path, nan_checkpoint: tuple[Path, Path]
) -> None:
    path, config = nan_checkpoint
    run = _wsod("test", "--config", str(config), "--ckpt_path", str(path), cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "wsod test: the model gave NaN or infinite probabilities for" in run.stderr
    assert f"the weights of {path} give no usable figures" in run.stderr
    for name in ("table2_row.csv", "detection.json", "table1.csv"):
        assert not list(config.parent.glob(f"runs/**/{name}")), name


def test_predicting_with_a_model_that_gives_nan_writes_null_and_says_why(
    tmp_path: Path, nan_checkpoint: tuple[Path, Path], data_root: Path
) -> None:
    path, config = nan_checkpoint
    scans = sorted(p for p in data_root.rglob("*.dicom"))[:3]
    out = tmp_path / "predictions"
    run = _wsod("predict", "--config", str(config), "--ckpt_path", str(path), "--data.predict_paths",
                json.dumps([str(s) for s in scans]), "--trainer.callbacks.init_args.output_dir", str(out),
                cwd=tmp_path)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "the model gave NaN or infinite probabilities for every image read (3)" in run.stderr
    (written,) = list(out.glob("**/predictions.json"))
    records = json.loads(written.read_text())  # strict JSON: no NaN
    assert len(records) == 3 and all(r["probability"] is None for r in records)
    assert all(any("NaN or infinite" in w for w in r["warnings"]) for r in records)


def test_resuming_from_a_checkpoint_whose_model_gives_nan_stops_before_training(
    tmp_path: Path, nan_checkpoint: tuple[Path, Path]
) -> None:
    """`--ckpt_path last` after a divergence: the sanity validation finds it, before a step trains on it."""
    path, config = nan_checkpoint
    run = _wsod("fit", "--config", str(config), "--ckpt_path", str(path), "--trainer.max_epochs", "2",
                "--trainer.num_sanity_val_steps", "1", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert f"validation image(s): the weights of {path} give no usable figures" in run.stderr
    assert "nothing was trained" in run.stderr


def test_the_spread_names_a_constant_output_and_nothing_else() -> None:
    spread = ProbabilitySpread()
    spread.update(torch.full((3, 1), 0.25))
    spread.update(torch.tensor([[0.25], [float("nan")]]))  # a NaN is the divergence check's, not a spread
    assert spread.collapsed(1) == [0.25]
    assert spread.collapsed(1) is None  # read once: the next epoch starts empty
    spread.update(torch.tensor([[0.25], [0.25 + 4 * COLLAPSE_SPREAD]]))
    assert spread.collapsed(1) is None
    spread.update(torch.tensor([[0.25]]))
    assert spread.collapsed(1) is None  # one image: a constant proves nothing
    spread.update(torch.tensor([[0.1, 0.7], [0.1, 0.9]]))
    assert spread.collapsed(2) is None  # one class that varies is a classifier


def test_probabilities_that_all_lie_below_the_spread_but_rank_are_no_collapse() -> None:
    """Near 0 float32 keeps probabilities apart however small: logits -22 to -15 rank these images perfectly, and the
    absolute 1e-6 spread told the user they had collapsed to one answer, "AUROC 0.5 by ties"."""
    probabilities = torch.sigmoid(torch.tensor([-22.0, -20.0, -19.0, -17.0, -16.0, -15.0]))[:, None]
    assert binary_auroc(probabilities[:, 0], torch.tensor([0, 0, 0, 1, 1, 1])).item() == 1.0
    spread = ProbabilitySpread()
    spread.update(probabilities)
    assert spread.collapsed(1) is None
    assert constant_probabilities(probabilities) is None
    for constant in (0.0, 3e-10, 0.25, 1 - 6e-8, 1.0):  # one answer for every image is still one, at either end
        spread.update(torch.full((3, 1), constant))
        assert spread.collapsed(1) == [pytest.approx(constant)], constant
    spread.update(torch.tensor([[3e-10], [3e-10 * (1 + 1e-7)]]))  # a near-zero constant within rounding
    assert spread.collapsed(1) is not None


@pytest.fixture(scope="module")
def collapsed_checkpoint(fitted: tuple[dict, Path]) -> tuple[Path, Path]:
    """The fitted checkpoint with the fusion head's weights zeroed: every image gets sigmoid(bias)."""
    return _edited(fitted, "collapsed.ckpt", "fusion.weight", 0.0)


def test_testing_a_model_collapsed_to_one_answer_says_so_and_still_reports(
    tmp_path: Path, fitted: tuple[dict, Path], collapsed_checkpoint: tuple[Path, Path]
) -> None:
    """The figures are still written (they are what that model scores) and the log says what they mean; a model
    that varies says nothing of the kind."""
    path, config = collapsed_checkpoint
    reports = set(config.parent.glob("runs/**/table1.csv"))
    run = _wsod("test", "--config", str(config), "--ckpt_path", str(path), cwd=tmp_path, check=True)
    assert "test: the model gives every image the same fusion probability (" in run.stderr, run.stderr[-3000:]
    assert "these weights are not a trained classifier" in run.stderr
    bias = float(fitted[0]["state_dict"][next(k for k in fitted[0]["state_dict"] if k.endswith("fusion.bias"))][0])
    assert f"({torch.sigmoid(torch.tensor(bias)).item():.6g} for Mass)" in run.stderr
    assert set(config.parent.glob("runs/**/table1.csv")) - reports  # reported all the same
    fit = (config.parent / "fit.stderr").read_text()  # its validation of the model that varies
    assert fitted[0]["detection_thresholds"] and "same fusion probability" not in fit, fit[-3000:]


def test_predicting_with_a_collapsed_model_writes_its_rows_and_says_they_rank_nothing(
    tmp_path: Path, collapsed_checkpoint: tuple[Path, Path], data_root: Path
) -> None:
    path, config = collapsed_checkpoint
    scans = [str(s) for s in sorted(data_root.rglob("*.dicom"))[:3]]
    out = tmp_path / "predictions"
    run = _wsod("predict", "--config", str(config), "--ckpt_path", str(path), "--data.predict_paths",
                json.dumps(scans), "--trainer.callbacks.init_args.output_dir", str(out), cwd=tmp_path,
                check=True)  # fmt: skip
    assert "predict: the model gives every one of the 3 images read the same probabilities (" in run.stderr
    (written,) = list(out.glob("**/predictions.json"))
    assert len({r["probability"] for r in json.loads(written.read_text())}) == 1


def test_copies_of_one_image_answered_alike_are_no_collapse_but_two_images_are(tmp_path: Path) -> None:
    """Predict said the model had collapsed when its inputs were one image twice (a file and its copy)."""
    from wsod_mammo.training.predict import _constant_probabilities

    original, copy, other = tmp_path / "a.dcm", tmp_path / "copy_of_a.dcm", tmp_path / "b.dcm"
    original.write_bytes(b"DICOM pixels" * 100)
    copy.write_bytes(original.read_bytes())
    other.write_bytes(b"DICOM pixelz" * 100)  # the same size, other bytes
    rows = [{"path": str(p), "probabilities": {"Mass": 0.25}} for p in (original, copy)]
    assert _constant_probabilities(rows) is None
    assert _constant_probabilities([*rows, {"path": str(other), "probabilities": {"Mass": 0.25}}]) == "0.25 for Mass"
    assert _constant_probabilities([*rows, {"path": str(other), "probabilities": {"Mass": 0.5}}]) is None


def test_a_threshold_validated_from_a_tie_at_tpr_zero_is_marked_in_the_test_report(
    tmp_path: Path, fitted: tuple[dict, Path]
) -> None:
    """Validation stored the grid's first threshold when none found a mass, and the report called it validated: the
    checkpoint now records such ties, and test says so and marks the cells (here cam's alone)."""
    saved, config = fitted
    assert isinstance(saved["detection_thresholds_tied"], list)  # written by the fit
    path = config.parent / "tied.ckpt"
    thresholds = {**saved["detection_thresholds"], "cam": 0.1}
    torch.save({**saved, "detection_thresholds": thresholds, "detection_thresholds_tied": ["cam"]}, path)
    before = set(config.parent.glob("runs/**/detection.json"))
    run = _wsod("test", "--config", str(config), "--ckpt_path", str(path), cwd=tmp_path, check=True)
    assert "cam: its threshold 0.1 was validated from a tie at TPR 0" in run.stderr, run.stderr[-3000:]
    assert "gradcam: its threshold" not in run.stderr
    (report,) = set(config.parent.glob("runs/**/detection.json")) - before
    summary = json.loads(report.read_text())["mass"]
    assert summary["cam"]["threshold_from"].startswith("validation, from a tie at TPR 0")
    assert summary["gradcam"]["threshold_from"] == "validation"
    row = (report.parent / "table2_row.md").read_text()
    assert "TIED: validation found no mass at FPPI <= 1 at any threshold of the grid for cam:" in row
    assert "TIED: cam) |" in row.splitlines()[2]  # the row's label too, and its file's thresholds column
    (record,) = csv.DictReader(io.StringIO((report.parent / "table2_row.csv").read_text()))
    assert record["thresholds"] == "validated; tied: cam"
