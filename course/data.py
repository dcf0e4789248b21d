"""Datasets of the course: the catalogue, and loading each from its files on disk.

`load(name, split)` returns numpy arrays:
  - image datasets: `images` uint8 (N, H, W, C) and `labels` int32 (N,);
  - tables: `features` float32 (N, F) and `labels` int32 (N,).

Where image data comes from, in this order:
  1. `data_dir`, else `$COURSE_DATA_DIR`: a folder holding each dataset's canonical files
     (see `FILE_LAYOUTS`), e.g. the IDX `.gz` files of MNIST, the CIFAR-10 python or binary batches,
     or an image-folder tree `split/class/*.jpg|png`, plain or packed as a `.tar.gz`;
  2. `course data download NAME`, which fetches the canonical files with tensorflow-datasets'
     download manager into that folder (no TensorFlow needed). Nothing is downloaded implicitly.
Decoded arrays of slow formats (JPEG folders, archives) are cached as `.npz` in `$COURSE_CACHE_DIR`
(default `~/.cache/deep-into-cnn`), written to a temporary file and renamed, so a cache file is
either complete or absent. The synthetic shapes need no files (`course.shapes`); the minibatches
and the validation split of a loaded dataset are `course.batching`'s.
"""

import csv
import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from course import shapes
from course.files import write_atomically

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

