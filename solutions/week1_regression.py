"""Week 1: linear and logistic regression from scratch.

Linear regression is fitted twice: by the normal equations (`fit_linear_closed_form`) and by gradient
descent, where `jax.grad` computes the gradient that the original numpy notebook derived by hand.
Logistic regression is then trained on the Pima diabetes table (`diabetes_experiment`).

How this differs from the PyTorch/numpy original:
  * The original divided the features by the matrix norm and ran 500,000 gradient-descent steps with
    learning rate 0.02, reaching 68.18% test accuracy. Here the features are z-scored with the
    training split's statistics (`standardize`), which conditions the problem so well that
    `LOGISTIC_CONFIG`'s few hundred steps reach a higher test accuracy in well under a second.
  * The loss is computed from logits (`logistic_loss`), not from sigmoid outputs, so it never takes
    the log of 0 however confident the model becomes.
  * The training loop runs inside one `jax.jit`-compiled `lax.fori_loop` instead of a Python loop.
"""

import functools

import jax
import jax.numpy as jnp

from course import data

# Full-batch gradient descent on z-scored features; see `diabetes_experiment`.
LOGISTIC_CONFIG = {"learning_rate": 0.5, "steps": 500}


def linear_predict(weights: jax.Array, bias: jax.Array, features: jax.Array) -> jax.Array:
    """Predictions of a linear model.

    Inputs:
      weights: (D,) one weight per feature.
      bias: () the intercept.
      features: (N, D) one example per row.

    Returns:
      (N,) `features @ weights + bias`.
    """
    # BEGIN TASK 1.1: one matrix-vector product plus the bias
    return features @ weights + bias
    # END TASK


def mse_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error, a scalar: mean over the N examples of (predictions - targets) ** 2.

    Inputs:
      predictions: (N,) model outputs.
      targets: (N,) true values.
    """
    # BEGIN TASK 1.2: average the squared differences
    return jnp.mean((predictions - targets) ** 2)
    # END TASK


def fit_linear_closed_form(features: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Least-squares linear fit by the normal equations.

    A column of ones appended to `features` turns the bias into one more weight; the least-squares
    solution of `[features, 1] @ [weights; bias] = targets` minimises `mse_loss`.

    Inputs:
      features: (N, D) one example per row.
      targets: (N,) true values.

    Returns:
      weights: (D,) and bias: () minimising the mean squared error.
    """
    # BEGIN TASK 1.3: append a column of ones, then solve the least-squares problem
    augmented = jnp.concatenate([features, jnp.ones((features.shape[0], 1), features.dtype)], axis=1)
    solution, *_ = jnp.linalg.lstsq(augmented, targets)
    return solution[:-1], solution[-1]
    # END TASK


def gradient_descent_step(
    params: tuple[jax.Array, jax.Array], features: jax.Array, targets: jax.Array, learning_rate: float
) -> tuple[jax.Array, jax.Array]:
    """One gradient-descent step on the mean squared error of a linear model.

    Inputs:
      params: (weights (D,), bias ()).
      features: (N, D) one example per row.
      targets: (N,) true values.
      learning_rate: step size.

    Returns:
      (weights, bias) after the step `param - learning_rate * d mse / d param`, the gradient taken
      with `jax.grad`.
    """
    # BEGIN TASK 1.4: differentiate the loss of (weights, bias) with jax.grad, then step downhill
    def loss_of(params):
        weights, bias = params
        return mse_loss(linear_predict(weights, bias, features), targets)

    grads = jax.grad(loss_of)(params)
    return jax.tree.map(lambda param, grad: param - learning_rate * grad, params, grads)
    # END TASK


def sigmoid(x: jax.Array) -> jax.Array:
    """The logistic function 1 / (1 + exp(-x)), elementwise, any shape.

    Computed from exp(-|x|), which lies in (0, 1], so it never overflows: the result is exactly 0 or 1
    (never NaN) for |x| as large as 1000.
    """
    # BEGIN TASK 1.5: use z = exp(-|x|); for x >= 0 return 1 / (1 + z), otherwise z / (1 + z)
    z = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))
    # END TASK


