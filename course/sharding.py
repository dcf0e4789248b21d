"""Data parallelism over every local device: a one-axis mesh, batches split over it, state replicated.

    mesh = data_mesh()                                   # None on a machine of one accelerator
    nnx.update(model, replicate(mesh, nnx.state(model)))
    metrics = train_step(model, optimizer, shard_batch(mesh, images), shard_batch(mesh, labels))

With `mesh=None` every function places nothing, so the training loop (`course.train`) and the
steps (`course.steps`) are the same code on one device and on several.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec


def data_mesh(devices=None) -> jax.sharding.Mesh | None:
    """A one-axis mesh ("data") over `devices`, or None where there is only one.

    By default, the local accelerators (GPUs, TPUs). Host CPU devices (`XLA_FLAGS=
    --xla_force_host_platform_device_count=N`) are never split over by default: they share the same
    cores, so a batch split over them trains slower (0.6x for SimpleCNN on 2 cores), and a step
    whose devices wait on each other in a collective can stall when there are more devices than
    cores. Pass them explicitly to split over them anyway (the tests do)."""
    if devices is None:
        devices = [device for device in jax.local_devices() if device.platform != "cpu"]
    return jax.sharding.Mesh(np.array(devices), ("data",)) if len(devices) > 1 else None


def replicate(mesh: jax.sharding.Mesh | None, tree):
    """Places every array of `tree` (for instance `nnx.state(model)`) on all devices of `mesh`."""
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(mesh: jax.sharding.Mesh | None, batch: np.ndarray) -> jax.Array:
    """Splits `batch` along its first axis over the mesh's devices (replicated if it does not divide)."""
    if mesh is None:
        return jnp.asarray(batch)
    divides = batch.shape[0] % mesh.devices.size == 0
    spec = PartitionSpec("data") if divides else PartitionSpec()
    return jax.device_put(batch, NamedSharding(mesh, spec))


def shard_steps(mesh: jax.sharding.Mesh | None, batches: np.ndarray) -> jax.Array:
    """`shard_batch` for a chunk of batches (S, N, ...): each batch split along N over the mesh."""
    if mesh is None:
        return jnp.asarray(batches)
    return jax.device_put(batches, NamedSharding(mesh, PartitionSpec(None, "data")))
