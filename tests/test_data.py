"""course.data and course.download: real datasets, every file format on small files written here, bad
input, downloads."""

import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from course import data
from course.data import DataError


# ---------------------------------------------------------------------------------------------
# Real datasets (../shared/data)

@pytest.mark.parametrize("name, split, count, shape", [
    ("mnist", "train", 60000, (28, 28, 1)), ("mnist", "test", 10000, (28, 28, 1)),
    ("fashion_mnist", "train", 60000, (28, 28, 1)), ("fashion_mnist", "test", 10000, (28, 28, 1)),
    ("cifar10", "train", 50000, (32, 32, 3)), ("cifar10", "test", 10000, (32, 32, 3)),
])
def test_real_image_datasets(real_data_dir, name, split, count, shape):
    images, labels = data.load(name, split, data_dir=real_data_dir)
    assert images.shape == (count, *shape) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.int32
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == count and len(counts) == 10
    if name != "mnist":
        assert np.all(counts == count // 10)


def test_real_mnist_statistics_and_order(real_data_dir):
    images, labels = data.load("mnist", "train", data_dir=real_data_dir)
    scaled = images / 255.0
    assert scaled.mean() == pytest.approx(0.1307, abs=5e-5)
    assert scaled.std() == pytest.approx(0.3081, abs=5e-5)
    assert labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]


def test_real_cifar10_channel_means(real_data_dir):
    images, _ = data.load("cifar10", "train", data_dir=real_data_dir)
    np.testing.assert_allclose((images / 255.0).mean(axis=(0, 1, 2)), [0.4913, 0.4821, 0.4465], atol=6e-4)


def test_real_tables(real_data_dir):
    train_features, train_labels = data.load("diabetes", "train", data_dir=real_data_dir)
    test_features, test_labels = data.load("diabetes", "test", data_dir=real_data_dir)
    assert train_features.shape == (614, 8) and test_features.shape == (154, 8)
    assert train_features.dtype == np.float32 and set(np.unique(train_labels)) == {0, 1}
    all_features, _ = data.load("diabetes", "all", data_dir=real_data_dir)
    np.testing.assert_array_equal(all_features[data.original_split(768, 0, 0.8)], train_features)
    assert all_features[0].tolist() == pytest.approx([6, 148, 72, 35, 0, 33.6, 0.627, 50])
    admissions, admitted = data.load("student_admissions", "train", data_dir=real_data_dir)
    assert admissions.shape == (360, 3) and admitted.shape == (360,)
    points, point_labels = data.load("gradient_descent_points", "all", data_dir=real_data_dir)
    assert points.shape == (100, 2) and set(np.unique(point_labels)) == {0, 1}


def test_original_split_equals_numpy_legacy_choice():
    np.random.seed(42)
    expected = np.random.choice(400, size=360, replace=False)
    np.testing.assert_array_equal(data.original_split(400, 42, 0.9), expected)


# ---------------------------------------------------------------------------------------------
# File formats, on small files written here

def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder, images, labels, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    for split, (image_stem, label_stem) in data.IDX_FILES.items():
        for stem, array, magic in ((image_stem, images, 2051), (label_stem, labels, 2049)):
            raw = idx_bytes(array, magic)
            (folder / (stem + (".gz" if compress else ""))).write_bytes(gzip.compress(raw) if compress else raw)