def logistic_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of 0/1 `labels` under `logits`, a scalar.

    For one example, -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))] simplifies to
    log(1 + exp(x)) - x y. `jnp.logaddexp(0, x)` computes log(1 + exp(x)) without overflow, and its
    gradient is right at x = 0 too, which is where training starts from zero weights. (The equal form
    max(x, 0) + log(1 + exp(-|x|)) - x y has the wrong gradient at exactly x = 0 in JAX, whose
    `maximum` splits the gradient of a tie in two.)

    Inputs:
      logits: (N,) scores; sigmoid(logits) is the predicted probability of label 1.
      labels: (N,) 0 or 1 (any numeric dtype).
    """
    # BEGIN TASK 1.6: average log(1 + exp(x)) - x * y, with jnp.logaddexp(0, x) for log(1 + exp(x))
    labels = labels.astype(logits.dtype)
    return jnp.mean(jnp.logaddexp(0.0, logits) - logits * labels)
    # END TASK


def logistic_predict(weights: jax.Array, bias: jax.Array, features: jax.Array) -> jax.Array:
    """Predicted labels (N,) int32: 1 where sigmoid(features @ weights + bias) > 0.5, else 0.

    Inputs are those of `linear_predict`.
    """
    # BEGIN TASK 1.7: sigmoid(logit) > 0.5 exactly when logit > 0
    return (linear_predict(weights, bias, features) > 0).astype(jnp.int32)
    # END TASK


@functools.partial(jax.jit, static_argnames="steps")
def train_logistic(
    features: jax.Array, labels: jax.Array, *, learning_rate: float, steps: int
) -> tuple[jax.Array, jax.Array]:
    """Logistic regression by full-batch gradient descent, starting from zero weights.

    Inputs:
      features: (N, D) one example per row (standardize them first).
      labels: (N,) 0 or 1.
      learning_rate: step size.
      steps: number of gradient-descent steps, each on the whole batch.

    Returns:
      weights: (D,) and bias: () after `steps` steps on `logistic_loss`.
    """
    # BEGIN TASK 1.8: take jax.grad of the loss of (weights, bias); loop the update with lax.fori_loop
    def loss_of(params):
        weights, bias = params
        return logistic_loss(linear_predict(weights, bias, features), labels)

    def step(_, params):
        grads = jax.grad(loss_of)(params)
        return jax.tree.map(lambda param, grad: param - learning_rate * grad, params, grads)

    initial = (jnp.zeros(features.shape[1], features.dtype), jnp.zeros((), features.dtype))
    return jax.lax.fori_loop(0, steps, step, initial)
    # END TASK


def standardize(train_features: jax.Array, other_features: jax.Array | None = None):
    """Z-scores features with the mean and standard deviation of the TRAINING rows.

    Statistics come from `train_features` only, so no information about the held-out rows leaks into
    training. A column with zero standard deviation is only centred (divided by 1, not by 0).

    Inputs:
      train_features: (N, D) training rows.
      other_features: (M, D) held-out rows to transform with the training statistics, or None.

    Returns:
      (N, D) standardized training rows if `other_features` is None, otherwise the pair
      ((N, D) standardized training rows, (M, D) held-out rows transformed the same way).
    """
    # BEGIN TASK 1.9: column means and stds of the training rows; replace a zero std by 1
    mean = jnp.mean(train_features, axis=0)
    std = jnp.std(train_features, axis=0)
    std = jnp.where(std > 0, std, 1.0)
    if other_features is None:
        return (train_features - mean) / std
    return (train_features - mean) / std, (other_features - mean) / std
    # END TASK


def diabetes_experiment(data_dir: str | None = None) -> dict[str, float]:
    """Trains logistic regression on the diabetes table's training split and evaluates it.

    The split is the original's (80% train by pandas `sample(frac=0.8, random_state=0)`, 20% test);
    features are z-scored with the training statistics; training uses `LOGISTIC_CONFIG`.

    Inputs:
      data_dir: folder with the course data, or None for `$COURSE_DATA_DIR`.

    Returns:
      {"train_accuracy": ..., "test_accuracy": ...} as fractions in [0, 1].
    """
    train_features, train_labels = data.load("diabetes", "train", data_dir=data_dir)
    test_features, test_labels = data.load("diabetes", "test", data_dir=data_dir)
    train_features, test_features = standardize(jnp.asarray(train_features), jnp.asarray(test_features))
    weights, bias = train_logistic(train_features, jnp.asarray(train_labels), **LOGISTIC_CONFIG)

    def accuracy_on(features, labels):
        return float(jnp.mean(logistic_predict(weights, bias, features) == jnp.asarray(labels)))

    return {
        "train_accuracy": accuracy_on(train_features, train_labels),
        "test_accuracy": accuracy_on(test_features, test_labels),
    }
