"""Exact cache keys: every stage's deps in dvc.yaml cover the code its script runs, and no more."""
import shutil
from pathlib import Path

import yaml

from betasched.pipeline.closure import check_stage_deps, import_closure, stage_code
from conftest import ROOT


def test_every_stage_lists_exactly_its_import_closure():
    assert check_stage_deps(ROOT / "dvc.yaml", ROOT) == {}


def test_the_train_like_stages_share_one_deps_template():
    """train, control and lam run one script: one deps list (a YAML alias), so that a closure rewrite
    (`python -m betasched.pipeline.closure --write`) reaches all three and they cannot drift apart."""
    text = (ROOT / "dvc.yaml").read_text()
    stages = yaml.safe_load(text)["stages"]
    assert stages["control"]["deps"] is stages["train"]["deps"] is stages["lam"]["deps"]
    assert text.count("deps: *train_deps") == 2


def test_a_dropped_dep_is_reported(tmp_path):
    """The check can fail: drop the engine from the train stage and the statistics from report."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    dvc["stages"]["train"]["deps"].remove("src/betasched/training/engine.py")
    dvc["stages"]["report"]["deps"].remove("src/betasched/analysis/stats.py")
    dvc["stages"]["compare"]["deps"].append("src/betasched/core/surgery.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc))
    problems = check_stage_deps(tmp_path / "dvc.yaml", ROOT)
    assert problems["train"]["missing"] == ["src/betasched/training/engine.py"]
    assert problems["report"]["missing"] == ["src/betasched/analysis/stats.py"]
    assert problems["compare"] == {"missing": [], "extra": ["src/betasched/core/surgery.py"]}
    assert problems["control"] == problems["lam"] == problems["train"]  # one deps list, shared
    assert set(problems) == {"train", "control", "lam", "report", "compare"}


def test_closure_follows_relative_submodule_and_lazy_imports(tmp_path):
    src = tmp_path / "src"
    pkg = src / "betasched"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text("import os\n")
    (pkg / "unused.py").write_text("")
    script = tmp_path / "s.py"
    script.write_text("from betasched.sub import a\n")
    names = {str(p.relative_to(tmp_path)) for p in import_closure(script, src)}
    assert names == {"s.py", "src/betasched/__init__.py", "src/betasched/sub/__init__.py",
                     "src/betasched/sub/a.py", "src/betasched/sub/b.py", "src/betasched/c.py"}


def test_training_does_not_depend_on_the_diagnostic_or_the_analysis():
    """So that editing the attribution, the statistics or a figure never re-trains a run."""
    code = stage_code("stages/train.py", ROOT)
    assert not [p for p in code if "/analysis/" in p]
    for name in ("attribution.py", "surgery.py", "controls.py", "study.py", "treat.py"):
        assert not [p for p in code if Path(p).name == name], name



def test_the_code_hash_does_not_follow_where_the_package_lies(tmp_path, monkeypatch):
    """A training's run key holds the hash of its code: the same files hash the same whether the
    package sits in the repo (src/ sorts before stages/) or apart from it, sorting after it (a Ray
    snapshot's repo in /tmp, the package in site-packages)."""
    from betasched.pipeline import runs

    def code_hash_with(repo, src):
        shutil.copytree(ROOT / "stages", repo / "stages")
        shutil.copytree(ROOT / "src" / "betasched", src / "betasched",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (repo / "dvc.yaml").write_text("stages: {}\n")
        monkeypatch.chdir(repo)
        monkeypatch.setattr(runs, "SRC", src)
        return runs.code_hash()

    inside = code_hash_with(tmp_path / "m" / "repo", tmp_path / "m" / "repo" / "src")
    assert code_hash_with(tmp_path / "a" / "repo", tmp_path / "zz" / "site-packages") == inside
