"""The package's layers: lower layers never import higher ones; the core needs torch and numpy
only; the analysis layer never imports torch; the public API and error types."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from betasched.pipeline.closure import _imports
from conftest import ROOT, env_with_venv

SRC = ROOT / "src"
PKG = SRC / "betasched"
ALLOWED = {  # layer -> the betasched layers it may import
    "core": {"core"},
    "training": {"core", "training"},
    "analysis": {"core", "analysis"},
    "pipeline": {"core", "training", "analysis", "pipeline"},
}
THIRD_PARTY = {  # layer -> the third-party packages it may import
    "core": {"torch", "numpy"},
    "training": {"torch", "numpy", "torchvision", "tqdm", "PIL"},
    "analysis": {"numpy", "pandas", "scipy", "matplotlib", "seaborn"},
    "pipeline": {"torch", "numpy", "pandas", "yaml", "hydra", "omegaconf", "mlflow", "alembic", "dvc", "psutil", "ray"},
}


def _modules(layer):
    return sorted((PKG / layer).glob("*.py"))


def _third_party(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("betasched", "__future__")}


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_layers_import_only_lower_layers_and_their_own_dependencies(layer):
    assert _modules(layer), layer
    for path in _modules(layer):
        used = {m.split(".")[1] for m in _imports(SRC, path) if m.count(".") >= 1}
        assert used <= ALLOWED[layer], f"{path.name} imports {used - ALLOWED[layer]}"
        extra = _third_party(path) - THIRD_PARTY[layer]
        assert not extra, f"{path.relative_to(PKG)} imports {extra}"


def test_no_module_or_function_is_long():
    for path in PKG.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 60, f"{path.name}:{node.name}"


def test_analysis_runs_without_torch():
    code = ("import sys, importlib, pkgutil, betasched.analysis as a\n"
            "for m in pkgutil.iter_modules(a.__path__): importlib.import_module(f'betasched.analysis.{m.name}')\n"
            "import betasched.core.ranking, betasched.core.schedules, betasched.core.files\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]\n")
    out = subprocess.run([sys.executable, "-c", code], env=env_with_venv(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_public_api():
    import betasched
    from betasched import MomentumScheduler, attribute, problem_layers, surgical_finetune, warmup_cosine

    assert {"MomentumScheduler", "warmup_cosine", "attribute", "problem_layers", "surgical_finetune"} <= set(
        betasched.__all__)
    assert all(callable(f) for f in (MomentumScheduler, attribute, problem_layers, surgical_finetune, warmup_cosine))
    with pytest.raises(AttributeError):
        betasched.not_a_name  # noqa: B018


def test_user_errors_are_builtin_value_and_type_errors():
    from betasched.core.errors import CheckpointError, ConfigError, ConfigTypeError, DataError

    for cls in (ConfigError, DataError, CheckpointError):
        assert issubclass(cls, ValueError)
    assert issubclass(ConfigTypeError, TypeError) and issubclass(ConfigTypeError, ValueError)


def test_stage_scripts_are_thin():
    for path in (ROOT / "stages").glob("*.py"):
        assert path.stat().st_size <= 3072, path
        assert 'if __name__ == "__main__":' in path.read_text(), path


def test_the_tests_are_grouped_by_layer():
    """tests/<layer>/ for each package layer, tests/stages/ for the DVC stages end to end and
    tests/bench/ for bench/; only this architecture test sits at the top."""
    folders = set(ALLOWED) | {"stages", "bench"}
    tests = ROOT / "tests"
    misplaced = [str(p.relative_to(tests)) for p in tests.rglob("test_*.py")
                 if p.parent.name not in folders and p != Path(__file__).resolve()]
    assert not misplaced, misplaced
    assert {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))} <= folders
