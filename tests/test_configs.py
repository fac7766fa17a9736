"""The shipped YAML: one Table II config per method, each keeping the base's callbacks in folders of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wsod_mammo.detection.report import METHOD_ORDER

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("method", METHOD_ORDER)
def test_table2_config_keeps_every_base_callback_in_its_own_folders(method: str) -> None:
    base, override = _load(CONFIGS / "gmic_vindr.yaml"), _load(CONFIGS / "table2" / f"{method}.yaml")
    assert override["model"]["init_args"] == {"train_saliency": method}
    assert [c["class_path"] for c in override["trainer"]["callbacks"]] == [
        c["class_path"] for c in base["trainer"]["callbacks"]
    ]
    folders = [override["trainer"]["logger"]["init_args"]["save_dir"]] + [
        value
        for callback in override["trainer"]["callbacks"]
        for key, value in (callback.get("init_args") or {}).items()
        if key in ("dirpath", "output_dir")
    ]
    assert len(folders) == 4 and all(f"runs/table2_{method}" in folder for folder in folders)
