"""`course viz ...`: the course's figures as PNG files, from a checkpoint written by `course train`.

    course viz filters --fixed --out figures
    course viz filters --checkpoint runs/lenet5 --out figures
    course viz feature-maps --fixed --image grace_hopper --out figures
    course viz feature-maps --checkpoint runs/simple_cnn --layer conv2 --image 7 --out figures
    course viz dashboard --checkpoint runs/lenet5 --out figures
    course viz predictions --checkpoint runs/simple_cnn --count 20 --out figures
    course viz confusion --checkpoint runs/simple_cnn --out figures
    course viz channels --image 3 --dataset cifar10 --out figures

A checkpoint is a run folder (`course train --out RUN`), its `RUN/checkpoint/best` or
`RUN/checkpoint/last`. An image is a test-set index of the dataset (`--image 7`), an image file,
or `grace_hopper` (matplotlib's bundled photo); an image of another size or channel count is
centre-cropped, resized and converted to the dataset's format, and the conversion is printed.
"""

import argparse
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image, UnidentifiedImageError

from course import checkpoints, data, registry, viz, viz_filters, viz_layers, viz_predictions, viz_training
from course.viz import VizError

SAMPLE_IMAGES = ("grace_hopper", "grace_hopper.jpg")
FIXED_FILTERS = ("four", "sobel")


# ---------------------------------------------------------------------------------------------
# Checkpoints


def load_checkpoint(path, model_name: str | None = None, target: str | None = None):
    """The trained model of a `course train` checkpoint.

    Returns (model, recipe, settings): the model with the checkpoint's weights, its `Recipe`, and the
    run's settings dict (model_name, dataset, ...). `model_name` overrides the one in info.json;
    `target` says whose model code to build (`course.registry.package`).
    Raises VizError when the folder is no checkpoint, names no course model, or holds other weights.
    """
    folder = checkpoints.find_checkpoint(path)
    try:
        settings = json.loads((folder / "info.json").read_text())["settings"]
        settings["model_name"], settings["dataset"]
    except (ValueError, KeyError, TypeError) as error:
        raise VizError(f"{folder / 'info.json'} is not the info file of a `course train` checkpoint ({error})")
    recipes = registry.recipes(target)
    name = model_name or settings["model_name"]
    if name not in recipes:
        raise VizError(f"{folder} holds a model named {name!r}, which is not a course model; pass --model, "
                       f"one of: {', '.join(sorted(recipes))}")
    recipe = recipes[name]
    # An abstract model (shapes only) skips the random initialisation the checkpoint overwrites anyway.
    model = nnx.eval_shape(lambda: recipe.model(nnx.Rngs(settings.get("seed", 0))))
    try:
        checkpoints.restore_checkpoint(folder, model)
    except Exception as error:  # orbax raises many types for a tree that does not fit  # noqa: BLE001
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise VizError(f"{folder} does not hold the weights of a {name!r} model of {registry.package(target)}/ "
                       f"({reason[:200]}); trained from other code? pass the --target it was trained with") from None
    settings["model_name"] = name
    return model, recipe, settings


# ---------------------------------------------------------------------------------------------
# Images


def read_image(spec: str, dataset: str | None, data_dir=None) -> tuple[np.ndarray, int | None, str]:
    """The image named by `spec`: a test-set index of `dataset`, `grace_hopper`, or an image file.

    Returns (image uint8 (H, W, C), its label or None, a short description).
    """
    if spec.isdigit():
        if dataset is None:
            raise VizError(f"--image {spec} is a dataset index, but no dataset is known; pass --dataset")
        images, labels = data.load(dataset, "test", data_dir=data_dir)
        index = int(spec)
        if index >= len(images):
            raise VizError(f"--image {index} is past the end of {dataset}'s test set (valid: 0 to {len(images) - 1})")
        return images[index], int(labels[index]), f"{dataset} test image {index}"
    if spec in SAMPLE_IMAGES:
        import matplotlib.cbook

        path = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    else:
        path = Path(spec)
        if not path.is_file():
            raise VizError(f"--image {spec!r} is neither a dataset index, nor grace_hopper, nor an existing file")
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGBA" if "A" in opened.getbands() else ("L" if opened.mode in ("1", "L", "I", "I;16", "F") else "RGB"))
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError) as error:
        raise VizError(f"cannot read {path} as an image ({error})") from None
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 4:
        array = array[..., :3]  # the alpha channel is not part of the picture
    return array.astype(np.uint8), None, path.name


