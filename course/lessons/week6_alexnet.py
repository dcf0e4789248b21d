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
# # Week 6: AlexNet
#
# In 2012 AlexNet (Krizhevsky, Sutskever and Hinton) won the ImageNet challenge with a top-5 error
# of 15.3%, against 26.2% for the next entry, and started the deep-learning era of computer
# vision. It is LeNet-5's recipe scaled up: five convolutions and three fully connected layers,
# 60 million parameters, trained on 1.2 million images on two GPUs. The original course trained it
# on CIFAR-10, with the 32x32 images resized to AlexNet's 227x227.
#
# This lesson runs your code in `exercises/week6_alexnet.py`. Until a part is written, the cell that
# needs it says which one to fill in.

# %%
import dataclasses

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from course import data, lessons, transforms, viz, viz_filters, viz_predictions, viz_training

week = lessons.load_week("week6_alexnet")

# %% [markdown]
# ## 1. Why it worked
#
# * **ReLU** instead of tanh: $\max(0, x)$ does not saturate for $x > 0$, so deep stacks keep their
#   gradients; the paper measured six times faster training than with tanh.
# * **Dropout** (rate 0.5) before the two large fully connected layers: most of the parameters live
#   there, and dropping half the units at random each step keeps them from memorising.
# * **Overlapping max-pooling**, 3x3 windows moved by 2, slightly better than LeNet's 2x2/2.
# * **Data augmentation**: random crops and flips multiply the effective training set.
# * **GPUs**: the model was split over two, which made training a network this size practical.
#   (Local response normalisation, also in the paper, was later found to matter little; the
#   original course and this one leave it out.)
#
# ## 2. The arithmetic of sizes
#
# With $H_\text{out} = \lfloor (H + 2P - K)/S \rfloor + 1$ for every layer:
#
# | layer | kernel, stride, padding | output | parameters |
# |---|---|---|---|
# | input | | 227 x 227 x 3 | |
# | C1 96, ReLU | 11x11, 4, 0 | $\lfloor(227 - 11)/4\rfloor + 1 = 55$: 55 x 55 x 96 | $11^2 \cdot 3 \cdot 96 + 96 = 34{,}944$ |
# | max-pool | 3x3, 2 | $\lfloor(55 - 3)/2\rfloor + 1 = 27$ | |
# | C2 256, ReLU | 5x5, 1, 2 | 27 x 27 x 256 | $5^2 \cdot 96 \cdot 256 + 256 = 614{,}656$ |
# | max-pool | 3x3, 2 | 13 x 13 x 256 | |
# | C3 384, ReLU | 3x3, 1, 1 | 13 x 13 x 384 | $3^2 \cdot 256 \cdot 384 + 384 = 885{,}120$ |
# | C4 384, ReLU | 3x3, 1, 1 | 13 x 13 x 384 | $3^2 \cdot 384 \cdot 384 + 384 = 1{,}327{,}488$ |
# | C5 256, ReLU | 3x3, 1, 1 | 13 x 13 x 256 | $3^2 \cdot 384 \cdot 256 + 256 = 884{,}992$ |
# | max-pool | 3x3, 2 | 6 x 6 x 256 = 9216 | |
# | dropout, fc1 4096, ReLU | | 4096 | $9216 \cdot 4096 + 4096 = 37{,}752{,}832$ |
# | dropout, fc2 500, ReLU | | 500 | $4096 \cdot 500 + 500 = 2{,}048{,}500$ |
# | fc3 10 | | 10 | $500 \cdot 10 + 10 = 5{,}010$ |
#
# 43,553,542 parameters, 87% of them in fc1. (The paper says 224x224 inputs, but 224 does not give
# 55; 227 does, which is why implementations use it.) Only fc1 depends on the input size, through
# the side of the last map (Task 6.2); 67 is the smallest input that leaves a 1x1 map.

# %%
for size in (67, 99, 163, 227):
    print(f"input {size}x{size}: last map {week.final_map_size(size)}x{week.final_map_size(size)}")

# %% [markdown]
# `nnx.eval_shape` builds the model abstractly, shapes only, so the 43.5 million weights are
# counted without being allocated (Task 6.3):

# %%
abstract = nnx.eval_shape(lambda: week.AlexNet(rngs=nnx.Rngs(0)))
count = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
print(f"AlexNet parameters at 227x227: {count:,} (expected 43,553,542)")

