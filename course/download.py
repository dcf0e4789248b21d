"""Fetching the canonical dataset files into the data folder (only when asked: `course data download`).

The files are fetched with tensorflow-datasets' download manager, which needs no TensorFlow, and
are then read by `course.data` like any files put there by hand.
"""

import shutil
import tarfile
from pathlib import Path

SOURCES = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/",
              ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", ["cifar-10-python.tar.gz"]),
}


def download(name: str, root: Path, download_manager=None) -> Path:
    """Fetches dataset `name` into `root/name`, unless its files are already there; returns that folder."""
    import tensorflow_datasets as tfds

    base_url, files = SOURCES[name]
    target = Path(root) / name
    if name == "cifar10" and (target / "cifar-10-batches-py").is_dir():
        return target
    if name != "cifar10" and all((target / file).is_file() for file in files):
        return target
    manager = download_manager or tfds.download.DownloadManager(download_dir=Path(root) / "downloads")
    fetched = manager.download({file: base_url + file for file in files})
    target.mkdir(parents=True, exist_ok=True)
    for file, path in fetched.items():  # unpack beside the target, then rename: never half-written
        partial = target / f"{file}.partial"
        if file.endswith(".tar.gz"):
            shutil.rmtree(partial, ignore_errors=True)
            with tarfile.open(path, "r:gz") as archive:
                archive.extractall(partial, filter="data")
            for unpacked in partial.iterdir():
                shutil.rmtree(target / unpacked.name, ignore_errors=True)
                unpacked.rename(target / unpacked.name)
            partial.rmdir()
        else:
            shutil.copyfile(path, partial)
            partial.replace(target / file)
    return target
