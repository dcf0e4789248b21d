# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Week 2: from the perceptron to a multilayer network
#
# Three steps, as in the original course: the perceptron trick that moves a line towards the
# points it gets wrong; a two-layer network whose gradients you derive by hand (backpropagation);
# and a multilayer perceptron that classifies images, trained with softmax and cross-entropy.
#
# This lesson runs your code in `exercises/week2_neural_networks.py`. Until a function is written,
# the cell that needs it says which one to fill in.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from course import batching, data, lessons, viz_predictions, viz_training

week = lessons.load_week("week2_neural_networks")

# %% [markdown]
# ## 1. The perceptron
#
# A perceptron predicts $\hat y = 1$ when $x \cdot w + b \ge 0$, else 0: the line $x \cdot w + b = 0$
# splits the plane. Visiting the points one by one, a misclassified point pulls the line towards
# itself (Task 2.1):
#
# $$ w \leftarrow w + \eta\, (y - \hat y)\, x, \qquad b \leftarrow b + \eta\, (y - \hat y), $$
#
# where $y - \hat y$ is $+1$ (a positive point on the negative side), $-1$ (the opposite) or 0.

# %%
points, point_labels = lessons.table("gradient_descent_points", "all")
points, point_labels = jnp.asarray(points), jnp.asarray(point_labels)
weight_key, bias_key = jax.random.split(jax.random.key(42))
# The original's start: random weights in [0, 1), the bias past the largest x1.
weights = jax.random.uniform(weight_key, (2,))
bias = jax.random.uniform(bias_key, ()) + points[:, 0].max()
lines = {}
for epoch in range(25):
    if epoch in (2, 5, 10):
        lines[epoch] = (weights, bias)
    weights, bias = week.perceptron_step(weights, bias, points, point_labels, learning_rate=0.01)
lines[25] = (weights, bias)
predicted = (points @ weights + bias >= 0).astype(jnp.int32)
print(f"after 25 passes: {int(jnp.sum(predicted == point_labels))} of {len(point_labels)} points on the right side")

figure, axis = plt.subplots(figsize=(5.5, 5), layout="constrained")
axis.scatter(*np.asarray(points).T, c=np.asarray(point_labels), cmap="coolwarm", s=14)
grid = np.linspace(float(points[:, 0].min()), float(points[:, 0].max()), 2)
for epoch, (line_weights, line_bias) in lines.items():
    w1, w2 = np.asarray(line_weights)
    axis.plot(grid, -(w1 * grid + float(line_bias)) / w2, label=f"after {epoch} passes")
axis.set_ylim(float(points[:, 1].min()) - 0.1, float(points[:, 1].max()) + 0.1)
axis.legend()
axis.set_title("the perceptron's line")
lessons.show(figure)

# %% [markdown]
# ## 2. Backpropagation by hand
#
# A network with one hidden layer of sigmoid units and one sigmoid output, without biases:
#
# $$ h = \sigma(x W), \qquad o = \sigma(h \cdot v), \qquad L = \frac{1}{2N} \sum_n (o_n - y_n)^2 $$
#
# (Tasks 2.2 and 2.3). The chain rule, one layer at a time from the output back, with
# $\sigma' = \sigma (1 - \sigma)$:
#
# $$ \delta_o = (o - y)\, o (1 - o), \qquad \frac{\partial L}{\partial v} = \frac{1}{N} h^T \delta_o, $$
#
# $$ \delta_h = \delta_o\, v^T \odot h (1 - h), \qquad \frac{\partial L}{\partial W} = \frac{1}{N} x^T \delta_h . $$
#
# The *error term* $\delta$ of a layer is the gradient of the loss with respect to that layer's
# input before the sigmoid; each layer's is the next one's, sent back through the weights and
# scaled by the local slope. That is all backpropagation is (Task 2.4). The original trained it on
# graduate admissions: gre / 800, gpa / 4 and a one-hot rank.

# %%
raw_train, admit_train = lessons.table("student_admissions", "train")
raw_test, admit_test = lessons.table("student_admissions", "test")
admissions_train = jnp.asarray(week.admissions_features(raw_train))
admissions_test = jnp.asarray(week.admissions_features(raw_test))
print("features:", admissions_train.shape, "first row (gre/800, gpa/4, rank one-hot):", np.round(np.asarray(admissions_train[0]), 3))

