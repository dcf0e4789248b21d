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
# # Week 5: LeNet-5
#
# LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998) read the digits on millions of bank cheques.
# It set the pattern every later CNN follows: convolutions that find local features, subsampling
# that makes the maps smaller and the features more tolerant of small shifts, and a few fully
# connected layers that decide. This week you build it as the original course did, with tanh units
# and a +1/-1 target per class, and a modern variant with ReLU and a softmax.
#
# This lesson runs your code in `exercises/week5_lenet.py`. Until a part is written, the cell that
# needs it says which one to fill in.

# %%
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from course import batching, data, lessons, viz_filters, viz_layers, viz_predictions, viz_training

week = lessons.load_week("week5_lenet")

# %% [markdown]
# ## 1. The design, and its arithmetic
#
# LeNet-5 reads 32x32 images: MNIST's 28x28 digits are padded by 2 zeros on every side (Task 5.1),
# so that strokes near the border still fall in the middle of some 5x5 window. Every convolution
# is 5x5 without padding ($H_\text{out} = H - 4$), every subsampling a 2x2 max-pool with stride 2:
#
# | layer | output | parameters |
# |---|---|---|
# | C1 6@5x5, tanh | 28 x 28 x 6 | $5 \cdot 5 \cdot 1 \cdot 6 + 6 = 156$ |
# | S2 max-pool 2x2/2 | 14 x 14 x 6 | |
# | C3 16@5x5, tanh | 10 x 10 x 16 | $5 \cdot 5 \cdot 6 \cdot 16 + 16 = 2{,}416$ |
# | S4 max-pool 2x2/2 | 5 x 5 x 16 | |
# | C5 120@5x5, tanh | 1 x 1 x 120 | $5 \cdot 5 \cdot 16 \cdot 120 + 120 = 48{,}120$ |
# | F6 84, tanh | 84 | $120 \cdot 84 + 84 = 10{,}164$ |
# | output 10, tanh | 10 | $84 \cdot 10 + 10 = 850$ |
#
# 61,706 parameters. C5 is a convolution whose 5x5 kernel covers the whole 5x5 map: it is a fully
# connected layer in disguise, which is why the ReLU variant writes it as a 400 → 120 `Linear`
# with the same parameter count. (The 1998 paper's C3 connected each map to only some of S2's maps
# and its subsampling had weights; the original course, like most reimplementations, simplified both.)

