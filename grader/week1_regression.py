"""Week 1 checks: linear regression, gradient descent and logistic regression.

PROBES run in the child on the graded module (`week`) and return evidence; CHECKS judge it here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grader.checks import Check
from grader.judges import all_of, finite, hidden, jit_agrees, same, values
from grader.probing import attempt, block, normal, rng, stand_ins

# Library equivalents of the tasks other tasks call, so each task is graded on its own.
STAND_INS = {
    "linear_predict": lambda weights, bias, features: jnp.dot(features, weights) + bias,
    "mse_loss": lambda predictions, targets: optax.squared_error(predictions, targets).mean(),
    "sigmoid": jax.nn.sigmoid,
    "logistic_loss": lambda logits, labels: optax.sigmoid_binary_cross_entropy(
        logits, jnp.asarray(labels, logits.dtype)).mean(),
}


def call(function, *args, **kwargs):
    return attempt(lambda: block(function(*args, **kwargs)))


def call_jitted(function, *args):
    return attempt(lambda: block(jax.jit(function)(*args)))


def probe_linear_predict(week, given):
    weights, bias, features = normal(1, (5,)), np.float32(0.7), normal(2, (7, 5))
    return {
        "predictions": call(week.linear_predict, weights, bias, features),
        "jit": call_jitted(week.linear_predict, weights, bias, features),
    }


def probe_mse_loss(week, given):
    predictions, targets = normal(3, (9,)), normal(4, (9,))
    return {"loss": call(week.mse_loss, predictions, targets), "jit": call_jitted(week.mse_loss, predictions, targets)}


def probe_fit_linear_closed_form(week, given):
    features = normal(5, (20, 3))
    true_weights, true_bias = np.array([1.5, -2.0, 0.5], np.float32), np.float32(3.0)
    exact_targets = features @ true_weights + true_bias
    noisy_targets = exact_targets + normal(6, (20,), 0.3)
    exact = attempt(lambda: block(week.fit_linear_closed_form(features, exact_targets)))
    noisy = attempt(lambda: block(week.fit_linear_closed_form(features, noisy_targets)))
    return {
        "exact_weights": exact[0] if isinstance(exact, tuple) else exact,
        "exact_bias": exact[1] if isinstance(exact, tuple) else exact,
        "noisy_weights": noisy[0] if isinstance(noisy, tuple) else noisy,
        "noisy_bias": noisy[1] if isinstance(noisy, tuple) else noisy,
    }


def probe_gradient_descent_step(week, given):
    params = (normal(7, (4,)), np.float32(0.2))
    features, targets = normal(8, (16, 4)), normal(9, (16,))
    with stand_ins(week, {name: STAND_INS[name] for name in ("linear_predict", "mse_loss")}):
        stepped = attempt(lambda: block(week.gradient_descent_step(params, features, targets, 0.1)))
    if not isinstance(stepped, (tuple, list)) or len(stepped) != 2:
        return {"weights": stepped, "bias": stepped}
    return {"weights": stepped[0], "bias": stepped[1]}


def probe_sigmoid(week, given):
    moderate = normal(10, (3, 11), 3.0)
    extreme = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], np.float32)
    return {
        "moderate": call(week.sigmoid, moderate),
        "extreme": call(week.sigmoid, extreme),
        "gradient": attempt(lambda: block(jax.grad(lambda x: week.sigmoid(x).sum())(moderate))),
        "extreme_gradient": attempt(lambda: block(jax.grad(lambda x: week.sigmoid(x).sum())(extreme))),
    }


def probe_logistic_loss(week, given):
    logits = normal(11, (12,), 2.0)
    labels = (rng(12).random(12) > 0.5).astype(np.int32)
    extreme_logits = np.array([-200.0, 200.0, -50.0, 50.0], np.float32)
    extreme_labels = np.array([1, 0, 0, 1], np.int32)
    zero_logits, zero_labels = np.zeros(4, np.float32), np.array([1, 0, 1, 1], np.int32)
    return {
        "loss": call(week.logistic_loss, logits, labels),
        "extreme": call(week.logistic_loss, extreme_logits, extreme_labels),
        "gradient": attempt(lambda: block(jax.grad(week.logistic_loss)(logits, labels))),
        "gradient_at_0": attempt(lambda: block(jax.grad(week.logistic_loss)(zero_logits, zero_labels))),
    }


def probe_logistic_predict(week, given):
    weights, bias, features = normal(13, (4,)), np.float32(-0.3), normal(14, (25, 4))
    with stand_ins(week, {name: STAND_INS[name] for name in ("linear_predict", "sigmoid")}):
        return {"labels": call(week.logistic_predict, weights, bias, features),
                "at_0": call(week.logistic_predict, np.zeros(4, np.float32), np.float32(0.0), features[:3])}


def probe_train_logistic(week, given):
    features = normal(15, (30, 4))
    labels = (features @ np.array([1.0, -1.0, 0.5, 0.0], np.float32) + 0.3 * normal(16, (30,)) > 0).astype(np.int32)
    with stand_ins(week, {name: STAND_INS[name] for name in ("linear_predict", "logistic_loss")}):
        trained = attempt(lambda: block(week.train_logistic(features, labels, learning_rate=0.5, steps=25)))
    if not isinstance(trained, (tuple, list)) or len(trained) != 2:
        return {"weights": trained, "bias": trained}
    return {"weights": trained[0], "bias": trained[1]}


def probe_standardize(week, given):
    train = normal(17, (12, 4), 2.0) + np.float32(5.0)
    train[:, 2] = 7.0  # a constant column: its std is 0
    other = normal(18, (5, 4))
    both = attempt(lambda: block(week.standardize(train, other)))
    return {
        "train_only": call(week.standardize, train),
        "train": both[0] if isinstance(both, (tuple, list)) else both,
        "other": both[1] if isinstance(both, (tuple, list)) else both,
    }


PROBES = {
    "linear_predict": probe_linear_predict,
    "mse_loss": probe_mse_loss,
    "fit_linear_closed_form": probe_fit_linear_closed_form,
    "gradient_descent_step": probe_gradient_descent_step,
    "sigmoid": probe_sigmoid,
    "logistic_loss": probe_logistic_loss,
    "logistic_predict": probe_logistic_predict,
    "train_logistic": probe_train_logistic,
    "standardize": probe_standardize,
}

CHECKS = [
    Check(name="linear_predict: predictions", task="1.1", function="linear_predict", points=2,
          judge=all_of(same("predictions"), jit_agrees("jit", "predictions")),
          hint="features @ weights + bias, one prediction per row"),
    Check(name="mse_loss: value", task="1.2", function="mse_loss", points=2,
          judge=all_of(same("loss"), jit_agrees("jit", "loss")),
          hint="the MEAN of the squared differences, not their sum"),
    Check(name="fit_linear_closed_form: exact data", task="1.3", function="fit_linear_closed_form", points=2,
          judge=all_of(same("exact_weights", "weights"), same("exact_bias", "bias")),
          hint="append a column of ones so that the bias is the last weight"),
    Check(name="fit_linear_closed_form: noisy data", task="1.3", function="fit_linear_closed_form", points=1,
          judge=all_of(values("noisy_weights", "weights"), values("noisy_bias", "bias")),
          hint="the least-squares solution minimises the mean squared error", visibility="after_due_date"),
    Check(name="gradient_descent_step: one step", task="1.4", function="gradient_descent_step", points=3,
          judge=all_of(same("weights"), same("bias")),
          hint="param - learning_rate * gradient: step against the gradient"),
    Check(name="sigmoid: values", task="1.5", function="sigmoid", points=1,
          judge=same("moderate", "sigmoid of moderate inputs")),
    Check(name="sigmoid: stable for large inputs", task="1.5", function="sigmoid", points=1,
          judge=values("extreme", "sigmoid of +-30, +-100, +-1000 (0 or 1, never NaN)"),
          hint="exp(-|x|) never overflows; use it on both sides"),
    Check(name="sigmoid: gradient", task="1.5", function="sigmoid", points=1,
          judge=all_of(values("gradient", "jax.grad of sigmoid"),
                       values("extreme_gradient", "jax.grad at +-30, +-100, +-1000 (0, never NaN)",
                              hint="1 / (1 + exp(-x)) overflows for large negative x and its gradient is NaN there: "
                                   "compute both branches from z = exp(-|x|)"))),
    Check(name="logistic_loss: value", task="1.6", function="logistic_loss", points=2,
          judge=all_of(same("loss", hint="the MEAN over the examples of log(1 + exp(x)) - x * y"),
                       values("gradient", "jax.grad of the loss"),
                       values("gradient_at_0", "jax.grad at logits of exactly 0",
                              hint="max(x, 0) splits the gradient of a tie in two, so the max(x, 0) + log1p(exp(-|x|)) "
                                   "form is wrong at x = 0: use jnp.logaddexp(0, x) - x * y"))),
    Check(name="logistic_loss: stable for large logits", task="1.6", function="logistic_loss", points=1,
          judge=all_of(finite("extreme", "loss at logits +-50, +-200 is finite",
                              hint="log(1 + exp(x)) overflows for large x: use jnp.logaddexp(0, x)"),
                       values("extreme", "loss at logits +-50, +-200 (value)"))),
    Check(name="logistic_predict: labels", task="1.7", function="logistic_predict", points=2,
          judge=all_of(same("labels"), values("at_0", "labels at a logit of exactly 0 (sigmoid 0.5: label 0)",
                                              hint="0.5 is not > 0.5: a logit of exactly 0 predicts 0 (> 0, not >= 0)")),
          hint="1 where the logit is > 0, as int32"),
    Check(name="train_logistic: trained parameters", task="1.8", function="train_logistic", points=3,
          judge=all_of(same("weights", rtol=1e-2), same("bias", rtol=1e-2)),
          hint="start from zeros; each step subtracts learning_rate * gradient, `steps` times"),
    Check(name="standardize: train and held-out rows", task="1.9", function="standardize", points=2,
          judge=all_of(same("train_only", "standardize(train)"), same("train", "standardized train rows"),
                       same("other", "held-out rows (with the training statistics)")),
          hint="statistics from the training rows only; a zero std becomes 1"),
    hidden(task="1.1", function="linear_predict", keys=("predictions",)),
    hidden(task="1.2", function="mse_loss", keys=("loss",)),
    hidden(task="1.3", function="fit_linear_closed_form", keys=("noisy_weights", "noisy_bias")),
    hidden(task="1.4", function="gradient_descent_step", keys=("weights", "bias")),
    hidden(task="1.5", function="sigmoid", keys=("moderate",)),
    hidden(task="1.6", function="logistic_loss", keys=("loss", "gradient")),
    hidden(task="1.7", function="logistic_predict", keys=("labels",)),
    hidden(task="1.8", function="train_logistic", keys=("weights", "bias"), rtol=1e-2),
    hidden(task="1.9", function="standardize", keys=("train", "other")),
]