params = week.init_two_layer(jax.random.key(0), admissions_train.shape[1], num_hidden=2)
targets = jnp.asarray(admit_train, jnp.float32)
by_hand = week.two_layer_backward(params, admissions_train, targets)
by_jax = jax.grad(week.two_layer_loss)(params, admissions_train, targets)
for name in params:
    print(f"{name}: largest difference between the hand gradient and jax.grad: "
          f"{float(jnp.max(jnp.abs(by_hand[name] - by_jax[name]))):.2e}")

# %%
losses = []
for _ in range(40):
    losses.append(float(week.two_layer_loss(params, admissions_train, targets)))
    params = week.train_two_layer(params, admissions_train, targets, 2.0, 50)
_, test_output = week.two_layer_forward(params, admissions_test)
print(f"test accuracy {float(jnp.mean((test_output > 0.5) == jnp.asarray(admit_test))):.1%}"
      f" (always predicting 'not admitted': {1 - float(np.mean(admit_test)):.1%})")
figure, axis = plt.subplots(figsize=(6, 3.5), layout="constrained")
viz_training.plot_curve(axis, losses, "two-layer network: half mean squared error", "step", np.arange(40) * 50)
lessons.show(figure)

# %% [markdown]
# Admissions are hard to predict from these three columns: like the original, the network barely
# beats always answering "no". Backpropagation is right (the gradients match `jax.grad`); the data
# hold little signal.
#
# ## 3. Classifying images: softmax, cross-entropy and an MLP
#
# For $C$ classes the network outputs $C$ scores (logits) $z$. Softmax turns them into
# probabilities (Task 2.5), and the loss is the negative log-probability of the true class
# (Task 2.6):
#
# $$ p_c = \frac{e^{z_c}}{\sum_{k} e^{z_k}} = \frac{e^{z_c - m}}{\sum_k e^{z_k - m}}, \qquad
# L = -\frac{1}{N} \sum_n \log p_{n, y_n}, \qquad \frac{\partial L}{\partial z_{n,c}} = \frac{1}{N}(p_{n,c} - [c = y_n]). $$
#
# Subtracting the row maximum $m$ changes nothing mathematically but keeps $e^{z}$ from
# overflowing. Accuracy is the share of rows whose largest logit is the true class (Task 2.7).

# %%
logits = jnp.array([[2.0, 1.0, 0.1], [1000.0, 0.0, -1000.0]])
labels = jnp.array([0, 2])
print("softmax:\n", week.softmax(logits))
print("cross_entropy:", float(week.cross_entropy(logits, labels)),
      " optax:", float(optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()))
print("accuracy:", float(week.accuracy(logits, labels)))

# %% [markdown]
# The `MLP` (Tasks 2.8 and 2.9) flattens each 28x28 image to 784 numbers and applies
# Linear → ReLU → Dropout per hidden layer, 784 → 256 → 128 → 64 → 10. A Linear layer from $a$ to $b$
# units has $a b$ weights and $b$ biases:
#
# $$ (784 \cdot 256 + 256) + (256 \cdot 128 + 128) + (128 \cdot 64 + 64) + (64 \cdot 10 + 10) = 242{,}762 . $$
#
# Dropout zeroes each hidden activation with probability 0.2 during training (and scales the
# others by 1/0.8), so no unit can rely on a particular other one; `model.eval()` turns it off.

# %%
model = week.MLP(rngs=nnx.Rngs(0))
count = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
print(f"MLP parameters: {count:,} (expected 242,762)")
print("logits for two blank images:", model(jnp.zeros((2, 28, 28, 1))).shape)

# %% [markdown]
# ## 4. What `jit` does: pure functions, tracing and static shapes
#
# Your `train_step` (Task 2.10) and `eval_step` (Task 2.11) are decorated with `@nnx.jit`. To use
# it well you need to know what it does with your Python code.
#
# **Tracing.** `jax.jit(f)` does not run `f` on your numbers. At the first call it runs `f`'s
# Python body once on *tracers*: stand-ins that carry only a shape and a dtype, and record every
# `jnp` operation applied to them. The recorded program is compiled by XLA, and the compiled
# program is what runs, at that call and at every later one.
#
# **What `jit` caches, and when it recompiles.** Compiled programs are cached by the shapes and
# dtypes of the array arguments and by the values of the *static* arguments (`static_argnames`:
# Python numbers or flags that set a shape or choose a branch). A call with a new shape, a new
# dtype or a new static value traces and compiles again; every other call reuses the cache. This
# is why the training loop below drops the last, incomplete batch: a smaller final batch would
# compile a second program for one step.
#
# **Pure functions.** Because the body runs only while tracing, a jitted function must be *pure*:
# its result depends only on its arguments, and it changes nothing outside itself. A `print`, an
# `append` to a list or a global counter runs once per trace, not once per call (the cell below
# uses exactly that to count traces); a global variable read inside is frozen into the program as
# a constant. To print values at every call, use `jax.debug.print`.

