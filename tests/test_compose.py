"""Params without Hydra (the GPU machine has none) are the params Hydra composes, for every preset."""
import shutil

import pytest
import yaml

from betasched.pipeline.compose import compose_params, compose_plain
from conftest import ROOT

PRESETS = sorted(p.stem for p in (ROOT / "conf/preset").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_plain_composition_equals_hydras(preset, tmp_path):
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    compose_params([f"preset={preset}"], root=tmp_path)
    assert compose_plain(preset, ROOT) == yaml.safe_load((tmp_path / "params.yaml").read_text())