# %% [markdown]
# ## 3. From 32x32 to 227x227
#
# Resizing a CIFAR-10 image to 227x227 (Task 6.1, bilinear) adds no information: it only lets
# AlexNet's 11x11/4 first layer, designed for ImageNet photos, see something. It costs about
# $(227/32)^2 \approx 50$ times more arithmetic per image than the network needs, which is why the
# original trained it on a GPU. Each pixel of the small image becomes a smooth 7x7 patch:

# %%
dataset, train_data, test_data = lessons.image_dataset("cifar10", "shapes_rgb", train_examples=640, test_examples=300)
names = data.class_names(dataset)
small = train_data[0][:1]
large = week.resize_227(transforms.to_unit_float(jnp.asarray(small)))
print("resized:", small.shape, "->", large.shape)
figure, axes = plt.subplots(1, 2, figsize=(7, 3.8), layout="constrained")
viz.show_image(axes[0], small[0], "32 x 32")
viz.show_image(axes[1], np.asarray(large[0]), "227 x 227, bilinear")
lessons.show(figure)

# %% [markdown]
# ## 4. Training a small AlexNet
#
# At 227x227 one CPU epoch of CIFAR-10 takes hours. The lesson trains the same architecture at
# the smallest input size, 67x67 (about 10x cheaper per image), on `shapes_rgb` by default or
# CIFAR-10 with `COURSE_LESSON_FULL=1`. By default it sees only 640 images four times, a glimpse
# of learning that fits in a minute on a CPU; with the full setting it trains 3 epochs. It keeps
# the recipe's training choices: normalisation to $[-1, 1]$, random shifts and flips, SGD with
# Nesterov momentum 0.9 and weight decay $5 \cdot 10^{-4}$ (the paper's), and a learning rate
# warmed up over the first epoch then decayed along a cosine. On a GPU, `course train alexnet`
# trains the full model.

# %%
INPUT_SIZE = 67
recipe = dataclasses.replace(
    week.RECIPES["alexnet"],
    model=lambda rngs: week.AlexNet(input_size=INPUT_SIZE, rngs=rngs),
    prepare=lambda images: transforms.resize(transforms.normalize(images, mean=0.5, std=0.5), INPUT_SIZE),
)
epochs, batch_size = (3, 128) if lessons.full_data() else (4, 32)
model, history = lessons.fit_model(recipe, train_data, test_data, epochs=epochs, dataset=dataset, model_name="alexnet",
                                   batch_size=batch_size)
lessons.show(viz_training.plot_history(history))

# %%
test_images, test_labels = test_data
_, predictions = viz_predictions.predict(model, recipe.prepare, test_images)
lessons.show(viz_predictions.plot_predictions(test_images[:20], test_labels[:20], predictions[:20], names))
matrix = viz_predictions.confusion_matrix(test_labels, predictions, len(names))
lessons.show(viz_predictions.plot_class_accuracy(viz_predictions.per_class_accuracy(matrix), names, overall=float(np.mean(predictions == test_labels))))
_, kernels = viz_filters.first_conv_kernels(model)
lessons.show(viz_filters.plot_learned_filters(kernels, "C1"))

# %% [markdown]
# The 96 C1 kernels above learned from a few thousand small images look noisy. Trained on
# ImageNet they become the famous oriented edges and colour blobs: the same Sobel-like detectors
# you wrote by hand in week 3, now found by gradient descent.

# %% [markdown]
# ## 5. Data parallelism: one step over several devices
#
# AlexNet was split over two GPUs because one was too small. Today the usual way to use several
# devices is *data parallelism*: every device holds a whole copy of the model, each works on its
# own share of the batch, and the gradients are summed across devices before the update, so every
# copy takes the same step.
#
# In JAX you do not write that communication yourself; you say *where the arrays live*:
#
# * A `jax.sharding.Mesh` arranges the devices along named axes; here one axis, `"data"`.
# * `NamedSharding(mesh, PartitionSpec("data"))` splits an array's first axis over that axis:
#   with 8 devices, a batch of 64 images becomes 8 pieces of 8, one per device. This is
#   *sharding the batch* (Task 6.5, `shard_batch`).
# * `NamedSharding(mesh, PartitionSpec())` names no axis to split along, so every device holds
#   the whole array: *replication*, for the parameters and the optimizer state (Task 6.6,
#   `replicate`).
#
# The jitted step itself does not change. The compiler sees where its inputs live, runs each
# device on its piece, and inserts the sum of the gradients across devices where the loss averages
# over the batch. `week.data_parallel_step` (given, not a task) replicates the model and optimizer
# state with your `replicate`, then calls your `train_step` on the batch split by your `shard_batch`.
#
# This machine may have one device; the cell works with any number. A CPU can pretend to be 8
# devices if `XLA_FLAGS=--xla_force_host_platform_device_count=8` is set before `jax` is imported
# (in the shell that starts Jupyter, or at the very top of a script). `course grade week6` grades
# your `shard_batch` and `replicate` that way, on 8 CPU devices, and checks that one step from
# there equals the one-device step.

