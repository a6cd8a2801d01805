"""Test defaults: the smoke profile and the CPU, unless the caller set them."""
import os

os.environ.setdefault("COURSE_PROFILE", "smoke")

import pytest
import torch

from course_utils import data, models, training
from course_utils.config import seed_everything


@pytest.fixture
def tiny_model():
    """An untrained MNIST-shaped CNN: enough for constraint tests."""
    seed_everything(0)
    return models.mnist_small_cnn().eval()


@pytest.fixture(scope="session")
def mnist_test():
    """512 stratified MNIST test images (x in [0, 1]) and labels."""
    return data.subset_tensors(data.load_dataset("mnist", "test"), 512, seed=0)


@pytest.fixture(scope="session")
def mnist_model():
    """A standard small CNN trained for one epoch on 20,000 MNIST images (about 5 s on 2 cores)."""
    seed_everything(0)
    model = models.mnist_small_cnn()
    loader = data.make_loader(data.load_dataset("mnist", "train"), batch_size=128, n=20_000, seed=0)
    training.fit(model, loader, epochs=1, lr=0.05, progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is faster than two on a shared CPU (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SITE_NOTEBOOKS = ("00_setup_and_course_map.ipynb", "02_adversarial_examples_foundations.ipynb")  # small, with figures


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The rendered course of notebooks 00 and 02: ``benchmarks/notebooks.py`` (smoke profile, cold pass, a
    fresh cache) then ``benchmarks/build_site.py``, as the README says; under a minute on 2 idle cores. Used by
    tests/test_site.py and tests/test_browser.py. Yields (executed folder, html folder, build seconds)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    pytest.importorskip("jupyter_book", reason="jupyter-book 1.x (the site builder) is not installed: pip install -e '.[dev]'")
    root, tmp = Path(__file__).parents[1], tmp_path_factory.mktemp("site")
    executed = tmp / "executed"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    bench = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "notebooks.py"), *(str(root / "notebooks" / n) for n in SITE_NOTEBOOKS),
         "--profile", "smoke", "--passes", "cold", "--keep-outputs", str(executed), "--data-cache", str(tmp / "data_cache"),
         "--no-prepare-data", "--timeout", "600", "--settle-max", "0"], capture_output=True, text=True, env=env)
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    t0 = time.time()
    build = subprocess.run([sys.executable, str(root / "benchmarks" / "build_site.py"), "--executed", str(executed),
                            "--out", str(tmp / "site")], capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return executed, tmp / "site" / "_build" / "html", time.time() - t0
