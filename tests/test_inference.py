"""The Python inference API: NYU weights or a checkpoint, paths or arrays -> outputs in the original pixel frame."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pydicom
import pytest
import torch
from dicom_objects import object_without_image

from wsod_mammo.cli_checkpoints import check_checkpoint
from wsod_mammo.data.dicom import read_dicom
from wsod_mammo.data.geometry import Geometry, make_geometry
from wsod_mammo.data.images import load_padded
from wsod_mammo.data.vindr import load_records
from wsod_mammo.inference import (
    Loaded,
    Predictor,
    breast_predictions,
    nyu_to_checkpoint,
    prediction_record,
    predictions_from_outputs,
)  # fmt: skip
from wsod_mammo.models import GMIC, to_nyu_state_dict
from wsod_mammo.saliency import GradCAMPlusPlus, LayerCAM
from wsod_mammo.training.module import GMICLitModule

SIZE = (256, 192)
SMALL = {"crop_shape": (64, 64), "num_patches": 2}


@pytest.fixture(scope="module")
def nyu_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A legacy-format NYU-layout file with NYU's unused extra key, as nyukat/GMIC ships them."""
    torch.manual_seed(5)
    state = to_nyu_state_dict(GMIC(num_classes=2)) | {"shared_rep_filter.weight": torch.zeros(1024, 1024)}
    path = tmp_path_factory.mktemp("nyu") / "sample_model_1.p"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def predictor(nyu_file: Path) -> Predictor:
    return Predictor.from_nyu(nyu_file, input_size=SIZE, model_overrides=SMALL)


def test_dicom_png_and_array_of_one_mammogram_agree(predictor: Predictor, synthetic_root: Path, tmp_path: Path) -> None:
    record = next(r for r in load_records(synthetic_root) if r.laterality == "L")
    image, _ = read_dicom(record.path)
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), np.round(image * 4095).astype(np.uint16))  # 12-bit values in a 16-bit PNG, as NYU's
    dicom, from_png, from_array = predictor([record.path, png, image], methods=["gradcampp", "cam"])
    assert (dicom.laterality_source, from_png.laterality_source, from_array.laterality) == ("dicom", "inferred", "L")
    assert (dicom.study, from_png.study, from_array.study) == (record.study_id, "", "")  # the exam a DICOM names
    assert dicom.probabilities.shape == (2,) and set(dicom.maps) == {"gradcampp", "cam"}
    assert dicom.maps["cam"].shape == (2, SIZE[0] // 64, SIZE[1] // 64)
    for other in (from_png, from_array):
        # the same pixels in: the same outputs to float noise (the tiny untrained model's outputs barely move with
        # the image, so 2e-3 let an upside-down PNG read pass; seen: <= 3e-8 here, 5e-4 for a flipped image)
        np.testing.assert_allclose(other.probabilities, dicom.probabilities, atol=1e-5, rtol=0)
        for method in ("gradcampp", "cam"):
            np.testing.assert_allclose(other.maps[method], dicom.maps[method], atol=1e-5, rtol=0)
    height, width = image.shape
    assert ((dicom.boxes >= 0) & (dicom.boxes <= [width, height, width, height])).all()
    assert dicom.warnings == from_png.warnings == from_array.warnings == []
    ds = pydicom.dcmread(record.path)
    ds.PresentationIntentType = "FOR PROCESSING"
    ds.save_as(tmp_path / "raw.dcm")
    (raw,) = predictor(tmp_path / "raw.dcm")
    assert len(raw.warnings) == 1 and raw.warnings[0].startswith("a FOR PROCESSING image")


def test_breast_predictions_put_an_exams_views_of_one_side_together(
    predictor: Predictor, synthetic_root: Path, tmp_path: Path
) -> None:
    """The Python API's answer per breast, as ``wsod predict``'s breasts.json: the DICOMs of one study and side in
    one row at the mean of their probabilities, their views from the DICOM tags; a PNG names no exam."""
    records = load_records(synthetic_root)
    exam = [r for r in records if r.study_id == records[0].study_id]
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), np.round(read_dicom(exam[0].path)[0] * 4095).astype(np.uint16))
    results = predictor([*(r.path for r in exam), png])
    assert [p.view for p in results] == [*(r.view for r in exam), ""]
    rows = breast_predictions(results)
    sides = list(dict.fromkeys(r.laterality for r in exam))  # in the order of each breast's first image
    assert [(row["study"], row["laterality"]) for row in rows] == [(exam[0].study_id, side) for side in sides]
    assert sum(len(row["image_ids"]) for row in rows) == len(exam)  # every DICOM once, the PNG in none
    for row in rows:
        views = [(p, r) for p, r in zip(results, exam, strict=False) if r.laterality == row["laterality"]]
        assert row["image_ids"] == [p.source for p, _ in views] and row["views"] == [r.view for _, r in views]
        assert row["probability"] == pytest.approx(np.mean([p.probability for p, _ in views]), abs=1e-7)
        assert row["class"] == "benign" and list(row["probabilities"]) == ["benign", "malignant"]
        assert row["laterality_from"] == ["dicom"]


