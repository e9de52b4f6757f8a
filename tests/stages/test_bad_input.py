"""Each bad input: a non-zero exit, one line naming the problem, and no new or changed output.

Most cases run the stage script in this process (runpy, as `python stages/x.py` would, with the
same argv, cwd and stderr), so that 70 cases take seconds; the cases that need a process of their
own (a server, a signal, another user) run as subprocesses. Every case asserts the exit code,
a single `error:` line, and that no file of the repo changed."""
import io
import os
import runpy
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import ROOT, env_with_venv, make_repo, prepare_repo

pytestmark = pytest.mark.pipeline  # runs each stage of a smoke repo on bad input: `make test-fast` leaves it out

TRAIN = ["stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "0"]
PREPARE = ["stages/prepare.py"]
COMPARE = ["stages/compare.py"]
ATTRIBUTE = ["stages/attribute.py"]
REPAIR = ["stages/repair.py"]
CHECK = ["stages/check.py"]
SCAN = ["stages/scan.py"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("bad") / "repo")
    prepare_repo(repo)
    return repo


def snapshot(repo):
    """Every file (mtime, size) and folder of the repo, but git's and Python's caches."""
    return {p.relative_to(repo): (p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else "dir"
            for p in repo.rglob("*") if ".git" not in p.parts and "__pycache__" not in p.parts}


def run_inproc(repo, cmd, capfd, monkeypatch):
    """`python <cmd>` in this process: (exit code, stderr)."""
    monkeypatch.chdir(repo)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    capfd.readouterr()
    module = cmd[1] if cmd[0] == "-m" else None
    monkeypatch.setattr(sys, "argv", [module or str(repo / cmd[0]), *cmd[(2 if module else 1):]])
    try:
        if module:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(str(repo / cmd[0]), run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capfd.readouterr().err


def assert_one_line(code, err, expected, exit_code=2):
    assert code == exit_code, (code, err[-2000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


def edit_params(repo, edit):
    """Apply ``edit`` to params.yaml; returns the original text (restore it after the case)."""
    path = repo / "params.yaml"
    original = path.read_text()
    p = yaml.safe_load(original)
    edit(p)
    path.write_text(yaml.safe_dump(p))
    return original


def _set(path, value):
    def edit(p):
        node = p
        *parents, last = path.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    return edit


def _drop(path):
    def edit(p):
        node = p
        *parents, last = path.split(".")
        for k in parents:
            node = node[k]
        del node[last]
    return edit


CASES = [
    # names
    ("unknown schedule", _set("matrix.schedules", ["constant", "warp"]), TRAIN, "unknown schedule 'warp'"),
    ("unknown studied schedule", _set("schedule", "warp"), TRAIN, "unknown schedule 'warp'"),
    ("unknown optimizer", _set("matrix.optimizers", ["lion"]), TRAIN, "unknown optimizer 'lion'"),
    ("unknown preset", _set("preset", "huge"), TRAIN, "unknown preset 'huge'"),
    ("unknown precision", _set("train.precision", "fp8"), TRAIN, "unknown train.precision 'fp8'"),
    ("unknown repair precision", _set("repair.precision", "fp8"), CHECK, "unknown repair.precision 'fp8'"),
    ("unknown device", _set("train.device", "tpu"), TRAIN, "unknown train.device 'tpu'"),
    ("unknown data source", _set("data.source", "s3"), PREPARE, "unknown data.source 's3'"),
    ("unknown attribution method", _set("attribution.method", "shap"), ATTRIBUTE, "unknown attribution.method 'shap'"),
    ("unknown granularity", _set("attribution.granularity", "neuron"), ATTRIBUTE, "unknown attribution.granularity"),
    ("shell in a schedule name", _set("matrix.schedules", ["beta; touch pwned #"]), CHECK,
     "unknown schedule 'beta; touch pwned #'"),
    ("shell in an optimizer name", _set("matrix.optimizers", ["sgd$(touch pwned)"]), TRAIN,
     "unknown optimizer 'sgd$(touch pwned)'"),
    # numbers out of range
    ("lr zero", _set("optim.sgd.lr", 0), TRAIN, "optim.sgd.lr=0"),
    ("lr negative", _set("optim.adam.lr", -1e-3), TRAIN, "optim.adam.lr=-0.001"),
    ("lr infinite", _set("optim.sgd.lr", float("inf")), TRAIN, "optim.sgd.lr=inf must be a finite number"),
    ("lr a string", _set("optim.sgd.lr", "fast"), TRAIN, "optim.sgd.lr='fast' must be a number"),
    ("epochs zero", _set("train.epochs", 0), TRAIN, "train.epochs=0"),
    ("epochs fractional", _set("train.epochs", 2.5), TRAIN, "train.epochs=2.5 must be an integer"),
    ("batch zero", _set("train.batch_size", 0), TRAIN, "train.batch_size=0"),
    ("eval_every zero", _set("train.eval_every", 0), TRAIN, "train.eval_every=0"),
    ("warm-up as long as training", _set("train.warmup_epochs", 2), TRAIN, "train.warmup_epochs=2"),
    ("target fraction above 1", _set("targets.fractions", [0.5, 1.5]), CHECK, "targets.fractions entry=1.5"),
    ("no target fractions", _set("targets.fractions", []), CHECK, "targets.fractions=[] must be a non-empty list"),
    ("targets not increasing", _set("targets.values", [0.95, 0.9]), CHECK, "must be increasing"),
    ("unknown target rule", _set("targets.rule", "guess"), CHECK, "unknown targets.rule 'guess'"),
    ("pilot seed is a verdict seed", _set("targets.pilot_seeds", [0]), CHECK, "share [0]"),
    ("control also a schedule", _set("matrix.schedules", ["constant", "beta", "constant_matched"]), TRAIN,
     "is in matrix.schedules and matrix.controls"),
    ("stats min_seeds 1", _set("stats.min_seeds", 1), CHECK, "stats.min_seeds=1"),
    ("threads negative", _set("train.threads", -3), TRAIN, "train.threads=-3"),
    ("threads zero", _set("train.threads", 0), TRAIN, "train.threads=0"),
    ("checkpoint_every a word", _set("train.checkpoint_every", "often"), TRAIN,
     "train.checkpoint_every='often' must be an integer"),
    ("nproc zero", _set("train.nproc", 0), TRAIN, "train.nproc=0"),
    ("batch not divisible by ranks", _set("train.nproc", 5), TRAIN, "is not divisible by the 5 ranks"),
    ("width zero", _set("model.width", 0), TRAIN, "model.width=0"),
    ("max_momentum 1", _set("momentum.max_momentum", 1.0), TRAIN, "momentum.max_momentum=1.0"),
    ("bad hybrid switch", _set("momentum.hybrid", {"switch": 2}), TRAIN, "switch=2"),
    ("hybrid switch a word", _set("momentum.hybrid", {"switch": "half"}), TRAIN, "switch='half' must be a number"),
    ("unknown schedule option", _set("momentum.beta", {"mu0": 0.9}), TRAIN, "unknown key momentum.beta.mu0"),
    ("k zero", _set("attribution.k", 0), ATTRIBUTE, "attribution.k=0"),
    ("k all groups", _set("attribution.k", 7), ATTRIBUTE, "attribution.k=7"),
    ("attribution threads zero", _set("attribution.threads", 0), ATTRIBUTE, "attribution.threads=0"),
    ("repair zero steps", _set("repair.steps", 0), REPAIR, "repair.steps=0"),
    ("repair lr infinite", _set("repair.lr", float("inf")), REPAIR, "repair.lr=inf"),
    ("repair no random draws", _set("repair.n_random", 0), REPAIR, "repair.n_random=0"),
    ("repair negative weight", _set("repair.upweight_errors", -1.0), CHECK, "repair.upweight_errors=-1.0"),
    ("split seed negative", _set("data.split_seed", -1), PREPARE, "data.split_seed=-1"),
    ("n_val not a multiple of 10", _set("data.n_val", 15), PREPARE, "data.n_val=15 must be a multiple of 10"),
    # the scan and the lambda ablation
    ("unknown curvature source", _set("momentum.beta_curv.source", "lambda_min"), CHECK,
     "unknown momentum.beta_curv.source 'lambda_min'"),
    ("curvature refresh every 0 steps", _set("momentum.beta_curv.every", 0), CHECK, "momentum.beta_curv.every=0"),
    ("negative lambda", _set("momentum.beta.lam", -1.0), TRAIN, "lam=-1.0 must be a curvature > 0"),
    ("scan batch larger than the data", _set("scan.batch_size", 100_000), SCAN, "scan.batch_size=100000 exceeds"),
    ("scan band not an interval", _set("scan.band", [1.5, 0.5]), CHECK, "must be an interval [low, high]"),
    ("scan band a number", _set("scan.band", 1.0), CHECK, "scan.band=1.0 must be an interval"),
    ("scan BatchNorm mode unknown", _set("scan.bn_mode", "frozen"), CHECK, "unknown scan.bn_mode 'frozen'"),
    ("scan no density probe", _set("scan.probes", 0), CHECK, "scan.probes=0"),
    ("scan weight decay a number", _set("scan.weight_decay", 1), CHECK, "scan.weight_decay=1 must be true or false"),
    ("curvature warm start a number", _set("momentum.beta_curv.warm_start", 1), CHECK,
     "momentum.beta_curv.warm_start=1 must be true or false"),
    ("curvature rtol 1", _set("momentum.beta_curv.rtol", 1.0), CHECK, "momentum.beta_curv.rtol=1.0 must be in [0, 1)"),
    ("ablation lists lambda 1", _set("ablation.lams", [0.3, 1]), CHECK, "ablation.lams lists 1"),
    # the matrix
    ("negative seed", _set("matrix.seeds", [-1]), TRAIN, "matrix.seeds entry=-1"),
    ("seed a word", _set("matrix.seeds", ["abc"]), TRAIN, "matrix.seeds entry='abc' must be an integer"),
    ("duplicate seed", _set("matrix.seeds", [0, 0]), TRAIN, "matrix.seeds lists 0 twice"),
    ("duplicate schedule", _set("matrix.schedules", ["beta", "beta", "constant"]), TRAIN,
     "matrix.schedules lists 'beta' twice"),
    ("duplicate optimizer", _set("matrix.optimizers", ["sgd", "adam", "sgd"]), CHECK, "matrix.optimizers lists 'sgd' twice"),
    ("no schedules", _set("matrix.schedules", []), TRAIN, "matrix.schedules=[] must be a non-empty list"),
    ("studied schedule not trained", lambda p: p["matrix"].update(schedules=["constant"]), ATTRIBUTE,
     "schedule='beta' was not trained"),
    # structure and typos
    ("no model section", _drop("model"), TRAIN, "params section model is missing"),
    ("no data section", _drop("data"), TRAIN, "params section data is missing"),
    ("no attribution section", _drop("attribution"), TRAIN, "params section attribution is missing"),
    ("no optim.sgd", _drop("optim.sgd"), TRAIN, "params section optim.sgd is missing"),
    ("no train.epochs", _drop("train.epochs"), TRAIN, "params.yaml lacks train.epochs"),
    ("no targets section", _drop("targets"), TRAIN, "params section targets is missing"),
    ("a section that is a scalar", _set("train", 5), TRAIN, "params section train is 5, not a mapping"),
    ("typo in a section", lambda p: p.update(trian={"epochs": 3}), TRAIN, "unknown key trian (did you mean train?)"),
    ("typo in a key", _set("train.epoch", 3), TRAIN, "unknown key train.epoch (did you mean train.epochs?)"),
    ("typo in an optimizer key", _set("optim.sgd.learning_rate", 0.1), TRAIN, "unknown key optim.sgd.learning_rate"),
    # data
    ("cifar missing offline", lambda p: p["data"].update(source="cifar10", raw_dir="nowhere"),
     PREPARE, "cifar-10-python.tar.gz"),
    ("corrupt jpeg archive", lambda p: p["data"].update(source="imagefolder", archive="params.yaml"),
     PREPARE, "corrupt or truncated"),
    # issue 20: long or escaped names, bounds that fit memory and the seeding functions
    ("100,000-character schedule name", _set("matrix.schedules", ["constant", "s" * 100_000]), CHECK,
     "unknown schedule 'ssssssss"),
    ("100,000-character key", _set("train." + "k" * 100_000, 1), CHECK, "unknown key train.kkkkkkkk"),
    ("ANSI escape in a key", _set("train.\x1b[2J\x1b[31mepochs", 3), CHECK, r"unknown key train.\x1b[2J\x1b[31mepochs"),
    ("ANSI escape in a schedule name", _set("matrix.schedules", ["constant", "\x1b[31mred"]), CHECK,
     r"unknown schedule '\x1b[31mred'"),
    ("quote in a schedule name", _set("matrix.schedules", ["constant", "x';touch PWNED;'"]), CHECK,
     "unknown schedule \"x';touch PWNED;'\""),
    ("split seed above 2**32-1", _set("data.split_seed", 2**64), PREPARE,
     "data.split_seed=18446744073709551616 must be an integer in [0, 4294967295]"),
    ("synthetic size beyond memory", _set("data.synthetic_size", 10**9), CHECK,
     "data.synthetic_size=1000000000 must be an integer in [10, 60000]"),
    ("width beyond memory", _set("model.width", 10**6), CHECK, "model.width=1000000 must be an integer in [1, 1024]"),
    ("seed above 2**32-1", _set("matrix.seeds", [4294967296]), CHECK,
     "matrix.seeds entry=4294967296 must be an integer in [0, 4294967295]"),
    ("pilot seed above 2**32-1", _set("targets.pilot_seeds", [2**32]), CHECK,
     "targets.pilot_seeds entry=4294967296 must be an integer in [0, 4294967295]"),
    ("epochs 1e12", _set("train.epochs", 10**12), CHECK, "train.epochs=1000000000000 must be an integer in [1, 10000]"),
    ("onecycle mu_max below mu_min", _set("momentum.onecycle", {"mu_max": 0.8, "mu_min": 0.9}), CHECK,
     "mu_max=0.8 is below mu_min=0.9"),
    ("onecycle mu_min above the default mu_max", _set("momentum.onecycle", {"mu_min": 0.97}), CHECK,
     "mu_max=0.95 is below mu_min=0.97"),
]


@pytest.mark.parametrize("name,edit,cmd,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_param(repo, name, edit, cmd, expected, capfd, monkeypatch):
    before = snapshot(repo)
    original = edit_params(repo, edit)
    try:
        code, err = run_inproc(repo, cmd, capfd, monkeypatch)
    finally:
        (repo / "params.yaml").write_text(original)
    after = snapshot(repo)
    after[Path("params.yaml")] = before[Path("params.yaml")]
    assert_one_line(code, err, expected)
    assert before == after
    assert not (repo / "pwned").exists()


ARG_CASES = [
    ("optimizer argument", ["stages/train.py", "--optimizer", "lion", "--schedule", "beta", "--seed", "0"],
     "unknown optimizer 'lion'"),
    ("schedule argument", ["stages/train.py", "--optimizer", "sgd", "--schedule", "warp", "--seed", "0"],
     "unknown schedule 'warp'"),
    ("seed argument negative", ["stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "-2"],
     "seed=-2"),
    ("seed argument a word", ["stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "abc"],
     "argument --seed: invalid int value: 'abc'"),
    ("missing argument", ["stages/train.py", "--optimizer", "sgd"], "the following arguments are required"),
    ("bad --jobs", ["-m", "betasched.pipeline.parallel", "--jobs", "zero"], "--jobs='zero' must be"),
    ("unknown --remote", ["-m", "betasched.pipeline.parallel", "--remote", "nowhere"],
     "--remote 'nowhere' is not a DVC remote of this repo (have: none): add it with `dvc remote add nowhere URL`"),
    ("unknown preset at compose time", ["-m", "betasched.pipeline.compose", "preset=huge"], "preset/huge"),
    # issue 20: the stage name DVC passes ($DVC_STAGE), long names, seeds beyond numpy's seeding
    ("stage name with shell code", ["stages/train.py", "--stage", "train@sgd-x';touch PWNED;'-0"],
     "--stage \"train@sgd-x';touch PWNED;'-0\" is not a stage name"),
    ("stage not in the matrix", ["stages/train.py", "--stage", "train@sgd-warp-0"],
     "--stage 'train@sgd-warp-0' is not a stage of params.yaml's matrix"),
    ("stage and run arguments both", ["stages/train.py", "--stage", "train@sgd-beta-0", "--seed", "1"],
     "--stage takes no --optimizer, --schedule, --seed or --lam"),
    ("100,000-character schedule argument", ["stages/train.py", "--optimizer", "sgd", "--schedule", "s" * 100_000,
                                             "--seed", "0"], "(100,000 characters)"),
    ("seed argument above 2**32-1", ["stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed",
                                     "4294967296"], "seed=4294967296 must be an integer in [0, 4294967295]"),
    ("shell in a name at compose time", ["-m", "betasched.pipeline.compose", "schedule='x;touch pwned'"],
     "unknown schedule 'x;touch pwned'"),
    ("100,000-character preset at compose time", ["-m", "betasched.pipeline.compose", "preset=" + "p" * 100_000],
     "(100,007 characters)"),
]


@pytest.mark.parametrize("name,cmd,expected", ARG_CASES, ids=[c[0] for c in ARG_CASES])
def test_bad_argument(repo, name, cmd, expected, capfd, monkeypatch):
    before = snapshot(repo)
    code, err = run_inproc(repo, cmd, capfd, monkeypatch)
    assert_one_line(code, err, expected)
    assert snapshot(repo) == before


def test_yaml_syntax_error_names_the_line(repo, capfd, monkeypatch):
    original = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(original.replace("train:\n", "train:\n  epochs: [3\n", 1))
    try:
        code, err = run_inproc(repo, TRAIN, capfd, monkeypatch)
    finally:
        (repo / "params.yaml").write_text(original)
    assert_one_line(code, err, "params.yaml is not valid YAML at line")


def _case_files(repo, capfd, monkeypatch, setup, cmd, expected, undo):
    """Break a file with ``setup``, run ``cmd``, restore with ``undo``."""
    setup()
    before = snapshot(repo)
    try:
        code, err = run_inproc(repo, cmd, capfd, monkeypatch)
        after = snapshot(repo)
    finally:
        undo()
    assert_one_line(code, err, expected)
    assert before == after


def test_tampered_prepared_data(repo, capfd, monkeypatch):
    data = repo / "data/prepared/data.pt"
    original = data.read_bytes()
    _case_files(repo, capfd, monkeypatch, lambda: data.write_bytes(original[:-16] + bytes(16)), TRAIN,
                "does not match its manifest's sha256", lambda: data.write_bytes(original))


def _checkpoint_path(repo, monkeypatch):
    import json as _json

    from betasched.pipeline.params import load_params, load_targets, run_config
    from betasched.pipeline.runs import run_key

    monkeypatch.chdir(repo)  # the key hashes the repo's own stage code
    params = load_params(repo / "params.yaml")
    sha = _json.loads((repo / "data/prepared/manifest.json").read_text())["data_sha256"]
    cfg = run_config(params, "sgd", "beta", 0, targets=load_targets())
    return repo / ".checkpoints" / f"sgd-beta-s0-{run_key(cfg, sha)}.pt"


def test_corrupt_checkpoint(repo, capfd, monkeypatch):
    ckpt = _checkpoint_path(repo, monkeypatch)
    ckpt.parent.mkdir(exist_ok=True)
    _case_files(repo, capfd, monkeypatch, lambda: ckpt.write_bytes(b"not a checkpoint"), TRAIN,
                "cannot be loaded", ckpt.unlink)


def test_checkpoint_without_model_key(repo, capfd, monkeypatch):
    import torch

    ckpt = _checkpoint_path(repo, monkeypatch)
    ckpt.parent.mkdir(exist_ok=True)
    _case_files(repo, capfd, monkeypatch, lambda: torch.save({"step": 3}, ckpt), TRAIN,
                "lacks model, optimizer", ckpt.unlink)


def test_corrupt_model_file(repo, capfd, monkeypatch):
    run = repo / "runs/sgd-beta-s0"

    def setup():
        run.mkdir(parents=True)
        (run / "model.pt").write_bytes(b"\x80\x02garbage")

    _case_files(repo, capfd, monkeypatch, setup, ATTRIBUTE, "model.pt cannot be loaded",
                lambda: shutil.rmtree(repo / "runs"))


def test_metrics_is_a_file(repo, capfd, monkeypatch):
    metrics = repo / "metrics"
    shutil.move(metrics, repo / "metrics.bak")
    _case_files(repo, capfd, monkeypatch, lambda: metrics.write_text("not a folder"), COMPARE,
                "metrics is a file, where the folder metrics must be",
                lambda: (metrics.unlink(), shutil.move(repo / "metrics.bak", metrics)))


@pytest.mark.parametrize("content,expected", [(b"", "is empty"), (b"garbage" * 10, "not an SQLite database")],
                         ids=["truncated", "garbage"])
def test_broken_mlflow_store_is_not_replaced(repo, capfd, monkeypatch, content, expected):
    db = repo / "mlflow.db"
    original = db.read_bytes()
    _case_files(repo, capfd, monkeypatch, lambda: db.write_bytes(content), ATTRIBUTE, expected,
                lambda: db.write_bytes(original))
    assert db.read_bytes() == original


def test_dangling_data_link(repo, capfd, monkeypatch):
    raw = repo / "data/raw"
    shutil.move(raw, repo / "raw.bak")
    original = edit_params(repo, _set("data.source", "auto"))

    def undo():
        raw.unlink()
        shutil.move(repo / "raw.bak", raw)
        (repo / "params.yaml").write_text(original)

    _case_files(repo, capfd, monkeypatch, lambda: raw.symlink_to(repo / "no-such-folder"), PREPARE,
                "data/raw is a broken link", undo)


def _png(size):
    """A 1-bit black image: a 10000 x 10000 one is a 12 KB PNG, and 300 MB once decoded to RGB."""
    buf = io.BytesIO()
    Image.new("1", size).save(buf, "PNG")
    return buf.getvalue()


def _tarball(path, members, mode="w:gz"):
    """members: (name, bytes), or (name, size) for that many zero bytes streamed from /dev/zero."""
    with tarfile.open(path, mode) as tar, open("/dev/zero", "rb") as zero:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size = blob if isinstance(blob, int) else len(blob)
            tar.addfile(info, zero if isinstance(blob, int) else io.BytesIO(blob))
    return path



def _prepare_refuses(repo, archive, capfd, monkeypatch, expected) -> str:
    """prepare on ``archive`` (an ImageFolder tarball): one line naming ``expected``, exit 2, and
    the repo as it was; returns stderr."""
    original = edit_params(repo, lambda p: p["data"].update(source="imagefolder", archive=str(archive), n_train=None,
                                                             n_val=10, n_test=10))
    before = snapshot(repo)
    try:
        code, err = run_inproc(repo, PREPARE, capfd, monkeypatch)
    finally:
        (repo / "params.yaml").write_text(original)
    assert_one_line(code, err, expected)
    after = snapshot(repo)
    after[Path("params.yaml")] = before[Path("params.yaml")]
    assert before == after
    return err


@pytest.mark.parametrize("name,members,expected", [
    ("huge image", [("train/airplane/0000.png", (10000, 10000))], "is 10000x10000, not CIFAR's 32x32"),
    ("decompression bomb", [("train/airplane/0000.png", (15000, 15000))], "not a readable 32x32 image"),
    ("oversized member", [("train/airplane/0000.png", b"\0" * 300_000)], "is 300,000 bytes"),
], ids=["10000^2 png", "15000^2 png", "300 KB member"])
def test_hostile_archives_are_refused_before_decoding(repo, capfd, monkeypatch, tmp_path, name, members, expected):
    import resource

    from betasched.training.archive import CLASSES

    hostile = dict((m, _png(b) if isinstance(b, tuple) else b) for m, b in members)
    good = _png((32, 32))
    blobs = [(name, hostile.get(name, good)) for name in
             [f"train/{c}/{i:04d}.png" for c in CLASSES for i in range(3)] + [f"test/{c}/0000.png" for c in CLASSES]]
    archive = _tarball(tmp_path / "hostile.tar.gz", blobs)
    assert archive.stat().st_size < 2_000_000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _prepare_refuses(repo, archive, capfd, monkeypatch, expected)
    # Peak memory grew by less than 200 MB (a 10000^2 RGB image decoded is 300 MB).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200_000


def test_a_large_non_image_member_is_not_read(tmp_path):
    """A 300 MB member beside the images is skipped unread: the reader's peak memory is that of the
    same archive with a 1 KB member (reading it whole, as before, added 1.7 GB for 1 GiB)."""
    from betasched.training.archive import CLASSES

    png = _png((32, 32))
    members = [(f"{s}/{c}/{i:04d}.png", png) for s in ("train", "test") for c in CLASSES for i in range(2)]
    code = ("import resource, sys; from betasched.training.archive import read_images; "
            "files = read_images(__import__('pathlib').Path(sys.argv[1])); "
            "print(len(files), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = {}
    for size in (1_000, 300_000_000):
        archive = _tarball(tmp_path / f"member-{size}.tar.gz", [*members, ("train/README.bin", size)])
        out = subprocess.run([sys.executable, "-c", code, str(archive)], capture_output=True, text=True,
                             check=True, env=env_with_venv())
        count, peaks[size] = map(int, out.stdout.split())
        assert count == 40
    assert peaks[300_000_000] - peaks[1_000] < 50_000, peaks  # kB


def test_tampered_cifar_batches_say_so(tmp_path):
    """Tampered official batches: a failed integrity check, not 'not found and download failed'."""
    from betasched.core.errors import DataError
    from betasched.training.data import prepare

    batches = tmp_path / "raw" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"]:
        (batches / name).write_bytes(b"tampered")
    cfg = dict(source="auto", archive=None, n_train=None, n_val=20, n_test=20, split_seed=0,
               raw_dir=str(tmp_path / "raw"))
    with pytest.raises(DataError, match="fail torchvision's md5 check"):
        prepare(cfg, tmp_path / "prepared", download=True)
    assert not (tmp_path / "prepared").exists()


def test_unreachable_tracking_server(repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = snapshot(repo)
    out = subprocess.run([sys.executable, *PREPARE], cwd=repo, capture_output=True, text=True, timeout=60,
                         env=env_with_venv(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}"))
    assert_one_line(out.returncode, out.stderr, "is unreachable")
    assert snapshot(repo) == before


def test_make_ui_on_a_taken_port(repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "betasched.pipeline.ui", "--port", str(port)], cwd=repo,
                             capture_output=True, text=True, timeout=60, env=env_with_venv())
    assert_one_line(out.returncode, out.stderr, f"127.0.0.1:{port} is taken")


def _as_unprivileged(cmd):
    """Root ignores read-only modes: drop the capabilities that let it (root keeps its own files'
    owner bits, so 0555 / 0444 bind it as they bind any user)."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root without setpriv")
@pytest.mark.parametrize("target,cmd,expected", [
    ("runs", TRAIN, "runs is not writable"),
    ("mlflow.db", PREPARE, "is read-only"),
], ids=["read-only runs", "read-only mlflow store"])
def test_read_only_outputs(repo, target, cmd, expected):
    path = repo / target
    path.mkdir(exist_ok=True) if target == "runs" else None
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    before = snapshot(repo)
    try:
        out = subprocess.run(_as_unprivileged([sys.executable, *cmd]), cwd=repo, capture_output=True, text=True,
                             timeout=120, env=env_with_venv())
        after = snapshot(repo)
    finally:
        path.chmod(mode)
        if target == "runs":
            path.rmdir()
    assert_one_line(out.returncode, out.stderr, expected)
    assert before == after


def test_shell_injection_never_runs_through_dvc(repo, tmp_path):
    """A schedule name with shell code, given to plain `dvc repro`: the check stage stops it first."""
    pwned = tmp_path / "pwned"
    original = edit_params(repo, _set("matrix.schedules", [f"beta; touch {pwned} #", "constant"]))
    try:
        out = subprocess.run(["dvc", "repro"], cwd=repo, env=env_with_venv(), capture_output=True, text=True,
                             timeout=300)
    finally:
        (repo / "params.yaml").write_text(original)
    assert out.returncode != 0
    assert "unknown schedule 'beta; touch" in out.stderr + out.stdout
    assert not pwned.exists()


def test_shell_injection_through_dvc_repro_s(repo):
    """Issue 20: `dvc repro -s` skips the check stage, and a quote in a name broke dvc.yaml's
    '${item.schedule}' quoting (the test above gives plain `dvc repro`, whose check stage stops it, a
    name without a quote). The exact steps of the issue: no name reaches the shell, the stage fails
    with one line, and nothing of the repo changes."""
    name = "x';touch PWNED;'"

    def edit(p):
        p["matrix"]["schedules"] = ["constant", name]
        p["momentum"][name] = {"mu0": 0.9}

    before = snapshot(repo)
    original = edit_params(repo, edit)
    try:
        out = subprocess.run(["dvc", "repro", "-s", f"train@sgd-{name}-0"], cwd=repo, env=env_with_venv(),
                             capture_output=True, text=True, timeout=300)
    finally:
        (repo / "params.yaml").write_text(original)
        pwned = (repo / "PWNED").exists()
        (repo / "PWNED").unlink(missing_ok=True)
    assert not pwned, out.stdout + out.stderr
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and name in errors[0], out.stderr
    after = snapshot(repo)
    after[Path("params.yaml")] = before[Path("params.yaml")]
    dvc_own = lambda snap: {p: v for p, v in snap.items() if p.parts[0] != ".dvc"}  # noqa: E731  (its lock files)
    assert dvc_own(before) == dvc_own(after)


def test_no_matrix_value_is_pasted_into_a_command():
    """dvc.yaml's commands hold no `${...}`: a matrix stage's script finds its run from the stage
    name DVC passes in $DVC_STAGE, so no name from params.yaml is ever parsed by a shell."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert "${" not in str(stage["cmd"]), (name, stage["cmd"])


def test_every_train_stage_name_resolves_to_its_run(repo):
    """Each train@ / control@ / lam@ stage that DVC lists resolves, from its name alone, to the run
    that the old `--optimizer/--schedule/--seed/--lam` arguments gave, lam as float(str(lam))."""
    from betasched.pipeline.params import load_params, stage_run

    original = edit_params(repo, lambda p: (p["ablation"].update(lams=[0.3, 3, 1e-05]),
                                            p["matrix"].update(seeds=[0, 7])))
    try:
        out = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=repo, env=env_with_venv(),
                             capture_output=True, text=True, timeout=120, check=True)
        params = load_params(repo / "params.yaml")
    finally:
        (repo / "params.yaml").write_text(original)
    names = [s for s in out.stdout.split() if s.startswith(("train@", "control@", "lam@"))]
    got = sorted((stage_run(params, s) for s in names), key=repr)
    m = params.matrix
    want = [(o, s, seed, None) for o in m.optimizers for s in m.schedules for seed in m.seeds]
    want += [("sgd", c, seed, None) for c in m.controls for seed in m.seeds]
    want += [("sgd", "beta", seed, float(str(lam))) for lam in [0.3, 3, 1e-05] for seed in m.seeds]
    assert got == sorted(want, key=repr)
    assert len(names) == len(want)


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder"])
def test_an_archive_that_is_not_a_regular_file_is_refused(repo, tmp_path, kind):
    """data.archive: /dev/zero made `prepare` read forever; a FIFO blocks. One line, exit 2."""
    target = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "fifo", "folder": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    original = edit_params(repo, lambda p: p["data"].update(source="imagefolder", archive=str(target)))
    before = snapshot(repo)
    try:
        out = subprocess.run([sys.executable, *PREPARE], cwd=repo, capture_output=True, text=True, timeout=60,
                             env=env_with_venv())
    finally:
        (repo / "params.yaml").write_text(original)
    assert_one_line(out.returncode, out.stderr, "is not a regular file")
    after = snapshot(repo)
    after[Path("params.yaml")] = before[Path("params.yaml")]
    assert before == after


def test_a_raw_dir_outside_the_repo_is_left_as_it_was(repo, tmp_path, capfd, monkeypatch):
    """data.raw_dir outside the repo (the snapshot cannot see it): a failed download removes every
    folder it created, not only the last one."""
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("offline (test)")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    raw = tmp_path / "outside" / "a" / "b"
    original = edit_params(repo, lambda p: p["data"].update(source="cifar10", raw_dir=str(raw)))
    before = snapshot(repo)
    try:
        code, err = run_inproc(repo, PREPARE, capfd, monkeypatch)
    finally:
        (repo / "params.yaml").write_text(original)
    assert_one_line(code, err, "CIFAR-10 not found and its download failed")
    assert not (tmp_path / "outside").exists()
    after = snapshot(repo)
    after[Path("params.yaml")] = before[Path("params.yaml")]
    assert before == after


@pytest.mark.parametrize("edit,expected", [
    (lambda text: text + "train:\n  epochs: 3\n", "params.yaml has the key train twice (lines "),
    (lambda text: text.replace("train:\n", "train:\n  epochs: 3\n", 1), "params.yaml has the key train.epochs twice (lines "),
], ids=["section", "key"])
def test_duplicate_yaml_key_names_the_key_and_line(repo, capfd, monkeypatch, edit, expected):
    """PyYAML keeps the last of two equal keys, where DVC refuses the file: refuse it too."""
    original = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(edit(original))
    try:
        code, err = run_inproc(repo, CHECK, capfd, monkeypatch)
    finally:
        (repo / "params.yaml").write_text(original)
    assert_one_line(code, err, expected)


@pytest.mark.parametrize("member,expected", [
    ("../train/airplane/0000.png", "'../train/airplane/0000.png' is outside the archive's folder"),
    ("/abs/train/airplane/0000.png", "'/abs/train/airplane/0000.png' is outside the archive's folder"),
    ("train/airplane/../../../x/train/airplane/0000.png", "is outside the archive's folder"),
    ("train/airplane/\x1b[2J\x1b[31m0000.png", r"'train/airplane/\x1b[2J\x1b[31m0000.png' is 300,000 bytes"),
], ids=["dot-dot", "absolute", "dot-dot inside", "ANSI escape"])
def test_unsafe_archive_member_names(repo, capfd, monkeypatch, tmp_path, member, expected):
    """A member named ../ or /... is not an image of the archive: refused, not counted; a name with
    ANSI escapes is printed escaped (repr), never raw to the terminal."""
    from betasched.training.archive import CLASSES

    good = _png((32, 32))
    blobs = [(f"train/{c}/{i:04d}.png", good) for c in CLASSES for i in range(3)]
    blobs += [(f"test/{c}/0000.png", good) for c in CLASSES]
    blobs.append((member, b"\0" * 300_000 if "\x1b" in member else good))
    archive = _tarball(tmp_path / "unsafe.tar.gz", blobs)
    err = _prepare_refuses(repo, archive, capfd, monkeypatch, expected)
    assert "\x1b" not in err


LONG = [(c[0], c[3], c[2], c[1]) for c in CASES if c[0].startswith("100,000")] + \
    [(c[0], c[2], c[1], None) for c in ARG_CASES if c[0].startswith("100,000")]


@pytest.mark.parametrize("name,expected,cmd,edit", LONG, ids=[c[0] for c in LONG])
def test_long_names_are_cut_in_the_error(repo, name, expected, cmd, edit, capfd, monkeypatch):
    """A 100,000-character name is shown as its first characters and its length, not whole."""
    original = edit_params(repo, edit) if edit else None
    try:
        code, err = run_inproc(repo, cmd, capfd, monkeypatch)
    finally:
        if original is not None:
            (repo / "params.yaml").write_text(original)
    assert_one_line(code, err, expected)
    assert len(err) < 400 and "characters)" in err, err[:500]


def test_cases_cover_the_catalogue():
    assert len(CASES) + len(ARG_CASES) >= 60


# ---- issue 20: the store, the disk, the checkpoints' folder and signals ----

def test_a_corrupt_mlflow_store_is_one_line(repo):
    """Pages of mlflow.db overwritten (its header intact): one line naming the file and the fix,
    not sqlite's traceback; the store is left as it was. (A process of its own: this one's MLflow
    keeps pooled connections whose page cache would not see the change.)"""
    db = repo / "mlflow.db"
    original = db.read_bytes()
    data = bytearray(original)
    for page in range(1, len(data) // 4096):
        data[page * 4096: page * 4096 + 16] = bytes(b ^ 0xFF for b in data[page * 4096: page * 4096 + 16])
    db.write_bytes(bytes(data))
    before = snapshot(repo)
    try:
        out = subprocess.run([sys.executable, *ATTRIBUTE], cwd=repo, capture_output=True, text=True, timeout=120,
                             env=env_with_venv())
        after = snapshot(repo)
    finally:
        db.write_bytes(original)
    assert_one_line(out.returncode, out.stderr, f"MLflow store {db} is corrupt")
    assert f"mv {db} {db}.bad" in out.stderr
    assert before == after


def test_a_locked_mlflow_store_is_one_line(repo, capfd, monkeypatch):
    """Another process holds mlflow.db locked (a `sqlite3` shell mid-transaction): one line naming
    the file and the fix, after a bounded wait, not a traceback."""
    import sqlite3
    import time

    from betasched.pipeline import store_file

    monkeypatch.setattr(store_file, "LOCK_WAIT_S", 2.0)
    holder = sqlite3.connect(repo / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    before = snapshot(repo)
    start = time.time()
    try:
        code, err = run_inproc(repo, ATTRIBUTE, capfd, monkeypatch)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_one_line(code, err, f"MLflow store {repo / 'mlflow.db'} is locked by another process")
    assert time.time() - start < 60
    assert snapshot(repo) == before


def _file_size_limit(limit):
    """`ulimit -f` for the child: a write past ``limit`` bytes fails with EFBIG (SIGXFSZ ignored)."""
    def set_limit():
        import resource
        import signal

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return set_limit


@pytest.mark.parametrize("cmd,limit,env,expected", [
    (PREPARE, 2_000_000, {}, "no space left writing data/prepared/data.pt: free space and re-run"),
    (TRAIN, 300_000, {"BETASCHED_TRACKING": "files"}, "no space left writing {repo}/.checkpoints/sgd-beta-s0-"),
    (TRAIN, 300_000, {}, "no space left writing {repo}/mlflow.db: free space and re-run"),
], ids=["prepare", "train checkpoint", "train mlflow store"])
def test_a_full_disk_is_one_line_and_leaves_no_litter(repo, cmd, limit, env, expected):
    """A full disk (here `ulimit -f`: the same failed write, EFBIG instead of ENOSPC) while prepare or a
    training writes: one line naming the file, exit 2, no temp file left, no output replaced."""
    before = snapshot(repo)
    try:
        out = subprocess.run([sys.executable, *cmd], cwd=repo, capture_output=True, text=True, timeout=300,
                             env=env_with_venv(**env), preexec_fn=_file_size_limit(limit))
        after = snapshot(repo)
    finally:
        for leftover in (".checkpoints", "tracking", "runs"):
            if leftover not in {p.parts[0] for p in before}:
                shutil.rmtree(repo / leftover, ignore_errors=True)
    # a training's progress lines go to stderr before it: the error is the one `error:` line, and the last
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert_one_line(out.returncode, errors[0], expected.format(repo=repo))
    assert out.stderr.strip().splitlines()[-1] == errors[0]
    assert not [p for p in after if p.name.endswith(".tmp")], sorted(map(str, after))
    changed = {p for p in after if before.get(p) != after[p]}
    # what may change: the store, the tracking files of BETASCHED_TRACKING=files, the empty checkpoints folder
    assert {p for p in changed if p.parts[0] not in ("mlflow.db", "mlflow.db-journal", "tracking", ".checkpoints",
                                                      ".pipeline-run.lock")} == set(), sorted(map(str, changed))
    assert not list((repo / ".checkpoints").glob("*")) if (repo / ".checkpoints").exists() else True
    if (repo / "mlflow.db-journal").exists():  # sqlite's own: the next connection rolls the failed write back
        import sqlite3

        with sqlite3.connect(repo / "mlflow.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert not (repo / "mlflow.db-journal").exists()


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root without setpriv")
def test_read_only_checkpoints_are_found_before_training(repo):
    """train.checkpoint_every > 0 and a read-only .checkpoints/: refused before the first step (it
    was found at the first checkpoint, after an MLflow run had been opened and steps logged)."""
    folder = repo / ".checkpoints"
    created = not folder.exists()
    folder.mkdir(exist_ok=True)
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    before = snapshot(repo)
    try:
        out = subprocess.run(_as_unprivileged([sys.executable, *TRAIN]), cwd=repo, capture_output=True, text=True,
                             timeout=300, env=env_with_venv())
        after = snapshot(repo)
    finally:
        folder.chmod(mode)
        if created:
            shutil.rmtree(folder)
    assert_one_line(out.returncode, out.stderr, f"{folder} is not writable")
    assert before == after


def test_an_interrupted_repair_says_which_outputs_are_absent(repo, capfd, monkeypatch):
    """SIGTERM during `dvc repro`'s repair: DVC had removed metrics/repair.* before running it, so
    'outputs are as they were' was false; the line names the absent outputs and how to re-make them."""
    import betasched.pipeline.study

    outputs = ["metrics/repair.csv", "plots/repair.png", "plots/data/repair.csv", "metrics/repair.json"]
    saved = {o: (repo / o).read_bytes() for o in outputs if (repo / o).exists()}
    for o in outputs:
        (repo / o).unlink(missing_ok=True)  # as DVC does before it runs the stage

    def killed(params):
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(betasched.pipeline.study, "studied_runs", killed)
    monkeypatch.setenv("DVC_STAGE", "repair")
    try:
        code, err = run_inproc(repo, REPAIR, capfd, monkeypatch)
    finally:
        for o, blob in saved.items():
            (repo / o).write_bytes(blob)
    line = err.strip().splitlines()[-1] if err.strip() else ""
    assert_one_line(code, err, "interrupted (SIGTERM)", exit_code=130)
    assert "as they were" not in line
    for o in outputs:
        assert o in line, line
    assert "`dvc repro` re-makes them" in line