def small_images(count=6, size=28, channels=None, seed=0):
    shape = (count, size, size) if channels is None else (count, size, size, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files(tmp_path, compress):
    images, labels = small_images(), np.array([3, 1, 4, 1, 5, 9], np.uint8)
    write_idx_dataset(tmp_path / "fashion_mnist", images, labels, compress)
    loaded_images, loaded_labels = data.load("fashion_mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(loaded_images[..., 0], images)
    assert loaded_images.shape == (6, 28, 28, 1) and loaded_labels.dtype == np.int32
    np.testing.assert_array_equal(loaded_labels, labels)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    write_idx_dataset(tmp_path / "mnist", small_images(), np.arange(6, dtype=np.uint8))
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert data.load("mnist", "train")[0].shape == (6, 28, 28, 1)


def test_cifar_python_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    expected_images, expected_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        nchw = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, 3).tolist()
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": nchw.reshape(3, -1), b"labels": labels}, handle)
        if name != "test_batch":
            expected_images.append(nchw.transpose(0, 2, 3, 1))
            expected_labels += labels
    images, labels = data.load("cifar10", "train", data_dir=tmp_path)
    np.testing.assert_array_equal(images, np.concatenate(expected_images))
    np.testing.assert_array_equal(labels, expected_labels)
    assert data.load("cifar10", "test", data_dir=tmp_path)[0].shape == (3, 32, 32, 3)


def test_cifar_binary_batches(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    nchw = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    labels = np.array([7, 0, 2, 9], np.uint8)
    records = np.concatenate([labels[:, None], nchw.reshape(4, -1)], axis=1)
    (folder / "test_batch.bin").write_bytes(records.tobytes())
    images, loaded_labels = data.load("cifar10", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(images, nchw.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(loaded_labels, labels)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_folder_tree(tmp_path):
    images = small_images(3, 32, 3, seed=3)
    for image, class_name, file_name in zip(images, ["truck", "airplane", "truck"], ["b.png", "a.png", "a.png"]):
        (tmp_path / "cifar10" / "test" / class_name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "cifar10" / "test" / class_name / file_name).write_bytes(png_bytes(image))
    loaded, labels = data.load("cifar10", "test", data_dir=tmp_path)
    assert labels.tolist() == [0, 9, 9]  # sorted by class, then file name
    np.testing.assert_array_equal(loaded, images[[1, 2, 0]])


def write_archive(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def test_image_folder_archive_and_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    images = small_images(2, 32, 3, seed=4)
    write_archive(tmp_path / "cifar10-jpeg.tar.gz", {
        "train/frog/0001.png": png_bytes(images[0]), "test/cat/0001.png": png_bytes(images[1])})
    loaded, labels = data.load("cifar10", "train", data_dir=tmp_path)
    np.testing.assert_array_equal(loaded, images[:1])
    assert labels.tolist() == [6]
    cached = sorted(data.cache_root().glob("*.npz"))
    assert len(cached) == 1 and not list(data.cache_root().glob("*.partial"))
    again, _ = data.load("cifar10", "train", data_dir=tmp_path)  # read from the cache
    np.testing.assert_array_equal(again, loaded)


# ---------------------------------------------------------------------------------------------
# Bad input

def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(DataError, match="Unknown dataset 'mnsit'.*mnist.*cifar10"):
        data.load("mnsit", "train")


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(DataError, match="no split 'validation'.*train, test"):
        data.load("mnist", "validation", data_dir=".")


def test_no_data_folder_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="COURSE_DATA_DIR.*course data download mnist"):
        data.load("mnist", "train")


def test_missing_files_names_the_places_looked(tmp_path):
    with pytest.raises(DataError, match=r"No files for dataset 'mnist'.*mnist/train-images-idx3-ubyte\.gz"):
        data.load("mnist", "train", data_dir=tmp_path)
    with pytest.raises(DataError, match="No files for dataset 'cifar10'.*cifar-10-batches-py"):
        data.load("cifar10", "train", data_dir=tmp_path)


def test_truncated_gzip(tmp_path):
    write_idx_dataset(tmp_path / "mnist", small_images(), np.arange(6, dtype=np.uint8))
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not a complete gzip file"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_wrong_idx_magic_number(tmp_path):
    write_idx_dataset(tmp_path / "mnist", small_images(), np.arange(6, dtype=np.uint8))
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(6, dtype=np.uint8), 2049)))  # a labels file
    with pytest.raises(DataError, match="IDX magic number 2049, expected 2051 \\(images file\\)"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_idx_data_shorter_than_its_header_says(tmp_path):
    write_idx_dataset(tmp_path / "mnist", small_images(), np.arange(6, dtype=np.uint8))
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(6, dtype=np.uint8), 2049)[:-2]))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: 12 bytes, expected 14"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_empty_image_folder(tmp_path):
    (tmp_path / "cifar10" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        data.load("cifar10", "train", data_dir=tmp_path)


def test_unknown_class_folder(tmp_path):
    (tmp_path / "cifar10" / "test" / "kitten").mkdir(parents=True)
    (tmp_path / "cifar10" / "test" / "kitten" / "1.png").write_bytes(png_bytes(small_images(1, 32, 3)[0]))
    with pytest.raises(DataError, match="unknown class folder 'kitten'"):
        data.load("cifar10", "test", data_dir=tmp_path)


def test_truncated_archive_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    write_archive(tmp_path / "cifar10.tar.gz", {
        f"train/dog/{i}.png": png_bytes(image) for i, image in enumerate(small_images(20, 32, 3))})
    archive = tmp_path / "cifar10.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="cifar10.tar.gz: not a complete .tar.gz archive"):
        data.load("cifar10", "train", data_dir=tmp_path)
    assert not data.cache_root().exists() or not list(data.cache_root().iterdir())


def test_corrupt_image_in_a_folder(tmp_path):
    (tmp_path / "cifar10" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "cifar10" / "train" / "cat" / "0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="0001.jpg: not a readable image"):
        data.load("cifar10", "train", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Downloading (with a stand-in for tensorflow-datasets' download manager: no network in tests)

class FakeDownloadManager:
    """Serves the requested URLs from files made here, as tfds' DownloadManager.download would."""

    def __init__(self, folder, contents: dict[str, bytes]):
        self.folder, self.contents, self.requested = folder, contents, {}

    def download(self, urls: dict[str, str]) -> dict:
        self.requested.update(urls)
        paths = {}
        for key, url in urls.items():
            paths[key] = self.folder / f"fetched-{key}"
            paths[key].write_bytes(self.contents[key])
        return paths


def test_download_places_idx_files_where_load_finds_them(tmp_path):
    from course import download

    images, labels = small_images(), np.arange(6, dtype=np.uint8)
    contents = {}
    for split, (image_stem, label_stem) in data.IDX_FILES.items():
        contents[image_stem + ".gz"] = gzip.compress(idx_bytes(images, 2051))
        contents[label_stem + ".gz"] = gzip.compress(idx_bytes(labels, 2049))
    manager = FakeDownloadManager(tmp_path, contents)
    folder = download.download("mnist", tmp_path / "data", download_manager=manager)
    assert folder == tmp_path / "data" / "mnist"
    assert all(url.endswith(file) for file, url in manager.requested.items())
    np.testing.assert_array_equal(data.load("mnist", "test", data_dir=tmp_path / "data")[0][..., 0], images)
    assert not list(folder.glob("*.partial"))
    # A second call finds the files and fetches nothing.
    assert download.download("mnist", tmp_path / "data", download_manager=None) == folder


def test_download_unpacks_the_cifar_archive(tmp_path):
    from course import download

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            content = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1]})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    manager = FakeDownloadManager(tmp_path, {"cifar-10-python.tar.gz": buffer.getvalue()})
    download.download("cifar10", tmp_path / "data", download_manager=manager)
    images, labels = data.load("cifar10", "train", data_dir=tmp_path / "data")
    assert images.shape == (5, 32, 32, 3) and labels.tolist() == [1] * 5