def test_boxes_are_in_the_original_frame_of_a_mirrored_image(predictor: Predictor, synthetic_root: Path) -> None:
    """The same breast as L, and mirrored as R: the model sees the same input, the boxes come back mirrored."""
    record = next(r for r in load_records(synthetic_root) if r.laterality == "L")
    image, _ = read_dicom(record.path)
    left, right = predictor([image, np.ascontiguousarray(image[:, ::-1])], laterality=["L", "R"], threshold=0.3)
    assert len(left.boxes) > 0 and right.geometry.flip and not left.geometry.flip
    width = image.shape[1]
    mirrored = np.stack([width - right.boxes[:, 2], right.boxes[:, 1], width - right.boxes[:, 0], right.boxes[:, 3]], 1)
    np.testing.assert_allclose(mirrored, left.boxes, atol=1e-3)
    np.testing.assert_allclose(left.scores, right.scores, atol=1e-6)


def test_checkpoint_written_from_nyu_weights_predicts_the_same(
    predictor: Predictor, nyu_file: Path, synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="wsod_mammo.models.nyu"):
        path = nyu_to_checkpoint(nyu_file, tmp_path / "nyu.ckpt", **SMALL)
    assert "shared_rep_filter.weight (1024, 1024)" in caplog.text
    check_checkpoint(path)  # what `wsod test/predict --ckpt_path` accepts
    loaded = Predictor.from_checkpoint(path, input_size=SIZE)
    record = load_records(synthetic_root)[0]
    a, b = predictor(record.path)[0], loaded(record.path)[0]
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    # NYU's two heads are named, run as they are or from the checkpoint written of them
    assert predictor.class_names == loaded.class_names == ["benign", "malignant"]
    assert (a.class_name, loaded(record.path, class_index=1)[0].class_name) == ("benign", "malignant")
    # every model option given goes into the checkpoint (gradient_target was dropped: other maps, other boxes)
    options = SMALL | {"gradient_target": "probability"}
    written = torch.load(nyu_to_checkpoint(nyu_file, tmp_path / "p.ckpt", **options), weights_only=True)
    assert written["hyper_parameters"]["model"]["init_args"]["gradient_target"] == "probability"
    assert Predictor.from_checkpoint(tmp_path / "p.ckpt", input_size=SIZE).module.model.gradient_target == "probability"


def test_a_checkpoint_of_a_compiled_fit_is_read_with_eager_networks(
    nyu_file: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    """configs/trainer/gpu.yaml fits with CUDA graphs and records it; the reader (on a laptop's CPU, say) must not
    compile for minutes before its first image: it builds the recorded GMIC with eager networks, same predictions."""
    path = nyu_to_checkpoint(nyu_file, tmp_path / "compiled.ckpt", global_stem="space_to_depth", **SMALL)
    checkpoint = torch.load(path, weights_only=True)  # recorded as LightningCLI records gpu.yaml's fit
    checkpoint["hyper_parameters"]["model"]["init_args"] |= {"compile_networks": "reduce-overhead",
                                                             "compile_training_forward": True}  # fmt: skip
    torch.save(checkpoint, path)
    loaded = Predictor.from_checkpoint(path, input_size=SIZE)
    model = loaded.module.model
    assert not model.networks_compiled and model._compiled_forward_in_one_graph is None
    assert model.global_network.stem == "space_to_depth"  # not a compile option: kept as recorded
    plain = Predictor.from_checkpoint(nyu_to_checkpoint(nyu_file, tmp_path / "plain.ckpt", **SMALL), input_size=SIZE)
    image = load_records(synthetic_root)[0].path
    np.testing.assert_allclose(loaded(image)[0].probabilities, plain(image)[0].probabilities, rtol=1e-4, atol=1e-5)


def test_a_checkpoint_naming_another_callable_is_refused_without_calling_it(nyu_file: Path, tmp_path: Path) -> None:
    """A checkpoint is data: its model's class_path used to be called if it merely started with `wsod_mammo.`
    (here it would write a dataset into `pwned`); one that records no model was rebuilt as a default GMIC."""
    path = nyu_to_checkpoint(nyu_file, tmp_path / "nyu.ckpt", **SMALL)
    checkpoint = torch.load(path, weights_only=True)
    target = tmp_path / "pwned"
    model = {"class_path": "wsod_mammo.data.synthetic.make_synthetic_dataset", "init_args": {"root": str(target)}}
    hyper_parameters = checkpoint["hyper_parameters"] | {"model": model}
    torch.save(checkpoint | {"hyper_parameters": hyper_parameters}, tmp_path / "a.ckpt")
    with pytest.raises(ValueError, match=r"a.ckpt: refusing to build wsod_mammo.data.synthetic.make_synthetic_data"):
        Predictor.from_checkpoint(tmp_path / "a.ckpt", input_size=SIZE)
    assert not target.exists()
    bare = checkpoint | {"hyper_parameters": {"predict_saliency": "cam"}}
    torch.save(bare, tmp_path / "b.ckpt")
    with pytest.raises(ValueError, match=r"b.ckpt: its hyper_parameters record no model .*--config CONFIG"):
        Predictor.from_checkpoint(tmp_path / "b.ckpt", input_size=SIZE)


def test_the_checkpoint_of_nyus_weights_loads_with_lightnings_own_loader(nyu_file: Path, tmp_path: Path) -> None:
    """The README calls ``nyu_to_checkpoint``'s file a Lightning checkpoint: ``load_from_checkpoint`` failed on it
    ("'dict' object has no attribute 'num_classes'": the model's class_path was never built)."""
    path = nyu_to_checkpoint(nyu_file, tmp_path / "nyu.ckpt", **SMALL)
    loaded = GMICLitModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert isinstance(loaded.model, GMIC) and loaded.model.num_classes == 2
    assert loaded.class_names == ["benign", "malignant"]
    expected = Predictor.from_checkpoint(path, input_size=SIZE).module.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())


