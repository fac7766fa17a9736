"""The shipped YAML: one Table II config per method, an override that keeps every callback of the base config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wsod_mammo.detection.report import METHOD_ORDER

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("method", METHOD_ORDER)
def test_table2_config_is_an_override_of_the_method_and_its_run_folder(method: str) -> None:
    override = _load(CONFIGS / "table2" / f"{method}.yaml")
    assert override["model"] == {"init_args": {"train_saliency": method}}
    assert override["trainer"] == {"logger": {"init_args": {"save_dir": f"runs/table2_{method}", "group": "table2"}}}


def test_composed_table2_config_keeps_every_base_callback() -> None:
    base = _load(CONFIGS / "gmic_vindr.yaml")
    command = [sys.executable, "-m", "wsod_mammo", "fit", "--config", str(CONFIGS / "gmic_vindr.yaml")]
    command += ["--config", str(CONFIGS / "table2" / "layercam.yaml"), "--print_config"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    composed = yaml.safe_load(done.stdout)
    classes = [c["class_path"] for c in composed["trainer"]["callbacks"]]
    assert classes == [c["class_path"] for c in base["trainer"]["callbacks"]]
    assert "wsod_mammo.training.predict.PredictionWriter" in classes
    assert composed["model"]["init_args"]["train_saliency"] == "layercam"
    logger = composed["trainer"]["logger"]
    assert logger["class_path"] == base["trainer"]["logger"]["class_path"]
    assert logger["init_args"]["save_dir"] == "runs/table2_layercam"


def test_gpu_config_adds_fused_to_the_study_adam_and_reads_and_copies_pixels_on_the_pin_memory_thread() -> None:
    """gpu.yaml's partial optimizer override keeps the study's Adam settings (lr, weight decay) and adds fused; the
    pin-memory thread reads the pixels and copies each batch to the GPU ahead of its step; its partial model override
    compiles the study's GMIC, keeping its architecture."""
    command = [sys.executable, "-m", "wsod_mammo", "fit", "--config", str(CONFIGS / "gmic_vindr.yaml")]
    command += ["--config", str(CONFIGS / "trainer" / "gpu.yaml"), "--print_config"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    composed = yaml.safe_load(done.stdout)
    optimizer = composed["model"]["init_args"]["optimizer"]
    study = _load(CONFIGS / "gmic_vindr.yaml")["model"]["init_args"]["optimizer"]
    assert optimizer["class_path"] == study["class_path"] == "torch.optim.Adam"
    assert optimizer["init_args"] | study["init_args"] == optimizer["init_args"] and optimizer["init_args"]["fused"]
    data = composed["data"]["init_args"]
    assert (data["standardize_on"], data["augment_on"], data["pixel_reads"]) == ("device", "device", "main")
    assert data["copy_ahead"] is True
    gmic = composed["model"]["init_args"]["model"]
    assert gmic["class_path"] == "wsod_mammo.models.GMIC" and gmic["init_args"]["crop_shape"] == [256, 256]  # study's
    compiled = {k: gmic["init_args"][k] for k in ("compile_networks", "compile_training_forward", "global_stem")}
    assert compiled == {"compile_networks": "reduce-overhead", "compile_training_forward": True,
                        "global_stem": "space_to_depth"}  # fmt: skip


def test_the_opt_ins_gpu_yaml_names_in_its_comments_are_options_of_the_cli() -> None:
    """Every ``--option value`` that gpu.yaml's comments offer parses on top of it and lands in the config."""
    import re

    offered = re.findall(r"^#\s+(--[\w.]+) ([\w.-]+)", (CONFIGS / "trainer" / "gpu.yaml").read_text(), flags=re.M)
    names = {option for option, _ in offered}
    assert {  # the way back to eager networks
        "--model.init_args.model.init_args.global_stem",
        "--model.init_args.model.init_args.compile_training_forward",
        "--model.init_args.model.init_args.compile_networks",
    } <= names
    command = [sys.executable, "-m", "wsod_mammo", "fit", "--config", str(CONFIGS / "gmic_vindr.yaml")]
    command += ["--config", str(CONFIGS / "trainer" / "gpu.yaml"), "--print_config"]
    command += [part for pair in offered for part in pair]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    composed = yaml.safe_load(done.stdout)
    for option, value in offered:
        found = composed
        for key in option.removeprefix("--").split("."):
            found = found[key] if key in found else found["init_args"][key]  # jsonargparse lets init_args out
        assert str(found).lower() == value.lower(), option


def test_the_multinode_config_is_the_one_node_config_on_more_nodes() -> None:
    """ddp_multinode.yaml lacked ddp.yaml's data options (workers, pinning, standardizing on the GPU): a run spread
    over two nodes standardized on the host and trained differently from the same run on one node."""
    one_node = yaml.safe_load((CONFIGS / "trainer" / "ddp.yaml").read_text())
    nodes = yaml.safe_load((CONFIGS / "trainer" / "ddp_multinode.yaml").read_text())
    assert nodes["data"] == one_node["data"]
    assert {k: v for k, v in nodes["trainer"].items() if k != "num_nodes"} == {
        k: v for k, v in one_node["trainer"].items() if k != "num_nodes"
    }
