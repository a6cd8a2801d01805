"""course_utils.config and course_utils.data: profiles, devices, offline loading, subsets."""
import os
import tarfile

import numpy as np
import pytest
import torch

from course_utils import config, data


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "quick")
    assert config.get_profile().name == "quick"
    monkeypatch.setenv("COURSE_PROFILE", "bogus")
    with pytest.raises(ValueError, match="COURSE_PROFILE"):
        config.get_profile()
    monkeypatch.delenv("COURSE_PROFILE")
    assert config.get_profile().name == ("full" if torch.cuda.is_available() else "quick")


def test_profiles_grow_and_pick():
    s, q, f = (config.PROFILES[n] for n in config.PROFILE_NAMES)
    assert s.n_test < q.n_test <= f.n_test and s.attack_steps < q.attack_steps <= f.attack_steps
    assert q.pick(smoke=1, quick=2, full=3) == 2
    assert list(config.profile_table().columns) == list(config.PROFILE_NAMES)


def test_device_override(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "no-such-device")
    with pytest.raises(ValueError, match="COURSE_DEVICE"):
        config.get_device()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            config.get_device("cuda")


def test_seed_everything_repeats():
    config.seed_everything(5)
    a = torch.rand(3)
    config.seed_everything(5)
    assert torch.equal(a, torch.rand(3))


@pytest.mark.skipif(not os.environ.get("COURSE_DATA_DIR"), reason="needs COURSE_DATA_DIR with the offline data")
def test_mnist_offline_is_exact():
    ds = data.load_dataset("mnist", "test")
    assert len(ds) == 10_000
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert ds.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.mark.skipif(not os.environ.get("COURSE_DATA_DIR"), reason="needs COURSE_DATA_DIR with the offline data")
def test_cifar10_from_jpeg_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    ds = data.load_dataset("cifar10", "test")
    assert len(ds) == 10_000 and ds.classes[3] == "cat"
    assert torch.bincount(ds.targets).tolist() == [1000] * 10
    x, _ = ds.tensors(torch.arange(0, 10_000, 50))
    assert x.shape == (200, 3, 32, 32) and 0.4 < x.mean() < 0.55
    assert list(tmp_path.glob("*.npz")) and not list(tmp_path.glob("*.tmp"))
    assert len(data.load_dataset("cifar10", "test")) == 10_000  # second time: from the cache


def _fake_archive(path, n_per_class=2):
    from PIL import Image
    import io

    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for c in data.CIFAR10_CLASSES:
                for i in range(n_per_class):
                    buf = io.BytesIO()
                    Image.fromarray(np.full((32, 32, 3), 10 * i, np.uint8)).save(buf, format="JPEG")
                    info = tarfile.TarInfo(f"cifar10_jpeg/{split}/{c}/{i:04d}.jpg")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)


def test_cifar10_archive_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    _fake_archive(tmp_path / data.CIFAR10_JPEG_ARCHIVE)
    with pytest.raises(ValueError, match="SHA-256"):
        data.load_dataset("cifar10", "test", download=False)
    assert not list((tmp_path / "cache").glob("*.npz"))  # nothing half-made survives


def test_cifar10_archive_decodes_when_checksum_matches(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    _fake_archive(tmp_path / data.CIFAR10_JPEG_ARCHIVE)
    monkeypatch.setattr(data, "CIFAR10_JPEG_SHA256", data.sha256sum(tmp_path / data.CIFAR10_JPEG_ARCHIVE))
    ds = data.load_dataset("cifar10", "train", download=False)
    assert len(ds) == 20 and ds.targets.tolist() == sorted(ds.targets.tolist())
    (cache,) = (tmp_path / "cache").glob("*.npz")
    cache.write_bytes(b"corrupt")  # a damaged cache is rebuilt, not trusted
    assert len(data.load_dataset("cifar10", "train", download=False)) == 20


def test_missing_data_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        data.load_dataset("cifar10", "train", download=False)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.load_dataset("mnist", "train", download=False)


def test_bad_names_raise():
    with pytest.raises(ValueError, match="name"):
        data.load_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="split"):
        data.load_dataset("mnist", "val")


def test_stratified_indices_balanced_and_seeded():
    targets = torch.arange(1000) % 10
    idx = data.stratified_indices(targets, 95, seed=1)
    assert len(idx) == 95 and len(set(idx.tolist())) == 95
    counts = torch.bincount(targets[idx], minlength=10)
    assert counts.max() - counts.min() <= 1
    assert torch.equal(idx, data.stratified_indices(targets, 95, seed=1))
    assert not torch.equal(idx, data.stratified_indices(targets, 95, seed=2))


def test_array_dataset_validates():
    with pytest.raises(ValueError, match="uint8"):
        data.ArrayDataset(torch.rand(2, 1, 4, 4), [0, 1])
    with pytest.raises(ValueError, match="labels"):
        data.ArrayDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), [0])


def test_relative_data_dir_is_taken_from_the_repository_root(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", "../shared/data")
    monkeypatch.chdir(tmp_path)  # as in a notebook, whose working directory is notebooks/
    assert config.data_dir() == (config.REPO_ROOT / "../shared/data").resolve()
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert config.data_dir() == tmp_path.resolve()