# %%
sizes = [32]
for layer in ("C1", "S2", "C3", "S4", "C5"):
    sizes.append(sizes[-1] - 4 if layer.startswith("C") else (sizes[-1] - 2) // 2 + 1)
print(" -> ".join(f"{size}x{size}" for size in sizes))

# %% [markdown]
# ## 2. The loss: tanh outputs against +1/-1 targets
#
# Every unit of the original LeNet-5 model, the ten outputs included, is a tanh, with values in
# $(-1, 1)$. The target for an image of class $y$ is $+1$ at output $y$ and $-1$ at the other nine
# (Task 5.2), and the loss is the mean squared error over all $10N$ outputs (Task 5.3):
#
# $$ t_{n,c} = \begin{cases} +1 & c = y_n \\ -1 & \text{otherwise} \end{cases}, \qquad
# L = \frac{1}{10 N} \sum_{n,c} (o_{n,c} - t_{n,c})^2, \qquad \tanh'(a) = 1 - \tanh^2(a). $$
#
# The predicted class is still the largest output. The ReLU variant ends in a log-softmax and uses
# the negative log-likelihood $-\frac{1}{N}\sum_n \log p_{n, y_n}$ (Task 5.4), which is
# cross-entropy.

# %%
labels = jnp.array([3, 0])
print("pm1_targets([3, 0]):\n", week.pm1_targets(labels))
outputs = jnp.tanh(jax.random.normal(jax.random.key(0), (2, 10)))
print("mse_pm1_loss of random tanh outputs:", float(week.mse_pm1_loss(outputs, labels)))
log_probs = jax.nn.log_softmax(jax.random.normal(jax.random.key(1), (2, 10)))
print("nll_loss:", float(week.nll_loss(log_probs, labels)),
      " optax cross-entropy of the same:", float(optax.softmax_cross_entropy_with_integer_labels(log_probs, labels).mean()))

# %% [markdown]
# ## 3. Building and training it
#
# By default the lesson trains on `shapes_gray` (28x28 synthetic shapes, padded like MNIST); with
# `COURSE_LESSON_FULL=1` on MNIST. `prepare` pads each batch to 32x32 and scales it to $[0, 1]$.

# %%
dataset, train_data, test_data = lessons.image_dataset("mnist", "shapes_gray", train_examples=3000, test_examples=1000)
names = data.class_names(dataset)
recipe = week.RECIPES["lenet5"]
padded = week.pad_to_32(jnp.asarray(train_data[0][:1]))
print("a digit padded:", train_data[0].shape[1:], "->", padded.shape[1:])

model = week.LeNet5(rngs=nnx.Rngs(0))
count = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
print(f"LeNet5 parameters: {count:,} (expected 61,706)")
for name, value in viz_layers.layer_outputs(model, jnp.zeros((1, 32, 32, 1))).items():
    print(f"  {name:7s} output {tuple(value.shape)}")

# %% [markdown]
# The original watched training on a live dashboard: the loss and error (1 - accuracy) of every
# step, raw and smoothed; one example's ten class confidences; histograms of the C5 and F6
# activations; and the six C1 kernels. The loop below records each step's metrics and draws that
# dashboard at the end (`course train lenet5 --dashboard-every 100` draws it during training).
#
# Watch the histograms: tanh units saturate near $\pm 1$, where $\tanh'$ is almost 0 and learning
# slows; the +1/-1 targets push the output units right there.

# %%
batch_size, epochs = 64, (3 if lessons.full_data() else 2)
train_images, train_labels = train_data
steps_per_epoch = len(train_labels) // batch_size
schedule = optax.cosine_decay_schedule(recipe.learning_rate, epochs * steps_per_epoch)
optimizer = nnx.Optimizer(model, recipe.optimizer(schedule), wrt=nnx.Param)
model.train()
step_metrics = []
for epoch in range(epochs):
    for indices in batching.batch_indices(len(train_labels), batch_size, seed=0, epoch=epoch, drop_last=True):
        batch = recipe.prepare(jnp.asarray(train_images[indices]))
        step_metrics.append(recipe.train_step(model, optimizer, batch, jnp.asarray(train_labels[indices])))
step_metrics = jax.device_get(step_metrics)
losses = [float(metrics["loss"]) for metrics in step_metrics]
errors = [1 - float(metrics["accuracy"]) for metrics in step_metrics]
model.eval()
test_images, test_labels = test_data
_, predictions = viz_predictions.predict(model, recipe.prepare, test_images)
print(f"{len(losses)} steps; test accuracy {np.mean(predictions == test_labels):.2%}")
lessons.show(viz_training.plot_dashboard(losses, errors, model, recipe.prepare(jnp.asarray(test_images[:64])), test_labels[:64],
                                         class_names=names, step=len(losses)))

# %% [markdown]
# What C1's six kernels compute for one test image, and the predictions on twenty test images:

# %%
inputs = recipe.prepare(jnp.asarray(test_images[:1]))
lessons.show(viz_filters.plot_feature_maps(np.asarray(inputs[0]), viz_filters.layer_feature_maps(model, inputs, "c1"), title="C1"))
lessons.show(viz_predictions.plot_predictions(test_images[:20], test_labels[:20], predictions[:20], names))

# %% [markdown]
# ## 4. The ReLU variant
#
# `LeNet5ReLU` (Tasks 5.7 and 5.8) replaces tanh by ReLU, writes C5 as a 400 → 120 `Linear` after
# flattening S4's 5x5x16 maps, and ends in a log-softmax trained with `nll_loss`. ReLU does not
# saturate for positive inputs, so gradients reach the first layers undiminished; together with
# cross-entropy's gradient $p - \text{onehot}(y)$, which stays large when the model is confidently
# wrong, it usually learns faster.

# %%
relu_model, history = lessons.fit_model(week.RECIPES["lenet5_relu"], train_data, test_data, epochs=epochs,
                                        dataset=dataset, model_name="lenet5_relu")
print(f"LeNet5 (tanh, MSE): {np.mean(predictions == test_labels):.2%}   "
      f"LeNet5ReLU (ReLU, NLL): {history[-1]['test_accuracy']:.2%}")
lessons.show(viz_training.plot_history(history))

# %% [markdown]
# ## Your turn
#
# Fill in the tasks of `exercises/week5_lenet.py`:
#
# | task | function | what |
# |---|---|---|
# | 5.1 | `pad_to_32` | 2 zeros on each side of H and W |
# | 5.2 | `pm1_targets` | one-hot mapped to $\{-1, +1\}$ |
# | 5.3 | `mse_pm1_loss` | mean squared error against those targets |
# | 5.4 | `nll_loss` | mean negative log-probability of the true class |
# | 5.5 | `LeNet5.__init__` | C1, C3, C5 (`nnx.Conv`, 5x5, "VALID"), F6 and the output layer |
# | 5.6 | `LeNet5.__call__` | (conv, tanh, pool) twice, C5, flatten, F6, output, all with tanh |
# | 5.7 | `LeNet5ReLU.__init__` | two convolutions and three `Linear` layers |
# | 5.8 | `LeNet5ReLU.__call__` | (conv, ReLU, pool) twice, flatten, three layers, log-softmax |
#
# Rerun this notebook as you go, then grade your work:
#
# ```
# course grade week5
# ```
#
# and train on MNIST with `course train lenet5 --out runs/lenet5 --dashboard-every 100`.