def conform_image(image: np.ndarray, height: int, width: int, channels: int) -> tuple[np.ndarray, str | None]:
    """`image` (H, W, C) uint8 converted to (height, width, channels) uint8, and a note saying how.

    A different size is centre-cropped to the target's aspect ratio and resized (bilinear); three
    channels become one by luminance (0.299 R + 0.587 G + 0.114 B), one becomes three by repetition.
    The note is None when nothing changed.
    """
    original = image.shape
    steps = []
    if image.shape[:2] != (height, width):
        source_height, source_width = image.shape[:2]
        crop_height = min(source_height, round(source_width * height / width))
        crop_width = min(source_width, round(source_height * width / height))
        top, left = (source_height - crop_height) // 2, (source_width - crop_width) // 2
        cropped = image[top:top + crop_height, left:left + crop_width]
        mode_image = Image.fromarray(cropped[..., 0] if cropped.shape[-1] == 1 else cropped)
        resized = np.asarray(mode_image.resize((width, height), Image.Resampling.BILINEAR))
        image = resized[..., None] if resized.ndim == 2 else resized
        steps.append("centre-cropped and resized" if (crop_height, crop_width) != (source_height, source_width)
                     else "resized")
    if image.shape[-1] != channels:
        if image.shape[-1] == 3 and channels == 1:
            luminance = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            image = np.clip(np.round(luminance), 0, 255).astype(np.uint8)[..., None]
            steps.append("converted to grayscale")
        elif image.shape[-1] == 1 and channels == 3:
            image = np.repeat(image, 3, axis=-1)
            steps.append("gray repeated into 3 channels")
        else:
            raise VizError(f"cannot convert a {image.shape[-1]}-channel image to {channels} channels")
    if not steps:
        return image, None
    return image, f"{'x'.join(map(str, original))} -> {height}x{width}x{channels} ({', '.join(steps)})"


def dataset_image(args, dataset: str) -> tuple[np.ndarray, int | None, str]:
    """The image of `--image` in `dataset`'s format (converted with a printed note, or refused with --strict)."""
    height, width, channels, _ = data.IMAGE_DATASETS[dataset]
    image, label, description = read_image(args.image, dataset, args.data_dir)
    if args.strict and image.shape != (height, width, channels):
        raise VizError(f"{description} is {'x'.join(map(str, image.shape))}, not {height}x{width}x{channels} "
                       f"as {dataset}'s images; drop --strict to convert it")
    image, note = conform_image(image, height, width, channels)
    if note:
        print(f"{description}: {note}, to fit {dataset}")
    return image, label, description


def prepared(recipe, images: np.ndarray):
    """A uint8 batch (N, H, W, C) as the model's input, by the recipe's `prepare`."""
    return recipe.prepare(jnp.asarray(images))


def checkpoint_dataset(args, settings: dict) -> str:
    return args.dataset or settings["dataset"]


def write(figure, out: str, name: str) -> int:
    path = viz.save(figure, Path(out) / name)
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# Commands


def fixed_kernels(which: str, target: str | None = None):
    """(kernels (K, KH, KW), titles) of the week-3 hand-made filters: the four 4x4 ones or Sobel."""
    week3 = registry.week_module("week3_convolutions", target)
    if which == "sobel":
        return np.stack(week3.sobel_kernels()), ["Sobel x", "Sobel y"]
    return np.asarray(week3.four_filters()), [f"filter {index}" for index in range(1, 5)]


def filters_command(args) -> int:
    if args.fixed:
        kernels, titles = fixed_kernels(args.fixed, args.target)
        return write(viz_filters.plot_kernels(list(kernels), titles), args.out, f"filters_{args.fixed}.png")
    model, _, settings = load_checkpoint(args.checkpoint, args.model, args.target)
    height, width, channels, _ = data.IMAGE_DATASETS[checkpoint_dataset(args, settings)]
    layer, kernels = viz_filters.first_layer_filters(model, (height, width, channels))
    title = f"{settings['model_name']} {layer}"
    return write(viz_filters.plot_learned_filters(kernels, title, args.max_filters), args.out, "filters.png")


def fixed_image(args) -> tuple[np.ndarray, str]:
    """The grayscale image in [0, 1] (H, W) for the fixed filters, at most `--size` pixels a side."""
    image, _, description = read_image(args.image or "grace_hopper", args.dataset, args.data_dir)
    height, width = image.shape[:2]
    scale = min(1.0, args.size / max(height, width))
    size_height, size_width = max(4, round(height * scale)), max(4, round(width * scale))
    image, note = conform_image(image, size_height, size_width, 1)
    if note:
        print(f"{description}: {note}")
    return image[..., 0].astype(np.float32) / 255.0, description


