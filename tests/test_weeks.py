"""course.weeks: the one table of weeks, the weeks a command line names, and what the table leads to:
each week's module in solutions/, exercises/ and the lessons, and the recipes those modules declare,
each of which builds its model and trains one step on every dataset it names (`course train` relies
on both; the week test files check each recipe against the original course)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course import data, lessons, registry, weeks
from grader import grading

REPO = Path(__file__).resolve().parent.parent


def test_every_part_of_the_course_reads_the_one_table():
    assert grading.WEEKS is weeks.MODULES and lessons.LESSONS is weeks.MODULES
    assert registry.WEEK_MODULES == tuple(weeks.MODULES.values())


def test_each_week_of_the_table_has_its_solution_exercise_and_lesson():
    assert sorted(weeks.MODULES) == [1, 2, 3, 4, 5, 6]
    for number, module_name in weeks.MODULES.items():
        assert weeks.week_number(module_name) == number
        for folder in ("solutions", "exercises", "course/lessons"):
            assert (REPO / folder / f"{module_name}.py").is_file(), f"{folder}/{module_name}.py"
        assert registry.week_module(module_name, "solutions").__name__ == f"solutions.{module_name}"


@pytest.mark.parametrize("text, number", [("3", 3), ("week3", 3), ("Week3", 3), ("week3_convolutions", 3), ("6", 6)])
def test_a_week_is_named_by_number_or_module(text, number):
    assert weeks.week_number(text) == number


@pytest.mark.parametrize("text", ["0", "7", "week10", "three", "", "week", "3a"])
def test_anything_else_is_refused_saying_what_a_week_is(text):
    with pytest.raises(ValueError, match="weeks are 1 to 6"):
        weeks.week_number(text)


def test_chosen_weeks_are_in_order_and_once_else_the_default():
    assert weeks.chosen(["4", "week1", "1"]) == [1, 4]
    assert weeks.chosen([]) == weeks.chosen(None) == [1, 2, 3, 4, 5, 6]
    assert weeks.chosen([], default=[1, 4]) == [1, 4] and weeks.chosen(["2"], default=[1, 4]) == [2]


# ---------------------------------------------------------------------------------------------
# Every recipe of the solutions, on every dataset it names

RECIPES = registry.recipes("solutions")


def input_kinds(recipe) -> dict[tuple, list[str]]:
    """The recipe's datasets grouped by what its model sees of them: (height, width, channels, classes)."""
    kinds = {}
    for dataset in recipe.datasets:
        height, width, channels, classes = data.IMAGE_DATASETS[dataset]
        kinds.setdefault((height, width, channels, len(classes)), []).append(dataset)
    return kinds


RECIPE_INPUTS = [(name, kind) for name in sorted(RECIPES) for kind in input_kinds(RECIPES[name])]


def test_the_weeks_declare_the_models_of_the_original_course():
    """The original course trained an MLP (weeks 2-3), a SimpleCNN, LeNet-5 in two variants and AlexNet."""
    assert sorted(RECIPES) == ["alexnet", "lenet5", "lenet5_relu", "mlp", "simple_cnn"]
    for name, recipe in RECIPES.items():
        assert recipe.dataset in recipe.datasets and set(recipe.datasets) <= set(data.IMAGE_DATASETS), name


def parameters(model) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.mark.parametrize("name, kind", RECIPE_INPUTS,
                         ids=[f"{name}-{'+'.join(input_kinds(RECIPES[name])[kind])}" for name, kind in RECIPE_INPUTS])
def test_a_recipe_trains_one_step_on_each_dataset_it_names(name, kind):
    """A uint8 batch of the datasets' shape goes through the recipe's `prepare` and `augment` into its
    model, which scores every class; one `train_step` with the recipe's optimizer at its learning rate
    changes every parameter array and gives finite metrics; `eval_step` changes nothing. AlexNet's
    227x227 step (43M parameters) is traced abstractly: every shape and dtype, no arithmetic."""
    recipe = RECIPES[name]
    height, width, channels, num_classes = kind
    size = 8
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (size, height, width, channels), dtype=np.uint8))
    labels = jnp.asarray(np.arange(size) % num_classes, jnp.int32)
    inputs = jax.jit(recipe.prepare)(images)
    assert inputs.dtype == jnp.float32 and inputs.shape[0] == size
    if recipe.augment is not None:
        augmented = jax.jit(recipe.augment, static_argnums=2)(jax.random.key(1), inputs, True)
        assert augmented.shape == inputs.shape and augmented.dtype == inputs.dtype
        assert not np.array_equal(augmented, inputs)
        np.testing.assert_array_equal(jax.jit(recipe.augment, static_argnums=2)(None, inputs, False), inputs)
        inputs = augmented
    if recipe.batches is not None:
        batches, step_keys = recipe.batches(jax.random.key(2), 50, 8)
        assert batches.shape == (6, 8) and step_keys.shape == (6,)
        visited = np.asarray(batches).ravel()
        assert len(set(visited.tolist())) == 48 and 0 <= visited.min() <= visited.max() < 50

    if name == "alexnet":
        model = nnx.eval_shape(lambda: recipe.model(nnx.Rngs(0)))
        optimizer = nnx.eval_shape(lambda: nnx.Optimizer(model, recipe.optimizer(recipe.learning_rate), wrt=nnx.Param))
        graphdef, state = nnx.split((model, optimizer))

        def one_step(state, inputs, labels):
            model, optimizer = nnx.merge(graphdef, state)
            model.train()
            return recipe.train_step(model, optimizer, inputs, labels), nnx.state((model, optimizer))

        metrics, after = jax.eval_shape(one_step, state, inputs, labels)
        assert metrics["loss"].shape == () and jax.tree.structure(after) == jax.tree.structure(state)
        assert [leaf.shape for leaf in jax.tree.leaves(after)] == [leaf.shape for leaf in jax.tree.leaves(state)]
        assert jax.eval_shape(lambda state, x: nnx.merge(graphdef, state)[0](x), state, inputs).shape == (size, num_classes)
        return

    model = recipe.model(nnx.Rngs(0))
    model.eval()
    assert model(inputs).shape == (size, num_classes)
    before = parameters(model)
    evaluated = recipe.eval_step(model, inputs, labels)
    assert np.isfinite(float(evaluated["loss"])) and 0 <= float(evaluated["accuracy"]) <= 1
    assert all(np.array_equal(old, new) for old, new in zip(before, parameters(model), strict=True))
    model.train()
    optimizer = nnx.Optimizer(model, recipe.optimizer(recipe.learning_rate), wrt=nnx.Param)
    metrics = recipe.train_step(model, optimizer, inputs, labels)
    assert np.isfinite(float(metrics["loss"])) and 0 <= float(metrics["accuracy"]) <= 1
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))]
    unchanged = [path for path, old, new in zip(paths, before, parameters(model), strict=True) if np.array_equal(old, new)]
    assert not unchanged, f"one step left these parameters as they were: {unchanged}"
