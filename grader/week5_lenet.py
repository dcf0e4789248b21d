"""Week 5 checks: padding to 32x32, +1/-1 targets, the two losses, LeNet-5 (tanh) and its ReLU variant."""

import jax
import numpy as np

from grader import models
from grader.checks import Check
from grader.judges import all_of, hidden, jit_agrees, same, values
from grader.probing import attempt, block, normal, rng, stand_ins

LENET5 = models.ModelSpec("LeNet5", "5.5", "5.6", input_shape=(32, 32, 1), other_kwargs={"num_classes": 7}, loss="mse_pm1")
LENET5_RELU = models.ModelSpec("LeNet5ReLU", "5.7", "5.8", input_shape=(32, 32, 1), other_kwargs={"num_classes": 7},
                               loss="nll")
STAND_INS = {"pm1_targets": lambda labels, num_classes=10: 2.0 * jax.nn.one_hot(labels, num_classes) - 1.0}


def setup(week):
    return models.setup(week, [LENET5, LENET5_RELU])


def probe_pad_to_32(week, given):
    floats = normal(50, (2, 28, 28, 1))
    bytes_ = rng(51).integers(0, 256, size=(1, 28, 28, 3)).astype(np.uint8)
    return {"float": attempt(lambda: block(week.pad_to_32(floats))),
            "uint8": attempt(lambda: block(week.pad_to_32(bytes_)))}


def probe_pm1_targets(week, given):
    labels = np.array([3, 0, 9, 3], np.int32)
    return {"default": attempt(lambda: block(week.pm1_targets(labels))),
            "five_classes": attempt(lambda: block(week.pm1_targets(np.array([4, 1], np.int32), 5)))}


def probe_mse_pm1_loss(week, given):
    outputs = np.tanh(normal(52, (6, 10)))
    labels = rng(53).integers(0, 10, size=6).astype(np.int32)
    with stand_ins(week, STAND_INS):
        return {"loss": attempt(lambda: block(week.mse_pm1_loss(outputs, labels))),
                "gradient": attempt(lambda: block(jax.grad(week.mse_pm1_loss)(outputs, labels)))}


def probe_nll_loss(week, given):
    log_probs = np.asarray(jax.nn.log_softmax(normal(54, (7, 10))))
    labels = rng(55).integers(0, 10, size=7).astype(np.int32)
    return {"loss": attempt(lambda: block(week.nll_loss(log_probs, labels))),
            "jit": attempt(lambda: block(jax.jit(week.nll_loss)(log_probs, labels)))}


PROBES = {
    "pad_to_32": probe_pad_to_32,
    "pm1_targets": probe_pm1_targets,
    "mse_pm1_loss": probe_mse_pm1_loss,
    "nll_loss": probe_nll_loss,
    **models.probes(LENET5),
    **models.probes(LENET5_RELU),
}

CHECKS = [
    Check(name="pad_to_32: zeros around the digits", task="5.1", function="pad_to_32", points=2,
          judge=all_of(same("float", "float images"), same("uint8", "uint8 images keep their dtype")),
          hint="2 zeros on each side of H and W only"),
    Check(name="pm1_targets: +1/-1 rows", task="5.2", function="pm1_targets", points=2,
          judge=all_of(same("default"), same("five_classes", "num_classes=5"))),
    Check(name="mse_pm1_loss: value and gradient", task="5.3", function="mse_pm1_loss", points=2,
          judge=all_of(same("loss"), values("gradient", "jax.grad of the loss")),
          hint="the mean over all N * classes elements, as nn.MSELoss"),
    Check(name="nll_loss: value", task="5.4", function="nll_loss", points=2,
          judge=all_of(same("loss"), jit_agrees("jit", "loss")),
          hint="minus the mean of each row's true-class log-probability"),
    *models.checks(LENET5),
    *models.checks(LENET5_RELU),
    hidden(task="5.1", function="pad_to_32", keys=("float",)),
    hidden(task="5.3", function="mse_pm1_loss", keys=("loss", "gradient")),
    hidden(task="5.4", function="nll_loss", keys=("loss",)),
]