def feature_maps_command(args) -> int:
    if args.fixed:
        week3 = registry.week_module("week3_convolutions", args.target)
        image, description = fixed_image(args)
        kernels, _ = fixed_kernels(args.fixed, args.target)
        maps = {title: np.asarray(value) for title, value in zip(
            ("conv", "ReLU", "max-pool 2x2/2"), week3.feature_maps(jnp.asarray(image), jnp.asarray(kernels)).values())}
        figure = viz_filters.plot_feature_maps(image, maps, f"the fixed {args.fixed!r} filters on {description}")
        return write(figure, args.out, f"feature_maps_{args.fixed}.png")
    model, recipe, settings = load_checkpoint(args.checkpoint, args.model, args.target)
    dataset = checkpoint_dataset(args, settings)
    args.image = args.image or "0"
    image, _, description = dataset_image(args, dataset)
    inputs = prepared(recipe, image[None])
    layer = args.layer or viz_layers.conv_layer_names(viz_layers.layer_outputs(model, inputs))[0]
    maps = viz_filters.layer_feature_maps(model, inputs, layer)
    figure = viz_filters.plot_feature_maps(image, maps, f"{settings['model_name']} {layer} on {description}",
                                           max_filters=args.max_filters)
    return write(figure, args.out, f"feature_maps_{layer}.png")


def step_records(checkpoint) -> dict | None:
    """The per-step losses written by `viz_training.DashboardWriter` next to the checkpoint's run, if any."""
    folder = checkpoints.find_checkpoint(checkpoint)
    for candidate in (folder.parent.parent, folder.parent.parent / "dashboard", Path(checkpoint),
                      Path(checkpoint) / "dashboard"):
        if (candidate / "dashboard_steps.json").is_file():
            return json.loads((candidate / "dashboard_steps.json").read_text())
    return None


def dashboard_command(args) -> int:
    model, recipe, settings = load_checkpoint(args.checkpoint, args.model, args.target)
    dataset = checkpoint_dataset(args, settings)
    image, label, _ = dataset_image(args, dataset)
    images, labels = data.load(dataset, "test", data_dir=args.data_dir)
    batch = np.concatenate([image[None], images[:args.batch - 1]])
    batch_labels = np.concatenate([[-1 if label is None else label], labels[:args.batch - 1]])
    records = step_records(args.checkpoint)
    if records is not None:
        curves = dict(losses=records["losses"], errors=records["errors"], x_values=records["steps"])
    else:  # only the per-epoch history: the training curves of each epoch
        history = json.loads((checkpoints.find_checkpoint(args.checkpoint) / "info.json").read_text())["history"]
        curves = dict(losses=[record["train_loss"] for record in history],
                      errors=[1 - record["train_accuracy"] for record in history],
                      x_values=[record["epoch"] for record in history], x_label="epoch")
    figure = viz_training.plot_dashboard(model=model, inputs=prepared(recipe, batch),
                                         labels=None if label is None else batch_labels, layers=args.layers,
                                         class_names=data.class_names(dataset), **curves)
    return write(figure, args.out, "dashboard.png")


def predict_test_images(args, start: int = 0, count: int | None = None):
    """(dataset, test images, labels, the checkpoint's predictions) for test images start..start+count."""
    model, recipe, settings = load_checkpoint(args.checkpoint, args.model, args.target)
    dataset = checkpoint_dataset(args, settings)
    images, labels = data.load(dataset, "test", data_dir=args.data_dir)
    if not 0 <= start < len(labels):
        raise VizError(f"no test image {start}: {dataset}'s test set has {len(labels)} images")
    end = len(labels) if count is None else start + count
    images, labels = images[start:end], labels[start:end]
    _, predictions = viz_predictions.predict(model, recipe.prepare, images)
    return dataset, images, labels, predictions


def predictions_command(args) -> int:
    dataset, images, labels, predictions = predict_test_images(args, args.start, args.count)
    figure = viz_predictions.plot_predictions(images, labels, predictions, data.class_names(dataset), args.columns)
    return write(figure, args.out, "predictions.png")


