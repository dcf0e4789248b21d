"""Week 2 checks: the perceptron, a two-layer network with hand-written backprop, softmax,
cross-entropy, accuracy, the MLP, and the jitted train and eval steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grader import models, steps
from grader.checks import Check
from grader.judges import all_of, finite, hidden, jit_agrees, same, values
from grader.probing import LibraryAnswer, attempt, block, normal, rng, stand_ins

MLP = models.ModelSpec("MLP", "2.8", "2.9", input_shape=(28, 28, 1),
                       other_kwargs={"hidden": (32, 16), "num_classes": 7, "dropout_rate": 0.3})


def _two_layer_forward(params, features):
    hidden = jax.nn.sigmoid(jnp.dot(features, params["hidden_weights"]))
    return hidden, jax.nn.sigmoid(jnp.dot(hidden, params["output_weights"]))


STAND_INS = {"two_layer_forward": _two_layer_forward}
# the steps are graded on their own: the week's cross_entropy and accuracy are the library's meanwhile
STEP_STAND_INS = {
    "cross_entropy": lambda logits, labels: optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(),
    "accuracy": lambda logits, labels: jnp.mean(jnp.argmax(logits, axis=-1) == labels),
}


def setup(week):
    return models.setup(week, [MLP])


def _pair(value, first: str, second: str) -> dict:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return {first: value[0], second: value[1]}
    return {first: value, second: value}


def probe_perceptron_step(week, given):
    features = normal(20, (40, 2))
    labels = (features[:, 0] - 0.5 * features[:, 1] > 0.2).astype(np.int32)
    result = attempt(lambda: block(week.perceptron_step(normal(21, (2,)), np.float32(0.1), features, labels, 0.01)))
    return _pair(result, "weights", "bias")


def _two_layer_inputs():
    params = {"hidden_weights": normal(22, (6, 3)), "output_weights": normal(23, (3,))}
    features = normal(24, (15, 6))
    targets = (rng(25).random(15) > 0.5).astype(np.float32)
    return params, features, targets


def probe_two_layer_forward(week, given):
    params, features, _ = _two_layer_inputs()
    return _pair(attempt(lambda: block(week.two_layer_forward(params, features))), "hidden", "output")


def probe_two_layer_loss(week, given):
    params, features, targets = _two_layer_inputs()
    with stand_ins(week, STAND_INS):
        return {"loss": attempt(lambda: block(week.two_layer_loss(params, features, targets)))}


def probe_two_layer_backward(week, given):
    params, features, targets = _two_layer_inputs()
    with stand_ins(week, STAND_INS):
        grads = attempt(lambda: block(week.two_layer_backward(params, features, targets)))
    if not isinstance(grads, dict):
        return {"hidden_weights": grads, "output_weights": grads}
    return {name: grads.get(name, np.asarray("missing key")) for name in ("hidden_weights", "output_weights")}


def probe_softmax(week, given):
    logits = normal(26, (5, 7), 3.0)
    return {
        "last_axis": attempt(lambda: block(week.softmax(logits))),
        "axis_0": attempt(lambda: block(week.softmax(logits, axis=0))),
        "large": attempt(lambda: block(week.softmax(np.array([[1000.0, 0.0, -1000.0]], np.float32)))),
        "jit": attempt(lambda: block(jax.jit(week.softmax)(logits))),
    }


def probe_cross_entropy(week, given):
    logits = normal(27, (8, 5), 2.0)
    labels = rng(28).integers(0, 5, size=8).astype(np.int32)
    return {
        "loss": attempt(lambda: block(week.cross_entropy(logits, labels))),
        "large": attempt(lambda: block(week.cross_entropy(np.array([[500.0, -500.0]], np.float32),
                                                          np.array([1], np.int32)))),
        "gradient": attempt(lambda: block(jax.grad(week.cross_entropy)(logits, labels))),
    }


def probe_accuracy(week, given):
    logits = normal(29, (50, 4))
    labels = rng(30).integers(0, 4, size=50).astype(np.int32)
    return {"accuracy": attempt(lambda: block(week.accuracy(logits, labels))),
            "jit": attempt(lambda: block(jax.jit(week.accuracy)(logits, labels)))}


def probe_train_step(week, given):
    with stand_ins(week, STEP_STAND_INS):
        return steps.probe_train_step(week.train_step)


def probe_eval_step(week, given):
    with stand_ins(week, STEP_STAND_INS):
        return steps.probe_eval_step(week.eval_step)


# The course library builds week 5's steps; for this week's tasks it is withheld (grader.probing.withhold).
LIBRARY_ANSWERS = (LibraryAnswer("course.steps", "make_train_step", "2.10 (train_step)", builds=True),
                   LibraryAnswer("course.steps", "make_eval_step", "2.11 (eval_step)", builds=True))

PROBES = {
    "perceptron_step": probe_perceptron_step,
    "two_layer_forward": probe_two_layer_forward,
    "two_layer_loss": probe_two_layer_loss,
    "two_layer_backward": probe_two_layer_backward,
    "softmax": probe_softmax,
    "cross_entropy": probe_cross_entropy,
    "accuracy": probe_accuracy,
    **models.probes(MLP),
    "train_step": probe_train_step,
    "eval_step": probe_eval_step,
}

CHECKS = [
    Check(name="perceptron_step: one pass over the points", task="2.1", function="perceptron_step", points=3,
          judge=all_of(same("weights"), same("bias")),
          hint="visit the points in order; a point predicted wrongly moves the line by +-learning_rate * point"),
    Check(name="two_layer_forward: hidden and output", task="2.2", function="two_layer_forward", points=2,
          judge=all_of(same("hidden"), same("output")), hint="sigmoid after each of the two matrix products"),
    Check(name="two_layer_loss: value", task="2.3", function="two_layer_loss", points=1, judge=same("loss"),
          hint="half the MEAN squared error"),
    Check(name="two_layer_backward: gradients", task="2.4", function="two_layer_backward", points=4,
          judge=all_of(same("hidden_weights", "gradient of hidden_weights"), same("output_weights", "gradient of output_weights")),
          hint="the result must equal jax.grad(two_layer_loss): mind the sign and the 1/N"),
    Check(name="softmax: values along an axis", task="2.5", function="softmax", points=2,
          judge=all_of(same("last_axis", "softmax(logits)"), same("axis_0", "softmax(logits, axis=0)"),
                       jit_agrees("jit", "last_axis")), hint="reduce along `axis` with keepdims=True"),
    Check(name="softmax: stable for large logits", task="2.5", function="softmax", points=1,
          judge=values("large", "softmax of [1000, 0, -1000]"), hint="subtract the maximum first"),
    Check(name="cross_entropy: value and gradient", task="2.6", function="cross_entropy", points=3,
          judge=all_of(same("loss", hint="average (not sum) -log_softmax at the true class"),
                       values("gradient", "jax.grad of the loss"),
                       finite("large", "finite for logits +-500",
                              hint="exp(500) overflows: subtract each row's maximum before exponentiating (log-sum-exp)"),
                       values("large", "value for logits +-500"))),
    Check(name="accuracy: value", task="2.7", function="accuracy", points=1,
          judge=all_of(same("accuracy"), jit_agrees("jit", "accuracy"))),
    *models.checks(MLP),
    *steps.train_step_checks("2.10"),
    *steps.eval_step_checks("2.11"),
    hidden(task="2.1", function="perceptron_step", keys=("weights", "bias")),
    hidden(task="2.2", function="two_layer_forward", keys=("hidden", "output")),
    hidden(task="2.3", function="two_layer_loss", keys=("loss",)),
    hidden(task="2.4", function="two_layer_backward", keys=("hidden_weights", "output_weights")),
    hidden(task="2.5", function="softmax", keys=("last_axis", "axis_0")),
    hidden(task="2.6", function="cross_entropy", keys=("loss", "gradient")),
    hidden(task="2.7", function="accuracy", keys=("accuracy",)),
]