def test_methods_a_checkpoint_records_by_class_path_are_built(nyu_file: Path, tmp_path: Path) -> None:
    """``wsod fit --model.train_saliency '{"class_path": ...}'`` records the method as a class_path: the Predictor
    refused every such checkpoint ("unknown saliency method {...}"). wsod_mammo's methods are built with their
    settings; a module of the user's is not imported, and the refusal says how to load it; a class_path that is no
    saliency method is refused before it is called."""
    checkpoint = torch.load(nyu_to_checkpoint(nyu_file, tmp_path / "nyu.ckpt", **SMALL), weights_only=True)

    def saved(name: str, **recorded: Any) -> Path:
        torch.save(checkpoint | {"hyper_parameters": checkpoint["hyper_parameters"] | recorded}, tmp_path / name)
        return tmp_path / name

    stage4 = {"class_path": "wsod_mammo.saliency.LayerCAM", "init_args": {"layers": ["stage4"]}}
    methods = {"train_saliency": stage4, "test_saliency": ["cam", stage4], "predict_saliency": stage4}
    module = Predictor.from_checkpoint(saved("a.ckpt", **methods), SIZE).module
    assert module.test_saliency == ["cam", "layercam"]
    assert isinstance(module.train_saliency, LayerCAM) and module.train_saliency.layers() == ("stage4",)
    assert module.predict_saliency == "layercam" and module._named("layercam").layers() == ("stage4",)
    theirs = {"class_path": "my_saliency.GradTimesActivation"}
    with pytest.raises(ValueError, match=r"b.ckpt: its model.train_saliency is my_saliency.GradTimesActivation, not "
                       r"one of wsod_mammo's.*GMICLitModule.load_from_checkpoint"):  # fmt: skip
        Predictor.from_checkpoint(saved("b.ckpt", train_saliency=theirs), SIZE)
    target = tmp_path / "pwned"
    other = {"class_path": "wsod_mammo.data.synthetic.make_synthetic_dataset", "init_args": {"root": str(target)}}
    with pytest.raises(ValueError, match=r"c.ckpt: refusing to build .*make_synthetic_dataset \(the "
                       r"model.predict_saliency must be a SaliencyMethod\)"):  # fmt: skip
        Predictor.from_checkpoint(saved("c.ckpt", predict_saliency=other), SIZE)
    assert not target.exists()