IMAGE_DATASETS = {
    # name: (height, width, channels, class names)
    "mnist": (28, 28, 1, tuple(str(digit) for digit in range(10))),
    "fashion_mnist": (28, 28, 1, ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                  "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "cifar10": (32, 32, 3, CIFAR10_CLASSES),
    **shapes.DATASETS,  # shapes_gray, shapes_rgb: made, not read from files
}
TABLES = {
    # name: (csv file, has header, label column, feature columns)
    "diabetes": ("diabetes.csv", True, "Outcome",
                 ("Pregnancies", "Glucose", "BloodPressure", "SkinThickness", "Insulin", "BMI",
                  "DiabetesPedigreeFunction", "Age")),
    "student_admissions": ("student_admissions.csv", True, "admit", ("gre", "gpa", "rank")),
    "gradient_descent_points": ("gradient_descent_points.csv", False, 2, (0, 1)),
}
# How the original course split each table into train and test: (numpy legacy seed, train fraction).
TABLE_SPLITS = {"diabetes": (0, 0.8), "student_admissions": (42, 0.9)}
DATASETS = tuple(IMAGE_DATASETS) + tuple(TABLES)

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILE_LAYOUTS = {
    "mnist": "mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
    "fashion_mnist": "fashion_mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
    "cifar10": ("cifar-10-batches-py/{data_batch_1..5,test_batch}, cifar-10-batches-bin/{data_batch_1..5,"
                "test_batch}.bin, cifar10/{train,test}/<class>/*.jpg|png, or cifar10[-jpeg].tar.gz "
                "holding {train,test}/<class>/*"),
    "diabetes": "diabetes.csv or seed/diabetes.csv",
    "student_admissions": "student_admissions.csv or seed/student_admissions.csv",
    "gradient_descent_points": "gradient_descent_points.csv or seed/gradient_descent_points.csv",
}
IDX_IMAGE_MAGIC, IDX_LABEL_MAGIC = 2051, 2049


class DataError(Exception):
    """A dataset could not be found or read; the message says which file and what was expected."""


def data_root(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder datasets are read from: `data_dir`, else `$COURSE_DATA_DIR`, else None."""
    chosen = data_dir if data_dir is not None else os.environ.get("COURSE_DATA_DIR")
    return Path(chosen).expanduser() if chosen else None


def cache_root() -> Path:
    """The folder where decoded arrays are cached (`$COURSE_CACHE_DIR` or ~/.cache/deep-into-cnn)."""
    return Path(os.environ.get("COURSE_CACHE_DIR", Path.home() / ".cache" / "deep-into-cnn"))


def load(name: str, split: str, *, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads `split` of dataset `name`; see the module docstring for formats and sources.

    Returns:
      (images uint8 (N, H, W, C), labels int32 (N,)) for image datasets;
      (features float32 (N, F), labels int32 (N,)) for tables.
    """
    if name not in DATASETS:
        raise DataError(f"Unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    valid_splits = ("train", "test", "all") if name in TABLES else ("train", "test")
    if name == "gradient_descent_points":
        valid_splits = ("all",)
    if split not in valid_splits:
        raise DataError(f"Dataset {name!r} has no split {split!r}; valid splits: {', '.join(valid_splits)}")
    if name in shapes.DATASETS:
        return shapes.make_shapes(name, split)
    root = data_root(data_dir)
    if root is None:
        raise DataError(
            f"No data folder for {name!r}: pass data_dir / --data-dir or set COURSE_DATA_DIR to a folder "
            f"holding {FILE_LAYOUTS[name]} (`course data download {name}` fetches it).")
    if not root.is_dir():
        raise DataError(f"Data folder {root} does not exist (looking for {name!r}: {FILE_LAYOUTS[name]})")
    if name in TABLES:
        return _load_table(name, split, root)
    if name in ("mnist", "fashion_mnist"):
        return _load_idx_dataset(name, split, root)
    return _load_cifar10(split, root)


def num_classes(name: str) -> int:
    """Number of classes of an image dataset."""
    return len(IMAGE_DATASETS[name][3])


def class_names(name: str) -> tuple[str, ...]:
    """Class names of an image dataset, in label order."""
    return IMAGE_DATASETS[name][3]


# ---------------------------------------------------------------------------------------------
# Tables


def _find_file(root: Path, candidates: list[str], name: str) -> Path:
    for candidate in candidates:
        if (root / candidate).is_file():
            return root / candidate
    looked = ", ".join(str(root / candidate) for candidate in candidates)
    raise DataError(f"No files for dataset {name!r} in {root}: looked for {looked}")


def _load_table(name: str, split: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    file_name, has_header, label_column, feature_columns = TABLES[name]
    path = _find_file(root, [file_name, f"seed/{file_name}"], name)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if has_header:
        header, rows = rows[0], rows[1:]
        missing = [column for column in (label_column, *feature_columns) if column not in header]
        if missing:
            raise DataError(f"{path}: missing columns {missing}; expected {[label_column, *feature_columns]}")
        label_index = header.index(label_column)
        feature_indices = [header.index(column) for column in feature_columns]
    else:
        label_index, feature_indices = label_column, list(feature_columns)
    rows = [row for row in rows if row]
    if not rows:
        raise DataError(f"{path} holds no rows")

    def number(text: str) -> float:
        return float(text) if text.strip() else 0.0  # the original filled missing values with 0

    try:
        features = np.array([[number(row[i]) for i in feature_indices] for row in rows], np.float32)
        labels = np.array([int(number(row[label_index])) for row in rows], np.int32)
    except (ValueError, IndexError) as error:
        raise DataError(f"{path}: a row is not numeric or too short ({error})") from None
    if split == "all":
        return features, labels
    seed, train_fraction = TABLE_SPLITS[name]
    train_rows = original_split(len(labels), seed, train_fraction)
    chosen = train_rows if split == "train" else np.setdiff1d(np.arange(len(labels)), train_rows)
    return features[chosen], labels[chosen]


def original_split(num_rows: int, seed: int, train_fraction: float) -> np.ndarray:
    """Row indices of the original course's training sample.

    The same rows as pandas' `df.sample(frac=train_fraction, random_state=seed)` and as
    `np.random.seed(seed); np.random.choice(num_rows, size, replace=False)`: both take the first
    rows of numpy's legacy permutation.
    """
    size = int(round(train_fraction * num_rows))
    return np.random.RandomState(seed).permutation(num_rows)[:size]


# ---------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: IDX files


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Reads an IDX file (optionally gzip'd): magic number, dimensions, then uint8 data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, OSError) as error:
        raise DataError(f"{path}: not a complete gzip file ({error}); delete it and fetch it again") from None
    if len(raw) < 8:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == IDX_IMAGE_MAGIC else "labels"
        raise DataError(f"{path}: IDX magic number {magic}, expected {expected_magic} ({kind} file)")
    num_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(num_dims))
    offset = 4 + 4 * num_dims
    expected_bytes = offset + int(np.prod(shape))
    if len(raw) != expected_bytes:
        raise DataError(f"{path}: {len(raw)} bytes, expected {expected_bytes} for shape {shape} (truncated?)")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(shape)


def _load_idx_dataset(name: str, split: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for stem, magic in zip(IDX_FILES[split], (IDX_IMAGE_MAGIC, IDX_LABEL_MAGIC)):
        candidates = [f"{folder}{stem}{suffix}" for folder in (f"{name}/", "") for suffix in (".gz", "")]
        arrays.append(read_idx(_find_file(root, candidates, name), magic))
    images, labels = arrays
    if len(images) != len(labels):
        raise DataError(f"{name} {split}: {len(images)} images but {len(labels)} labels in {root}")
    return images[..., None].copy(), labels.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# CIFAR-10: python pickles, binary batches, or an image-folder tree (plain or .tar.gz)


def _cifar_batch_names(split: str) -> list[str]:
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


def _load_cifar10(split: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    for base in (root / "cifar10", root):
        if (base / "cifar-10-batches-py").is_dir():
            return _read_cifar_pickles(base / "cifar-10-batches-py", split)
        if (base / "cifar-10-batches-bin").is_dir():
            return _read_cifar_binaries(base / "cifar-10-batches-bin", split)
    if (root / "cifar10" / split).is_dir():
        return _cached(root / "cifar10" / split, lambda: _read_image_folder(root / "cifar10" / split))
    for archive in (root / "cifar10-jpeg.tar.gz", root / "cifar10.tar.gz", root / "cifar10" / "cifar10.tar.gz"):
        if archive.is_file():
            return _cached(archive, lambda: _read_image_archive(archive, split), split)
    raise DataError(f"No files for dataset 'cifar10' in {root}: looked for {FILE_LAYOUTS['cifar10']}")


def _read_cifar_pickles(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for batch_name in _cifar_batch_names(split):
        path = folder / batch_name
        if not path.is_file():
            raise DataError(f"Missing CIFAR-10 batch {path}")
        try:
            with open(path, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], np.int32))
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
            raise DataError(f"{path}: not a CIFAR-10 python batch ({error!r})") from None
    return np.concatenate(images).transpose(0, 2, 3, 1).copy(), np.concatenate(labels)


def _read_cifar_binaries(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    record_bytes = 1 + 3 * 32 * 32
    images, labels = [], []
    for batch_name in _cifar_batch_names(split):
        path = folder / f"{batch_name}.bin"
        if not path.is_file():
            raise DataError(f"Missing CIFAR-10 batch {path}")
        raw = np.fromfile(path, np.uint8)
        if raw.size == 0 or raw.size % record_bytes:
            raise DataError(f"{path}: {raw.size} bytes, expected a multiple of {record_bytes} (label + 32x32x3)")
        records = raw.reshape(-1, record_bytes)
        labels.append(records[:, 0].astype(np.int32))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))
    return np.concatenate(images).transpose(0, 2, 3, 1).copy(), np.concatenate(labels)


def _decode_image(data: bytes, source: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{source}: not a readable image ({error})") from None


def _stack(images: list[np.ndarray], labels: list[int], source: str) -> tuple[np.ndarray, np.ndarray]:
    if not images:
        raise DataError(f"{source}: no images found; expected <class>/*.jpg|png for classes {CIFAR10_CLASSES}")
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DataError(f"{source}: images of different sizes {sorted(shapes)}; expected one size")
    return np.stack(images), np.asarray(labels, np.int32)


def _class_of(class_name: str, source: str) -> int:
    if class_name not in CIFAR10_CLASSES:
        raise DataError(f"{source}: unknown class folder {class_name!r}; expected one of {CIFAR10_CLASSES}")
    return CIFAR10_CLASSES.index(class_name)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(path for path in folder.glob("*/*") if path.suffix.lower() in IMAGE_SUFFIXES)
    files.sort(key=lambda path: (_class_of(path.parent.name, str(path)), path.name))
    images = [_decode_image(path.read_bytes(), str(path)) for path in files]
    return _stack(images, [_class_of(path.parent.name, str(path)) for path in files], str(folder))


def _read_image_archive(archive: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    entries = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isfile() and len(parts) >= 3 and parts[-3] == split \
                        and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    source = f"{archive}:{member.name}"
                    label = _class_of(parts[-2], source)
                    entries.append((label, parts[-1], _decode_image(tar.extractfile(member).read(), source)))
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{archive}: not a complete .tar.gz archive ({error})") from None
    entries.sort(key=lambda entry: entry[:2])
    return _stack([entry[2] for entry in entries], [entry[0] for entry in entries], f"{archive} ({split}/)")


def _cached(source: Path, read, *key_parts: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns `read()`, cached as .npz under `cache_root()` keyed by the source's path, size and mtime."""
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{key_parts}".encode()).hexdigest()
    path = cache_root() / f"{source.name}-{'-'.join(key_parts)}-{key[:16]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                return cached["images"], cached["labels"]
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)  # unreadable cache: decode again
    images, labels = read()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda file: np.savez(file, images=images, labels=labels))
    return images, labels