# %%
traced = []


@jax.jit
def doubled_sum(batch):
    traced.append(f"doubled_sum {batch.shape} {batch.dtype}")  # a side effect: runs only while tracing
    return 2.0 * jnp.sum(batch)


@jax.jit(static_argnames="power")  # each value of `power` is its own program
def power_sum(batch, power):
    traced.append(f"power_sum {batch.shape} power={power}")
    return jnp.sum(batch ** power)


for batch in (jnp.ones((4, 3)), jnp.zeros((4, 3)), jnp.ones((8, 3))):
    print(f"doubled_sum of a {batch.shape} batch: {float(doubled_sum(batch))}")
for power in (2, 2, 3):
    print(f"power_sum of twos with power={power}: {float(power_sum(jnp.full((4, 3), 2.0), power=power))}")
print(f"\n6 calls, {len(traced)} traces:")
for line in traced:
    print("  traced", line)

# %% [markdown]
# Two batches of shape (4, 3) shared one trace; the (8, 3) batch needed its own. The static
# `power` behaves the same way: 2 twice is one program, 3 is another.
#
# **Static shapes.** Every array inside a jitted function has a shape fixed at trace time. So
# `batch[batch > 0]`, whose length depends on the values, cannot be traced;
# `jnp.where(batch > 0, batch, 0)` keeps the shape and can. For the same reason a Python `if` on a
# traced value fails (the tracer has no value to test yet): use `jnp.where`, or make the value static.

# %%
values = jnp.array([-1.0, 2.0, 3.0])
try:
    jax.jit(lambda batch: jnp.sum(batch[batch > 0]))(values)
except jax.errors.NonConcreteBooleanIndexError as error:
    print("batch[batch > 0] under jit:", type(error).__name__)
print("jnp.where(batch > 0, batch, 0) under jit:", float(jax.jit(lambda batch: jnp.sum(jnp.where(batch > 0, batch, 0.0)))(values)))

# %% [markdown]
# ### `nnx.jit`: a step that looks stateful
#
# A training step must change things: the parameters, the optimizer's state (Adam's step count and
# moment estimates) and the dropout layer's random-number counter, so that each step draws a new
# mask. `nnx.jit` makes that possible with a pure function underneath. At each call it splits the
# model and the optimizer into a *graph definition* (the structure: layer types and sizes, whether
# dropout is on) and a *state* (all their arrays); it passes the state into the compiled program as
# ordinary arguments, gets the new state back as results, and writes it into your objects. So
# `train_step(model, optimizer, images, labels)` reads like an update in place, yet the compiled
# program is a pure function (state, batch) → (new state, metrics).
#
# The graph definition is part of the cache key: `model.eval()` turns dropout off, a different
# graph, so `eval_step` and a `train_step` after `model.eval()` compile their own programs.
#
# Below, an MLP that records every trace of its `__call__` runs your `train_step` three times on a
# batch of 16 and once on a batch of 8, then your `eval_step` once:

# %%
traced_calls = []


class TraceCountingMLP(week.MLP):
    """The week's MLP, recording the input shape each time its Python code is traced."""

    def __call__(self, images):
        traced_calls.append(images.shape)
        return super().__call__(images)


image_key, label_key = jax.random.split(jax.random.key(1))
small_images = jax.random.normal(image_key, (16, 28, 28, 1))
small_labels = jax.random.randint(label_key, (16,), 0, 10)
small_model = TraceCountingMLP(hidden=(32,), rngs=nnx.Rngs(0))
small_optimizer = nnx.Optimizer(small_model, optax.adam(1e-3), wrt=nnx.Param)


def parameter_values(model):
    return [np.asarray(value) for value in jax.tree.leaves(nnx.state(model, nnx.Param))]


def dropout_draws(model):  # every random stream's counter, wherever your MLP keeps its dropout
    return sum(int(count) for count in jax.tree.leaves(nnx.state(model, nnx.RngCount)))


