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
# # Week 1: linear and logistic regression by gradient descent
#
# Every network in this course is trained the same way: write down a loss that measures how wrong
# the model is, compute its gradient with respect to the weights, and take a small step downhill.
# This week does that for the two simplest models there are: a line through points (linear
# regression) and a yes/no classifier (logistic regression, on the Pima diabetes table).
#
# This lesson runs your code in `exercises/week1_regression.py`. Until a function is written, the
# cell that needs it says which one to fill in.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from course import lessons, viz_training

week = lessons.load_week("week1_regression", data_note="made-up points, then the Pima diabetes table "
                         "(from $COURSE_DATA_DIR; a synthetic stand-in of its columns where it is missing)")

# %% [markdown]
# ## 1. Linear regression
#
# A linear model predicts $\hat y = x \cdot w + b$ for a feature vector $x \in \mathbb{R}^D$; for $N$
# examples stacked as rows of $X \in \mathbb{R}^{N \times D}$, $\hat y = X w + b$ (Task 1.1). The mean
# squared error (Task 1.2) is
#
# $$ L(w, b) = \frac{1}{N} \sum_{n=1}^{N} (\hat y_n - y_n)^2 . $$
#
# Some made-up data first: $y = 3x + 2$ plus noise.

# %%
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (80, 1)).astype(np.float32)
y = (3 * x[:, 0] + 2 + rng.normal(0, 0.4, 80)).astype(np.float32)
features, targets = jnp.asarray(x), jnp.asarray(y)

weights, bias = jnp.zeros(1), jnp.zeros(())
print("loss of the zero model:", float(week.mse_loss(week.linear_predict(weights, bias, features), targets)))

# %% [markdown]
# ### The closed form
#
# Appending a column of ones to $X$ makes the bias one more weight, $\tilde X = [X, 1]$,
# $\theta = [w; b]$. Setting the gradient $\nabla_\theta L = \frac{2}{N} \tilde X^T (\tilde X \theta - y)$
# to zero gives the *normal equations* $\tilde X^T \tilde X\, \theta = \tilde X^T y$, solved by least
# squares (Task 1.3):

# %%
closed_weights, closed_bias = week.fit_linear_closed_form(features, targets)
closed_loss = float(week.mse_loss(week.linear_predict(closed_weights, closed_bias, features), targets))
print(f"closed form: w = {float(closed_weights[0]):.3f}, b = {float(closed_bias):.3f}, loss {closed_loss:.4f}")

# %% [markdown]
# ### Gradient descent
#
# Most models have no closed form. Gradient descent starts anywhere and repeats
#
# $$ w \leftarrow w - \eta \frac{\partial L}{\partial w}, \qquad b \leftarrow b - \eta \frac{\partial L}{\partial b},
# \qquad \frac{\partial L}{\partial w} = \frac{2}{N} X^T (\hat y - y), \quad
# \frac{\partial L}{\partial b} = \frac{2}{N} \sum_n (\hat y_n - y_n) $$
#
# with a learning rate $\eta$. The original numpy notebook coded these derivatives by hand;
# `gradient_descent_step` (Task 1.4) lets `jax.grad` compute them. They agree:

# %%
def loss_of(params):
    return week.mse_loss(week.linear_predict(*params, features), targets)


auto_weights, auto_bias = jax.grad(loss_of)((weights, bias))
errors = week.linear_predict(weights, bias, features) - targets
print("dL/dw by hand:", 2 / len(y) * features.T @ errors, " by jax.grad:", auto_weights)
print("dL/db by hand:", 2 / len(y) * jnp.sum(errors), " by jax.grad:", auto_bias)

# %%
params, losses, lines = (weights, bias), [], {}
for step in range(60):
    losses.append(float(loss_of(params)))
    if step in (0, 3, 10, 59):
        lines[step] = params
    params = week.gradient_descent_step(params, features, targets, learning_rate=0.1)
print(f"after 60 steps: w = {float(params[0][0]):.3f}, b = {float(params[1]):.3f}, loss {float(loss_of(params)):.4f}")

figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
viz_training.plot_curve(left, losses, "mean squared error", "step")
left.axhline(closed_loss, color="gray", linestyle=":", label="closed form")
left.legend(fontsize=8, loc="upper right")  # again, now that it holds the closed form's line
grid = np.linspace(-1, 1, 2)
right.scatter(x[:, 0], y, s=10, color="gray")
for step, (line_weights, line_bias) in lines.items():
    right.plot(grid, grid * float(line_weights[0]) + float(line_bias), label=f"step {step}")
right.plot(grid, grid * float(closed_weights[0]) + float(closed_bias), color="black", linestyle=":", label="closed form")
right.set_title("the line during gradient descent")
right.legend()
lessons.show(figure)

