"""Resumable training: atomic checkpoints keyed by a hash of the run's full config.

They live outside DVC's outputs (DVC deletes a stage's outputs before it runs) and are
removed when the run completes. Everything loads with torch.load(weights_only=True).
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .config import repo_root
from .io import load_torch, save_torch


def run_key(cfg, data_sha256: str) -> str:
    blob = json.dumps({"config": asdict(cfg), "data": data_sha256}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def checkpoint_path(name: str, key: str) -> Path:
    return repo_root() / ".checkpoints" / f"{name}-{key}.pt"


def rng_state(gen: torch.Generator) -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "generator": gen.get_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["generator"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict) -> None:
    save_torch(path, state)


def load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return load_torch(path, f"rm {path} && dvc repro")
