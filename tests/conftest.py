"""Shared fixtures: the real FER2013 file when present, and tiny synthetic data sets."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "fer2013.csv.gz"
USAGES = ("Training", "PublicTest", "PrivateTest")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the data cache and Keras's home out of the user's folders during tests."""
    monkeypatch.setenv("FER2013_CACHE", str(tmp_path_factory.mktemp("fer_cache")))
    yield


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    """``../shared/data/fer2013.csv.gz`` beside the repository; the test is skipped without it."""
    if not REAL_DATA.is_file():
        pytest.skip(f"real FER2013 data not found at {REAL_DATA}")
    return REAL_DATA


# The tests' quick grid: run_all.sh --quick at 24 images per split instead of 48 (the same pipeline,
# half the images at 197x197 for ResNet50 and SENet50); every call that resumes or compares with it
# passes the same environment.
QUICK_ENV = {"QUICK_LIMIT": "24"}


@pytest.fixture(scope="session")
def local_quick_grid(tmp_path_factory, real_data_path):
    """``./run_all.sh --quick`` on the real data, run once per session: ``(output folder, its result)``."""
    import subprocess

    out = tmp_path_factory.mktemp("quick") / "quick"
    res = subprocess.run(["bash", str(REPO_ROOT / "run_all.sh"), "--quick", "--data", str(real_data_path),
                          "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500,
                         env={**os.environ, **QUICK_ENV, "FER2013_CACHE": str(tmp_path_factory.mktemp("quick_cache"))})
    return out, res


def make_fake_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """48x48 uint8 faces whose class is learnable: a bright square whose position encodes the label."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(len(labels), 48, 48), dtype=np.uint8)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 3)
        x[i, 4 + r * 14 : 14 + r * 14, 4 + c * 14 : 14 + c * 14] = 220
    return x


def write_fake_csv(path: Path, per_class: dict[str, int] | None = None, seed: int = 0,
                   usage: bool = True, compress: bool | None = None) -> Path:
    """Write a small FER2013-format CSV (``emotion,pixels,Usage``), every class in every split."""
    per_class = per_class or {"Training": 6, "PublicTest": 3, "PrivateTest": 3}
    rows = []
    for u, k in per_class.items():
        labels = np.repeat(np.arange(7), k)
        x = make_fake_images(labels, seed=seed + len(rows))
        for label, img in zip(labels, x):
            rows.append((int(label), " ".join(map(str, img.ravel())), u))
    header = "emotion,pixels,Usage" if usage else "emotion,pixels"
    lines = [header] + [f"{e},{p},{u}" if usage else f"{e},{p}" for e, p, u in rows]
    text = "\n".join(lines) + "\n"
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def fake_csv(tmp_path) -> Path:
    """A 84-image synthetic FER2013 CSV (6/3/3 images per class in Training/PublicTest/PrivateTest)."""
    return write_fake_csv(tmp_path / "fer_fake.csv")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Register test members in a copy of the registry, restored afterwards."""
    from members.core import registry

    registry.discover_members()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    yield registry._REGISTRY