small_model.train()
for images_in_batch in (16, 16, 16, 8):
    before = parameter_values(small_model)
    metrics = week.train_step(small_model, small_optimizer, small_images[:images_in_batch], small_labels[:images_in_batch])
    change = max(float(np.max(np.abs(new - old))) for new, old in zip(parameter_values(small_model), before))
    print(f"train_step on {images_in_batch} images: loss {float(metrics['loss']):.3f}, "
          f"optimizer step {int(small_optimizer.step[...])}, dropout draws {dropout_draws(small_model)}, "
          f"largest parameter change {change:.4f}")
small_model.eval()
metrics = week.eval_step(small_model, small_images, small_labels)
print(f"eval_step on 16 images: loss {float(metrics['loss']):.3f}")
print(f"\n5 calls, {len(traced_calls)} traces of the model, for inputs {traced_calls}")

# %% [markdown]
# Three traces: one for the training step on 16 images (the second and third calls reused it),
# one for 8 images, one for `eval_step`. The optimizer's step count and the dropout counter went up
# at every call, although each compiled program is a pure function: `nnx.jit` carried that state in
# and out.
#
# ## 5. The training loop
#
# One *epoch* visits the training images once, in shuffled minibatches of 128. Each call of your
# `train_step` (the recipe's `train_step` is `week.train_step`) runs the model, takes the gradient
# of the loss with respect to every weight and lets the optimizer (Adam here) update them. After
# each epoch your `eval_step` measures the test loss and accuracy with dropout off. `course train
# mlp` runs this same loop (`course.train.fit`).
#
# By default the lesson trains briefly on `shapes_gray`, 28x28 synthetic images of ten shapes; with
# `COURSE_LESSON_FULL=1` it trains on MNIST.

# %%
recipe = week.RECIPES["mlp"]
dataset, (train_images, train_labels), (test_images, test_labels) = lessons.image_dataset(
    "mnist", "shapes_gray", train_examples=3000, test_examples=1000)
epochs = 5 if lessons.full_data() else 3
model = recipe.model(nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
history = []
for epoch in range(epochs):
    model.train()
    batches = batching.batch_indices(len(train_labels), 128, seed=0, epoch=epoch, drop_last=True)
    for indices in batches:
        metrics = recipe.train_step(model, optimizer, week.prepare(train_images[indices]), jnp.asarray(train_labels[indices]))
    model.eval()
    test_metrics = recipe.eval_step(model, week.prepare(test_images), jnp.asarray(test_labels))
    history.append({"epoch": epoch + 1, "train_loss": float(metrics["loss"]), "train_accuracy": float(metrics["accuracy"]),
                    "test_loss": float(test_metrics["loss"]), "test_accuracy": float(test_metrics["accuracy"])})
    print(f"epoch {epoch + 1}: last batch loss {history[-1]['train_loss']:.3f}, test accuracy {history[-1]['test_accuracy']:.2%}")
lessons.show(viz_training.plot_history(history))

# %%
outputs, predictions = viz_predictions.predict(model, week.prepare, test_images)
names = data.class_names(dataset)
lessons.show(viz_predictions.plot_predictions(test_images[:20], test_labels[:20], predictions[:20], names))
lessons.show(viz_predictions.plot_confusion(viz_predictions.confusion_matrix(test_labels, predictions, len(names)), names))

# %% [markdown]
# ## Your turn
#
# Fill in the tasks of `exercises/week2_neural_networks.py`:
#
# | task | function | what |
# |---|---|---|
# | 2.1 | `perceptron_step` | one sequential pass of the perceptron trick (`lax.scan`) |
# | 2.2 | `two_layer_forward` | two matrix products, each through a sigmoid |
# | 2.3 | `two_layer_loss` | half the mean squared error |
# | 2.4 | `two_layer_backward` | the error terms and gradients above |
# | 2.5 | `softmax` | stable softmax along an axis |
# | 2.6 | `cross_entropy` | mean negative log-softmax of the true class |
# | 2.7 | `accuracy` | share of correct argmaxes |
# | 2.8 | `MLP.__init__` | the Linear layers and the Dropout |
# | 2.9 | `MLP.__call__` | flatten, ReLU and dropout after each hidden layer |
# | 2.10 | `train_step` | `nnx.value_and_grad` of the loss (with the logits as aux), `optimizer.update` |
# | 2.11 | `eval_step` | one forward pass: loss and accuracy, nothing changed |
#
# Rerun this notebook as you go, then grade your work:
#
# ```
# course grade week2
# ```
#
# and train the full model with `course train mlp --dataset fashion_mnist`.
