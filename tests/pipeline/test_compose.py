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


def test_make_params_preset_survives_dvc_recomposition(tmp_path):
    """Issue 20: after `make params PRESET=smoke`, `dvc exp run -S schedule=hybrid` recomposes
    params.yaml from conf/ with that one override (DVC's own compose_and_dump, below), and silently
    went back to conf/config.yaml's default preset (laptop). The chosen preset is recorded in conf/."""
    from dvc.utils.hydra import compose_and_dump

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    compose_params(["preset=smoke"], root=tmp_path)  # what `make params PRESET=smoke` runs
    smoke = yaml.safe_load((tmp_path / "params.yaml").read_text())
    compose_and_dump(tmp_path / "params.yaml", str(tmp_path / "conf"), None, "config", str(tmp_path),
                     ["schedule=hybrid"])
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert params == {**smoke, "schedule": "hybrid"}
    compose_params([], root=tmp_path)  # plain `make params` keeps it too
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == smoke