@pytest.mark.parametrize(
    ("option", "class_path"),
    [("test_saliency", "wsod_mammo.saliency.newer.ScoreCAM"), ("model", "wsod_mammo.models.gmic_v2.GMIC"),
     ("train_saliency", "wsod_mammo.saliency.ScoreCAM")],
)  # fmt: skip
def test_a_class_of_another_version_a_checkpoint_records_is_one_line_naming_it(
    nyu_file: Path, tmp_path: Path, option: str, class_path: str
) -> None:
    """A checkpoint of another wsod_mammo (a newer one's method or model) ended from_checkpoint in a bare
    ``ModuleNotFoundError: No module named 'wsod_mammo.saliency.newer'``, naming neither the file nor the entry, or
    was said to be no SaliencyMethod."""
    checkpoint = torch.load(nyu_to_checkpoint(nyu_file, tmp_path / "nyu.ckpt", **SMALL), weights_only=True)
    recorded = {"class_path": class_path, "init_args": {}}
    hparams = checkpoint["hyper_parameters"] | {option: [recorded] if option == "test_saliency" else recorded}
    torch.save(checkpoint | {"hyper_parameters": hparams}, tmp_path / "newer.ckpt")
    with pytest.raises(ValueError, match=rf"newer.ckpt: its (model.)?{option} is {class_path}, which wsod_mammo .* "
                       r"does not have \(a checkpoint of another version\?\)"):  # fmt: skip
        Predictor.from_checkpoint(tmp_path / "newer.ckpt", SIZE)


def test_a_checkpoint_of_a_native_input_frame_predicts_in_it(nyu_file: Path, tmp_path: Path) -> None:
    """``from_checkpoint`` takes the resize mode the weights were trained with (``input_frame``), ``native`` too."""
    path = nyu_to_checkpoint(nyu_file, tmp_path / "nyu.ckpt", **SMALL)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["input_frame"] = {"input_size": [128, 128], "crop_breast": True, "resize": "native"}
    torch.save(checkpoint, path)
    loaded = Predictor.from_checkpoint(path)
    assert (loaded.input_size, loaded.resize) == ((128, 128), "native")
    image = np.full((300, 200), 0.01, np.float32)
    image[40:260, :140] = 0.4
    (result,) = loaded(image, laterality="L")
    assert result.geometry.resize == "native" and result.geometry.crop == (0, 86, 128, 214)  # cut: 128 x 128
    # a module loaded in Python (load_from_checkpoint) ran at 2944 x 1920, stretched, whatever it was trained at
    module = GMICLitModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    built = Predictor(module)
    assert (built.input_size, built.resize, built.crop_breast) == ((128, 128), "native", True)
    assert Predictor(module, (256, 192), resize="fit").input_size == (256, 192)  # what is given wins
    assert Predictor(GMICLitModule(GMIC(**SMALL))).input_size == (2944, 1920)  # none recorded: the study's frame


def test_bad_inputs_name_what_is_wrong(predictor: Predictor, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: neither a DICOM"):
        predictor(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"a float image must lie in \[0, 1\]"):
        predictor(np.full((64, 32), 3.0, np.float32))
    with pytest.raises(ValueError, match=r"at least 2x2 pixels, found shape \(0, 5\)"):  # was a segfault in cv2
        predictor(np.zeros((0, 5), np.uint8))
    with pytest.raises(ValueError, match="laterality: expected 'L', 'R' or None"):
        predictor(np.zeros((64, 32), np.uint8), laterality="left")


def test_an_unreadable_array_is_named_by_its_index_once(predictor: Predictor) -> None:
    """It used to be "array: ..." when raised (which array?) and "array 1: array: ..." when reported."""
    arrays = [np.zeros((64, 32), np.uint8), np.full((64, 32), 3.0, np.float32)]
    with pytest.raises(ValueError, match=r"^array 1: a float image must lie in \[0, 1\]"):
        predictor(arrays, laterality="L")
    reported = predictor(arrays, laterality="L", errors="report")[1]
    assert reported.source == "array 1" and reported.error.startswith("array 1: a float image must lie in [0, 1]")
    assert reported.error.count("array") == 1
    holed = np.full((64, 32), 0.5, np.float32)
    holed[:10, :10] = np.nan  # said as such, not as "values in [nan, nan]"
    (reported,) = predictor(holed, laterality="L", errors="report")
    assert reported.error == "array 0: a float image must lie in [0, 1], found 100 NaN or infinite pixels"


def test_a_big_endian_array_reads_as_its_native_twin(predictor: Predictor) -> None:
    """uint16 pixels in big-endian byte order (``np.fromfile(raw, ">u2")``) were refused as not uint16 (``found
    >u2``)."""
    image = (np.arange(64 * 32).reshape(64, 32) % 4096).astype(np.uint16)
    native, swapped = predictor([image, image.astype(">u2")], laterality="L")
    np.testing.assert_array_equal(swapped.probabilities, native.probabilities)
    np.testing.assert_array_equal(swapped.boxes, native.boxes)


def test_batches_equal_single_inputs_and_unreadable_inputs_can_be_reported(
    predictor: Predictor, synthetic_root: Path, tmp_path: Path
) -> None:
    """``errors="report"`` (what ``wsod predict`` does): an unreadable input is a Prediction naming its error, in its
    place; the others get what they get one at a time."""
    paths = [r.path for r in load_records(synthetic_root)[:3]]
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    batched = predictor([paths[0], notes, paths[1], paths[2]], batch_size=3, errors="report", threshold=0.3)
    failed = batched.pop(1)
    assert failed.error.startswith(f"{notes}: neither a DICOM") and failed.geometry is None
    assert np.isnan(failed.probability) and failed.boxes.shape == (0, 4) and failed.maps == {}
    single = predictor(paths, threshold=0.3)
    assert [p.source for p in batched] == [p.source for p in single] == [str(p) for p in paths]
    assert sum(len(p.boxes) for p in single) > 0
    for a, b in zip(batched, single, strict=True):
        assert a.error is None and a.method == b.method == "gradcampp" and a.threshold == 0.3
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3, rtol=0)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5, rtol=0)
    cut = float(np.median(np.concatenate([p.scores for p in single])))
    kept = predictor(paths, threshold=0.3, min_score=cut)
    for a, b in zip(kept, single, strict=True):
        np.testing.assert_array_equal(a.scores, b.scores[b.scores >= cut])
        np.testing.assert_array_equal(a.boxes, b.boxes[b.scores >= cut])