# %% [markdown]
# Try a learning rate of 1.1 in the cell above: the steps overshoot and the loss grows. Too large
# a step diverges, too small a one crawls; choosing it is most of the craft of training.
#
# ## 2. Logistic regression
#
# For a yes/no label $y \in \{0, 1\}$ the model outputs a probability: the *logit* $z = x \cdot w + b$
# passes through the sigmoid (Task 1.5)
#
# $$ \sigma(z) = \frac{1}{1 + e^{-z}} \in (0, 1), \qquad \sigma'(z) = \sigma(z)(1 - \sigma(z)). $$
#
# The loss is the binary cross-entropy, the negative log-probability of the true label. Written
# with the logit it simplifies to a form that never takes the log of 0 (Task 1.6):
#
# $$ \ell(z, y) = -\big[y \log \sigma(z) + (1 - y) \log(1 - \sigma(z))\big] = \log(1 + e^{z}) - z y,
# \qquad \frac{\partial \ell}{\partial z} = \sigma(z) - y . $$
#
# The gradient is just "prediction minus truth", the same shape as linear regression's. A point
# is predicted positive when $\sigma(z) > 0.5$, that is when $z > 0$ (Task 1.7).

# %%
z = jnp.linspace(-8, 8, 200)
figure, axis = plt.subplots(figsize=(6, 3.5), layout="constrained")
axis.plot(z, week.sigmoid(z), label="sigmoid(z)")
axis.plot(z, [float(week.logistic_loss(jnp.array([value]), jnp.array([1]))) for value in z], label="loss if y = 1")
axis.plot(z, [float(week.logistic_loss(jnp.array([value]), jnp.array([0]))) for value in z], label="loss if y = 0")
axis.set_ylim(-0.1, 3)
axis.set_xlabel("logit z")
axis.grid(alpha=0.3)
axis.legend()
lessons.show(figure)
print("sigmoid(1000) =", float(week.sigmoid(jnp.array(1000.0))), " sigmoid(-1000) =", float(week.sigmoid(jnp.array(-1000.0))))

# %% [markdown]
# ### The diabetes table
#
# 768 patients, 8 measurements each (pregnancies, glucose, blood pressure, ...), and whether they
# developed diabetes. The original split 80% for training and 20% for testing, divided the features
# by the matrix norm and ran 500,000 gradient steps for 68.18% test accuracy. The features have very
# different scales (insulin in the hundreds, the pedigree function below 1), which makes the loss a
# long narrow valley that gradient descent crosses slowly. *Standardizing* each column with the
# training rows' mean $\mu$ and standard deviation $s$, $x \leftarrow (x - \mu) / s$ (Task 1.9), makes
# it round: a few hundred steps are enough (Task 1.8 trains).

# %%
train_features, train_labels = lessons.table("diabetes", "train")
test_features, test_labels = lessons.table("diabetes", "test")
print("train", train_features.shape, "test", test_features.shape, f"positives {train_labels.mean():.0%}")
train_z, test_z = week.standardize(jnp.asarray(train_features), jnp.asarray(test_features))
print("standardized training columns: mean", np.round(np.asarray(train_z.mean(0)), 3), "std", np.round(np.asarray(train_z.std(0)), 3))

# %%
def accuracy(weights, bias, features, labels):
    return float(jnp.mean(week.logistic_predict(weights, bias, features) == jnp.asarray(labels)))


steps_tried = [1, 3, 10, 30, 100, 500]
curves = {"train": [], "test": []}
for steps in steps_tried:
    weights, bias = week.train_logistic(train_z, jnp.asarray(train_labels), learning_rate=0.5, steps=steps)
    curves["train"].append(accuracy(weights, bias, train_z, train_labels))
    curves["test"].append(accuracy(weights, bias, test_z, test_labels))
print(f"after {steps_tried[-1]} steps: train accuracy {curves['train'][-1]:.2%}, test accuracy {curves['test'][-1]:.2%} "
      "(the original: 68.18% after 500,000 steps)")

figure, axis = plt.subplots(figsize=(6, 3.5), layout="constrained")
for split, values in curves.items():
    axis.plot(steps_tried, values, marker="o", label=split)
axis.set_xscale("log")
axis.set_xlabel("gradient-descent steps")
axis.set_ylabel("accuracy")
axis.grid(alpha=0.3)
axis.legend()
lessons.show(figure)

# %% [markdown]
# ## Your turn
#
# Fill in the tasks of `exercises/week1_regression.py`:
#
# | task | function | what |
# |---|---|---|
# | 1.1 | `linear_predict` | $X w + b$ |
# | 1.2 | `mse_loss` | mean of the squared errors |
# | 1.3 | `fit_linear_closed_form` | least squares on $[X, 1]$ |
# | 1.4 | `gradient_descent_step` | `jax.grad` of the loss, one step downhill |
# | 1.5 | `sigmoid` | $1/(1+e^{-x})$ without overflow |
# | 1.6 | `logistic_loss` | $\log(1+e^z) - zy$ with `jnp.logaddexp` |
# | 1.7 | `logistic_predict` | 1 where the logit is positive |
# | 1.8 | `train_logistic` | gradient descent in a `lax.fori_loop` |
# | 1.9 | `standardize` | z-scores with the training statistics |
#
# Rerun this notebook as you go, then grade your work:
#
# ```
# course grade week1
# ```
