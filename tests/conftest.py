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