def test_a_dicom_object_without_an_image_is_reported_as_what_it_is(
    predictor: Predictor, synthetic_root: Path, tmp_path: Path
) -> None:
    """A CAD report among the inputs: its Prediction and record name its class (``not_an_image``), which a broken
    file's do not, so a caller can tell the two apart without parsing the error."""
    image = load_records(synthetic_root)[0].path
    object_without_image(image, tmp_path / "report.dcm")
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 200)
    read, sr, broken = predictor([image, tmp_path / "report.dcm", tmp_path / "broken.dcm"], errors="report")
    assert (read.not_an_image, sr.not_an_image, broken.not_an_image) == ("", "Mammography CAD SR Storage", "")
    assert read.error is None and sr.error and broken.error
    records = [prediction_record(p, str(i)) for i, p in enumerate((read, sr, broken))]
    assert [r.get("not_an_image") for r in records] == [None, "Mammography CAD SR Storage", None]


def test_a_class_index_the_model_lacks_is_refused_before_any_image_is_read(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``class_index=2`` of NYU's two outputs was refused only after the images were read and run through the
    model (minutes for a folder at 2944 x 1920 on a CPU); now before either."""
    events: list[str] = []
    load, predict = predictor._load, predictor._predict
    monkeypatch.setattr(predictor, "_load", lambda *a: events.append("load") or load(*a))
    monkeypatch.setattr(predictor, "_predict", lambda *a: events.append("predict") or predict(*a))
    for index in (2, -1):
        with pytest.raises(ValueError, match=rf"^class_index: expected 0..1, found {index}$"):
            predictor(np.zeros((96, 64), np.float32), laterality="L", class_index=index)
    assert events == []


def test_inputs_are_read_one_batch_at_a_time(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder of thousands of mammograms must not be decoded into memory before the first forward pass."""
    events: list[str] = []
    load, predict = predictor._load, predictor._predict
    monkeypatch.setattr(predictor, "_load", lambda *a: events.append("load") or load(*a))
    monkeypatch.setattr(predictor, "_predict", lambda readable, *a: events.append("predict") or predict(readable, *a))
    arrays = [np.random.default_rng(i).random((96, 64), np.float32) for i in range(5)]
    results = predictor(arrays, laterality="L", batch_size=2)
    assert [r.source for r in results] == [f"array {i}" for i in range(5)]
    assert events == ["load", "load", "predict", "load", "load", "predict", "load", "predict"]


def test_receptive_field_alignment_moves_boxes_up_and_left(predictor: Predictor, synthetic_root: Path) -> None:
    """``alignment="receptive_field"`` centres each map cell on its receptive field, as ``wsod predict`` can: the same
    maps give boxes shifted towards the image's top-left (the study's plain resizing puts them lower right)."""
    placed = Predictor(predictor.module, SIZE, alignment="receptive_field")
    paths = [r.path for r in load_records(synthetic_root)[:4]]
    plain, shifted = predictor(paths, threshold=0.3), placed(paths, threshold=0.3)
    pairs = [(a, b) for a, b in zip(plain, shifted, strict=True) if len(a.input_boxes) == len(b.input_boxes) > 0]
    assert pairs
    for a, b in pairs:
        np.testing.assert_array_equal(a.probabilities, b.probabilities)
        centre = lambda boxes: (boxes[:, :2] + boxes[:, 2:]) / 2  # noqa: E731
        assert (centre(b.input_boxes) - centre(a.input_boxes)).mean() < 0
    with pytest.raises(ValueError, match="alignment: expected 'receptive_field' or 'resize', found 'centre'"):
        Predictor(predictor.module, SIZE, alignment="centre")


def test_predictions_from_outputs_names_a_bad_method_or_class() -> None:
    probabilities, maps = torch.full((1, 2), 0.5), {"cam": torch.rand(1, 2, 4, 3)}
    loaded = [Loaded("x", Geometry(256, 192, False, (0, 0, 192, 256), 256, 192), "L", "given")]
    with pytest.raises(ValueError, match="method: 'gradcam' is not among the maps computed"):
        predictions_from_outputs(probabilities, maps, loaded, "gradcam", 0.5, SIZE)
    with pytest.raises(ValueError, match="class_index: expected 0..1, found 2"):
        predictions_from_outputs(probabilities, maps, loaded, "cam", 0.5, SIZE, class_index=2)
    (result,) = predictions_from_outputs(probabilities, maps, loaded, "cam", 0.5, SIZE, class_index=1)
    assert result.probability == 0.5 and result.maps["cam"].shape == (2, 4, 3) and result.geometry.orig_width == 192


@pytest.mark.parametrize("resize, shape", [("fit", (2000, 800)), ("native", (200, 80))])
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_fit_and_native_boxes_stay_on_the_image_not_in_its_padding(
    laterality: str, resize: str, shape: tuple[int, int]
) -> None:
    """``resize="fit"`` and ``"native"`` pad a narrow breast on the right of the input frame: a map peak there
    used to give a box beyond the image's right edge (or, for a right breast, left of its left edge)."""
    height, width = shape
    image = np.zeros(shape, np.float32)
    image[height // 10 : height - height // 10, : width * 7 // 8] = 0.5
    geometry = make_geometry(image if laterality == "L" else image[:, ::-1], laterality, SIZE, resize=resize)
    x0, y0, x1, y1 = geometry.content_box
    assert x1 < SIZE[1], "the test needs padding on the right"
    maps = torch.zeros(1, 1, 6, 4)
    maps[0, 0, 3, 3] = 1.0  # in the padding only
    maps[0, 0, 1, 1:] = 0.9  # from the breast into the padding
    loaded = [Loaded("x", geometry, laterality, "given")]
    (result,) = predictions_from_outputs(torch.full((1, 1), 0.9), {"cam": maps}, loaded, "cam", 0.5, SIZE)
    assert len(result.boxes) == 1
    assert x0 <= result.input_boxes[0, 0] and result.input_boxes[0, 2] <= x1
    assert y0 <= result.input_boxes[0, 1] and result.input_boxes[0, 3] <= y1
    assert (result.boxes[:, [0, 2]] >= 0).all() and (result.boxes[:, [0, 2]] <= width).all()
    assert (result.boxes[:, [1, 3]] >= 0).all() and (result.boxes[:, [1, 3]] <= height).all()


@pytest.mark.parametrize("frame", [SIZE, (128, 96)])  # larger than the breast crop (padded); smaller (cut)
def test_native_predictor_returns_the_boxes_of_the_original_pixels(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch, frame: tuple[int, int]
) -> None:
    """With ``resize="native"`` a map that marks exactly the mass's input pixels gives exactly the mass's box in the
    original image (mirrored back for a right breast): scale 1, no interpolation anywhere on the way."""
    image = np.full((300, 200), 0.01, np.float32)
    image[40:260, :140] = 0.4
    image[100:130, 60:90] = 1.0  # the mass: original box (60, 100, 90, 130)

    def oracle(x: torch.Tensor, methods):  # the brightest input pixels, for both classes
        peak = (x >= x.amax(dim=(2, 3), keepdim=True) - 1e-4).float().expand(-1, 2, -1, -1)
        return SimpleNamespace(y_fusion=torch.full((len(x), 2), 0.9)), {name: peak for name in methods}

    native = Predictor(predictor.module, frame, resize="native")
    monkeypatch.setattr(native.module, "evaluate", oracle)
    left, right = native([image, np.ascontiguousarray(image[:, ::-1])], laterality=["L", "R"])
    for result, expected in ((left, [60, 100, 90, 130]), (right, [110, 100, 140, 130])):
        assert result.geometry.resize == "native" and result.geometry.scale_x == result.geometry.scale_y == 1.0
        np.testing.assert_array_equal(result.boxes, [expected])


def test_predictor_leaves_dicom_padding_out_of_the_standardization(predictor: Predictor, padded_root: Path) -> None:
    seen = []
    evaluate = predictor.module.evaluate

    def spy(x, methods):
        seen.append(x.detach().clone())
        return evaluate(x, methods)

    predictor.module.evaluate = spy
    try:
        for record in load_records(padded_root):
            padding = load_padded(record.path, SIZE).padding
            if padding is not None:
                break
        predictor(record.path)
    finally:
        del predictor.module.evaluate  # back to the class's method
    kept = seen[0][0, 0][torch.from_numpy(~padding)]
    assert abs(float(kept.mean())) < 1e-4 and abs(float(kept.std()) - 1) < 1e-3
    assert abs(float(seen[0].mean())) > 1e-2  # over all pixels it is not standardized: the padding is left out


def test_boxes_come_from_the_map_of_the_class_asked_for() -> None:
    """class_index 1 (NYU's malignant head) must box class 1's map, not class 0's."""
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, 0] = 1.0  # class 0: top left
    maps[0, 1, 3, 3] = 1.0  # class 1: bottom right
    loaded = [Loaded("x", Geometry(64, 64, False, (0, 0, 64, 64), 64, 64), "L", "given")]
    (result,) = predictions_from_outputs(
        torch.full((1, 2), 0.5), {"cam": maps}, loaded, "cam", 0.5, (64, 64), class_index=1
    )
    assert result.boxes[0, 0] > 32 and result.boxes[0, 1] > 32, result.boxes


def test_thresholds_given_or_validated_per_method_are_the_ones_used(predictor: Predictor) -> None:
    """An explicit threshold 0.0 was replaced (a falsy test); without one, each method takes its own validated
    threshold, not the model's predict_saliency method's."""
    image = np.random.default_rng(0).random((96, 64), np.float32)
    assert predictor(image, laterality="L", threshold=0.0)[0].threshold == 0.0
    saved = dict(predictor.module.detection_thresholds)
    predictor.module.detection_thresholds.clear()
    predictor.module.detection_thresholds.update({"cam": 0.3, "gradcampp": 0.7})
    try:
        assert predictor(image, laterality="L", methods=["cam"])[0].threshold == 0.3
        # an instance first (README: "In Python, give instances"): it failed, "is not among the maps computed"
        given = predictor(image, laterality="L", methods=[GradCAMPlusPlus(), "cam"])[0]
        assert (given.method, given.threshold, sorted(given.maps)) == ("gradcampp", 0.7, ["cam", "gradcampp"])
        # other settings than the validated method's: not its threshold (the default, as `wsod predict` does)
        assert predictor(image, laterality="L", methods=[GradCAMPlusPlus(layer="stage5")])[0].threshold == 0.5
    finally:
        predictor.module.detection_thresholds.clear()
        predictor.module.detection_thresholds.update(saved)
    for option in ({"threshold": 1.5}, {"min_score": 10}):  # 10 for 0.10 returned no box, unsaid
        with pytest.raises(ValueError, match=rf"{next(iter(option))}: expected a value in \[0, 1\], found 1"):
            predictor(image, laterality="L", **option)


def test_a_method_name_in_other_case_is_the_registered_method(predictor: Predictor) -> None:
    """Names are looked up case-insensitively (``--model.predict_saliency GradCAMPP``): ``methods=["GradCAMPP"]``
    failed after the forward ("not among the maps computed") and would have missed its validated threshold."""
    image = np.random.default_rng(0).random((96, 64), np.float32)
    saved = dict(predictor.module.detection_thresholds)
    predictor.module.detection_thresholds.update({"gradcampp": 0.7})
    try:
        given = predictor(image, laterality="L", methods=["GradCAMPP", "CAM"])[0]
    finally:
        predictor.module.detection_thresholds.clear()
        predictor.module.detection_thresholds.update(saved)
    assert (given.method, given.threshold, sorted(given.maps)) == ("gradcampp", 0.7, ["cam", "gradcampp"])


def test_options_given_to_from_checkpoint_beat_the_checkpoints_frame(nyu_file: Path, tmp_path: Path) -> None:
    path = nyu_to_checkpoint(nyu_file, tmp_path / "n.ckpt", **SMALL)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["input_frame"] = {"input_size": [128, 128], "crop_breast": True, "resize": "native"}
    torch.save(checkpoint, path)
    assert Predictor.from_checkpoint(path).resize == "native"
    assert Predictor.from_checkpoint(path, resize="stretch").resize == "stretch"


def test_crop_breast_false_keeps_the_whole_image(predictor: Predictor) -> None:
    """``crop_breast=False`` brings the whole image to the input frame, dark background included."""
    image = np.full((300, 200), 0.01, np.float32)
    image[40:260, :140] = 0.4
    (cropped,) = predictor(image, laterality="L")
    (whole,) = Predictor(predictor.module, SIZE, crop_breast=False)(image, laterality="L")
    assert cropped.geometry.crop != (0, 0, 200, 300) and whole.geometry.crop == (0, 0, 200, 300)


def test_a_checkpoints_predict_saliency_is_the_predictors_default_method(nyu_file: Path, tmp_path: Path) -> None:
    """The map the boxes come from is the one the checkpoint records (``predict_saliency``), as ``wsod predict``."""
    path = nyu_to_checkpoint(nyu_file, tmp_path / "cam.ckpt", predict_saliency="cam", **SMALL)
    loaded = Predictor.from_checkpoint(path, input_size=SIZE)
    (result,) = loaded(np.random.default_rng(0).random((96, 64), np.float32), laterality="L")
    assert loaded.module.predict_saliency == result.method == "cam" and set(result.maps) == {"cam"}


def test_a_laterality_list_must_give_one_per_input(predictor: Predictor) -> None:
    """A list of lateralities of another length than the inputs is refused: one too many would be dropped in
    silence (read input by input), one too few fail inside ``zip``."""
    arrays = [np.zeros((64, 32), np.uint8)] * 2
    for sides in (["L"], ["L", "R", "L"]):
        with pytest.raises(ValueError, match=rf"laterality: expected one per input \(2\), found {len(sides)}"):
            predictor(arrays, laterality=sides)


def test_an_older_checkpoints_frame_is_its_datamodules() -> None:
    """A checkpoint without ``input_frame`` (written before it existed) records its frame in its datamodule's
    hyperparameters; NYU's weights with neither are 2944 x 1920."""
    from wsod_mammo.inference import recorded_frame

    data = {"input_size": [128, 192], "crop_breast": False, "resize": "fit", "batch_size": 2}
    assert recorded_frame({"datamodule_hyper_parameters": data}) == {
        "input_size": [128, 192], "crop_breast": False, "resize": "fit",
    }  # fmt: skip
    assert recorded_frame({"init_from_nyu": "sample_model_1.p"}) == {"input_size": [2944, 1920]}


def test_a_checkpoint_that_records_no_input_size_asks_for_it(
    nyu_file: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    """`wsod fit` checkpoints from before 2026-11-26 record no input frame; the reader ran them at 2944 x 1920 without
    a word (other probabilities than `wsod predict` with the run's config)."""
    checkpoint = torch.load(nyu_to_checkpoint(nyu_file, tmp_path / "nyu.ckpt", **SMALL), weights_only=True)
    del checkpoint["init_from_nyu"]  # as an old fit's: no input_frame, no datamodule hyperparameters
    torch.save(checkpoint, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match=r"old.ckpt: the checkpoint records no input size .*input_size=\(H, W\)"):
        Predictor.from_checkpoint(tmp_path / "old.ckpt")
    assert Predictor.from_checkpoint(tmp_path / "old.ckpt", input_size=SIZE).input_size == SIZE


def test_a_checkpoint_that_records_no_class_names_takes_those_given(nyu_file: Path, tmp_path: Path) -> None:
    """`wsod fit` checkpoints from before 2026-12-03 name no outputs: `wsod predict` names them by its config's
    classes, the reader said ``class 0``; ``class_names=`` gives them, and cannot rename a checkpoint's own."""
    checkpoint = torch.load(nyu_to_checkpoint(nyu_file, tmp_path / "nyu.ckpt", **SMALL), weights_only=True)
    assert checkpoint.pop("class_names") == ["benign", "malignant"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert Predictor.from_checkpoint(tmp_path / "old.ckpt", SIZE).class_names == ["class 0", "class 1"]
    named = Predictor.from_checkpoint(tmp_path / "old.ckpt", SIZE, class_names=("Mass", "Calcification"))
    image = np.zeros((320, 200), np.uint16)
    image[60:260, :120] = 3000
    (result,) = named(image, laterality="L", class_index=1)
    assert named.class_names == ["Mass", "Calcification"] and result.class_name == "Calcification"
    with pytest.raises(ValueError, match=r"Predictor.class_names: the model has 2 output\(s\), 1 names given"):
        Predictor.from_checkpoint(tmp_path / "old.ckpt", SIZE, class_names=["Mass"])
    with pytest.raises(ValueError, match=r"the checkpoint names its outputs \['benign', 'malignant'\], not"):
        Predictor.from_checkpoint(tmp_path / "nyu.ckpt", SIZE, class_names=["Mass", "Calcification"])
    assert Predictor.from_checkpoint(tmp_path / "nyu.ckpt", SIZE, class_names=["benign", "malignant"]).class_names