# %%
devices = jax.devices()
mesh = jax.sharding.Mesh(np.array(devices), ("data",))
print(f"{len(devices)} device(s); the mesh: {dict(mesh.shape)}")

batch = jnp.arange(8 * 16 * 3, dtype=jnp.float32).reshape(8 * 16, 3)  # 128 rows: divisible by 1, 2, 4 or 8 devices
sharded = week.shard_batch(mesh, batch)
print(f"\nsharded batch {sharded.shape}: {sharded.sharding}")
for shard in sharded.addressable_shards:
    rows = shard.index[0]
    print(f"  {shard.device}: rows {rows.start or 0} to {(rows.stop or len(batch)) - 1}, shape {shard.data.shape}")

replicated = week.replicate(mesh, {"weights": jnp.ones((3, 2))})["weights"]
print(f"\nreplicated weights {replicated.shape}: {replicated.sharding}")
for shard in replicated.addressable_shards:
    print(f"  {shard.device}: shape {shard.data.shape}")

# %% [markdown]
# The data-parallel step must give the same parameters as the one-device step, up to float
# rounding (the sums are added in another order). A small linear classifier on random inputs is
# enough to check it:

# %%
def linear_classifier_and_optimizer():
    classifier = nnx.Linear(12, 4, rngs=nnx.Rngs(0))  # maps (N, 12) inputs to (N, 4) logits
    return classifier, nnx.Optimizer(classifier, week.sgd_momentum(0.1), wrt=nnx.Param)


input_key, label_key = jax.random.split(jax.random.key(0))
inputs = jax.random.normal(input_key, (64, 12))
targets = jax.random.randint(label_key, (64,), 0, 4)
one_device_model, one_device_optimizer = linear_classifier_and_optimizer()
parallel_model, parallel_optimizer = linear_classifier_and_optimizer()
for step in range(3):
    one_device_metrics = week.train_step(one_device_model, one_device_optimizer, inputs, targets)
    parallel_metrics = week.data_parallel_step(mesh, parallel_model, parallel_optimizer, inputs, targets)
    print(f"step {step + 1}: loss on one device {float(one_device_metrics['loss']):.5f}, "
          f"data parallel {float(parallel_metrics['loss']):.5f}")
difference = max(float(jnp.max(jnp.abs(one - parallel))) for one, parallel in zip(
    jax.tree.leaves(nnx.state(one_device_model, nnx.Param)), jax.tree.leaves(nnx.state(parallel_model, nnx.Param))))
print(f"largest parameter difference after 3 steps: {difference:.1e}")
print("kernel's sharding after the parallel step:", parallel_model.kernel[...].sharding)

# %% [markdown]
# ## Your turn
#
# Fill in the tasks of `exercises/week6_alexnet.py`:
#
# | task | function | what |
# |---|---|---|
# | 6.1 | `resize_227` | one call to `transforms.resize` |
# | 6.2 | `final_map_size` | C1's and the three pools' size formulas |
# | 6.3 | `AlexNet.__init__` | five `nnx.Conv`, one `nnx.Dropout`, three `nnx.Linear` |
# | 6.4 | `AlexNet.__call__` | the convolutions with ReLU and pools, flatten, the classifier |
# | 6.5 | `shard_batch` | `jax.device_put` with `NamedSharding(mesh, PartitionSpec("data"))` |
# | 6.6 | `replicate` | `jax.device_put` of the whole tree with `NamedSharding(mesh, PartitionSpec())` |
#
# Rerun this notebook as you go, then grade your work:
#
# ```
# course grade week6
# ```
#
# and, on a machine with a GPU, `course train alexnet --out runs/alexnet`.
