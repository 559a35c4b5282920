import contextlib
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _data_root() -> Path | None:
    env = os.environ.get("TUNEBENCH_DATA")
    root = Path(env) if env else SHARED_DATA / "original"
    return root if root.is_dir() else None


if _data_root() is not None:  # the CLI under test finds the real data as a user would
    os.environ.setdefault("TUNEBENCH_DATA", str(_data_root()))
# The catalog under test is the built-in one: a user's own task files stay out of it.
os.environ.pop("TUNEBENCH_TASKS", None)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.skip("real data not found: set TUNEBENCH_DATA to LM-BFF's data/original folder")
    return root


@pytest.fixture(scope="session")
def lmbff_checksums(data_root) -> dict[str, str]:
    path = data_root.parent / "lmbff-k-shot-16.md5"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    sums = {}
    for line in path.read_text().splitlines():
        md5, name = line.split()
        sums[name] = md5
    return sums


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, above all on a shared machine."""
    with _threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_module():
    """The same for a whole module: ``pytestmark = pytest.mark.usefixtures(...)``."""
    with _threads(1):
        yield