def confusion_command(args) -> int:
    dataset, images, labels, predictions = predict_test_images(args, 0, args.limit)
    names = data.class_names(dataset)
    matrix = viz_predictions.confusion_matrix(labels, predictions, len(names))
    write(viz_predictions.plot_confusion(matrix, names), args.out, "confusion.png")
    overall = float(np.trace(matrix) / matrix.sum())
    accuracies = viz_predictions.per_class_accuracy(matrix)
    return write(viz_predictions.plot_class_accuracy(accuracies, names, overall), args.out, "class_accuracy.png")


def channels_command(args) -> int:
    dataset = args.dataset or "cifar10"
    if args.checkpoint:
        dataset = checkpoint_dataset(args, load_checkpoint(args.checkpoint, args.model, args.target)[2])
    image, label, description = dataset_image(args, dataset)
    title = description + ("" if label is None else f" ({data.class_names(dataset)[label]})")
    return write(viz.plot_channels(image, title), args.out, "channels.png")


# ---------------------------------------------------------------------------------------------
# Arguments


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="course viz", description="Write the course's figures as PNG files.")
    commands = top.add_subparsers(dest="command", required=True, metavar="FIGURE")

    def command(name: str, help_text: str, run, checkpoint: str = "required"):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if checkpoint == "required":
            sub.add_argument("--checkpoint", required=True, help="a `course train --out` folder or its checkpoint/best")
        elif checkpoint == "optional":
            sub.add_argument("--checkpoint", help="a `course train --out` folder or its checkpoint/best")
        sub.add_argument("--model", help="the model name, when the checkpoint's info.json lacks a course model")
        sub.add_argument("--target", help=registry.TARGET_HELP)
        sub.add_argument("--out", default="figures", help="folder for the PNG files (default: figures)")
        sub.add_argument("--data-dir", help="folder holding the datasets (default: $COURSE_DATA_DIR)")
        sub.add_argument("--dataset", help="the dataset of --image indices (default: the checkpoint's; "
                                           "cifar10 for channels)")
        sub.set_defaults(run=run)
        return sub

    def image_options(sub, default: str | None):
        sub.add_argument("--image", default=default,
                         help="a test-set index, an image file, or grace_hopper (default: %(default)s)")
        sub.add_argument("--strict", action="store_true",
                         help="refuse an image of another size or channel count instead of converting it")

    def fixed_or_checkpoint(sub):
        source = sub.add_mutually_exclusive_group(required=True)
        source.add_argument("--checkpoint", help="a `course train --out` folder or its checkpoint/best")
        source.add_argument("--fixed", nargs="?", const="four", choices=FIXED_FILTERS,
                            help="week 3's hand-made filters instead of a trained model (default: four)")
        sub.add_argument("--max-filters", type=int, default=96, help="draw at most this many filters")

    sub = command("filters", "the fixed filters with their values, or a model's learned first-layer filters",
                  filters_command, checkpoint="none")
    fixed_or_checkpoint(sub)

    sub = command("feature-maps", "conv, activation and pooled maps of one image at one layer",
                  feature_maps_command, checkpoint="none")
    fixed_or_checkpoint(sub)
    sub.set_defaults(max_filters=32)
    image_options(sub, None)
    sub.add_argument("--layer", help="a convolution layer of the model (default: the first)")
    sub.add_argument("--size", type=int, default=200, help="with --fixed: the image's longest side, in pixels")

    sub = command("dashboard", "the LeNet-style training dashboard of a checkpoint", dashboard_command)
    image_options(sub, "0")
    sub.add_argument("--layers", nargs="+", help="layers whose activations are histogrammed")
    sub.add_argument("--batch", type=int, default=64, help="images whose activations are histogrammed")

    sub = command("predictions", 'test images titled "predicted (true)", green or red', predictions_command)
    sub.add_argument("--count", type=int, default=20)
    sub.add_argument("--start", type=int, default=0, help="index of the first test image")
    sub.add_argument("--columns", type=int, default=10)

    sub = command("confusion", "the confusion matrix and per-class accuracy over the test set", confusion_command)
    sub.add_argument("--limit", type=int, help="use the first N test images only")

    sub = command("channels", "an image's colour channels with every pixel value written in", channels_command,
                  checkpoint="optional")
    image_options(sub, "0")
    return top


def main(argv: list[str] | None = None) -> int:
    """Runs `course viz ...`; returns 0, or 2 after a one-line message on stderr for bad input."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage and the error (or the help)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.run(args)
    except (VizError, data.DataError, registry.TargetError, checkpoints.CheckpointError) as error:
        print(f"course viz {args.command}: error: {error}", file=sys.stderr)
        return 2
