"""Week 5 checks: padding to 32x32, +1/-1 targets, the two losses, LeNet-5 (tanh) and its ReLU variant."""

import jax
import numpy as np

from grader import models
from grader.checks import Check, all_of, hidden, jit_agrees, same, values
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
    Check("pad_to_32: zeros around the digits", "5.1", "pad_to_32", 2, "pad_to_32",
          all_of(same("float", "float images"), same("uint8", "uint8 images keep their dtype")),
          hint="2 zeros on each side of H and W only"),
    Check("pm1_targets: +1/-1 rows", "5.2", "pm1_targets", 2, "pm1_targets",
          all_of(same("default"), same("five_classes", "num_classes=5"))),
    Check("mse_pm1_loss: value and gradient", "5.3", "mse_pm1_loss", 2, "mse_pm1_loss",
          all_of(same("loss"), values("gradient", "jax.grad of the loss")),
          hint="the mean over all N * classes elements, as nn.MSELoss"),
    Check("nll_loss: value", "5.4", "nll_loss", 2, "nll_loss", all_of(same("loss"), jit_agrees("jit", "loss")),
          hint="minus the mean of each row's true-class log-probability"),
    *models.checks(LENET5),
    *models.checks(LENET5_RELU),
    hidden("pad_to_32", "5.1", "pad_to_32", "pad_to_32", "float"),
    hidden("mse_pm1_loss", "5.3", "mse_pm1_loss", "mse_pm1_loss", "loss", "gradient"),
    hidden("nll_loss", "5.4", "nll_loss", "nll_loss", "loss"),
]
