"""The core installs and runs alone: a fresh virtual environment with only torch, numpy and the
betasched wheel (no torchvision, pandas, scipy, dvc, mlflow) runs the README's library snippets
on a toy model.

torch is not reinstalled here (5.5 GB): the new environment sees exactly the distributions torch
and numpy need, linked from this one (the filtered folder below), and nothing else.
`make core-check` does the same with torch installed from its wheel."""
import importlib.metadata as md
import re
import shutil
import subprocess
import sys

import pytest
from packaging.markers import Marker

from conftest import ROOT

PRELUDE = """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.Linear(16, 10))
x, y = torch.randn(256, 3, 8, 8), torch.randint(0, 10, (256,))
loader = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
loss_fn = nn.functional.cross_entropy
val_images, val_labels = x[:128], y[:128]
train_images, train_labels = x, y
test_images, test_labels = torch.randn(64, 3, 8, 8), torch.randint(0, 10, (64,))
"""
CHECK = """
import importlib.util, importlib.metadata as md
absent = [m for m in ("torchvision", "pandas", "scipy", "seaborn", "dvc", "mlflow", "yaml", "tqdm")
          if importlib.util.find_spec(m) is not None]
assert not absent, absent
reqs = [r for r in md.requires("betasched") if "extra ==" not in r]
assert sorted(r.split(">")[0].split("=")[0] for r in reqs) == ["numpy", "torch"], reqs
print("core-only: ok")
"""


def readme_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lib = text[text.index("## The library in your own code"):]
    return re.findall(r"```python\n(.*?)```", lib, re.S)[:3]


def _dists(names):
    """The installed distributions that ``names`` need, markers evaluated here."""
    seen, todo = {}, list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen[key] = dist = md.distribution(name)
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            if "extra" in marker or (marker and not Marker(marker).evaluate()):
                continue
            todo.append(re.split(r"[ <>=!~\[(]", spec.strip())[0])
    return seen.values()


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("core")
    wheel_dir, project = tmp / "wheel", tmp / "project"  # built from a copy: setuptools writes build/
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), str(project)], check=True, capture_output=True)
    site = tmp / "torch-site"
    site.mkdir()
    for dist in _dists(["torch", "numpy"]):
        for top in {f.parts[0] for f in dist.files or [] if not f.parts[0].startswith("..")}:
            src = dist.locate_file(top)
            if src.exists() and not (site / top).exists():
                (site / top).symlink_to(src)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # no setuptools either
    py = venv / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (venv.joinpath(purelib) / "torch-only.pth").write_text(str(site) + "\n")
    wheel = next(wheel_dir.glob("betasched-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    return py


@pytest.mark.slow  # installs the core into a fresh venv
def test_readme_snippets_run_with_only_the_core(core_venv, tmp_path):
    snippets = readme_snippets()
    assert len(snippets) == 3 and "MomentumScheduler" in snippets[0] and "surgical_finetune" in snippets[1]
    assert "curvature" in snippets[2]
    script = tmp_path / "snippets.py"
    script.write_text(CHECK + PRELUDE + "\n".join(snippets))
    out = subprocess.run([core_venv, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "core-only: ok" in out.stdout and "of the parameters retrained" in out.stdout and "spectral radius" in out.stdout
    check = subprocess.run([sys.executable, "-m", "pip", "--python", str(core_venv), "check"], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout


if __name__ == "__main__":  # make core-check: the same snippets in a venv given on the command line
    import tempfile
    from pathlib import Path

    python = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "snippets.py"
        script.write_text(CHECK + PRELUDE + "\n".join(readme_snippets()))
        subprocess.run([python, str(script)], check=True, cwd=tmp)
