"""Week-1 submissions written as students write them, for the tests of the instructor tools: the
exercise module with its stubs filled in. `HONEST_A` and `HONEST_B` are two different correct
solutions, each written independently of the other and of the reference; `renamed` is what a student
who copies makes of one (names and comments changed, the code kept)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE = "week1_regression.py"
EXERCISE = (REPO / "exercises" / MODULE).read_text()
SOLUTION = (REPO / "solutions" / MODULE).read_text()
STUB = re.compile(r'    raise NotImplementedError\("Task (\d\.\d+) [^\n]*\n')


def filled(bodies: dict[str, str]) -> str:
    """The exercise with the stub of each task in `bodies` ({"1.1": "    return ...\\n"}) replaced."""
    found = set(STUB.findall(EXERCISE))
    assert set(bodies) <= found, set(bodies) - found
    return STUB.sub(lambda match: bodies.get(match[1], match[0]), EXERCISE)


def reference_bodies() -> dict[str, str]:
    """The reference solution's answer to each task."""
    return {match[1]: match[2] for match in
            re.finditer(r"# BEGIN TASK (\d\.\d+)[^\n]*\n(.*?)    # END TASK\n", SOLUTION, re.S)}


HONEST_A = {
    "1.1": "    return jnp.dot(features, weights) + bias\n",
    "1.2": "    difference = predictions - targets\n    return jnp.mean(difference * difference)\n",
    "1.3": ("    rows = features.shape[0]\n    design = jnp.hstack([features, jnp.ones((rows, 1), dtype=features.dtype)])\n"
            "    theta = jnp.linalg.pinv(design) @ targets\n    return theta[:-1], theta[-1]\n"),
    "1.4": ("    weights, bias = params\n"
            "    loss = lambda w, b: mse_loss(linear_predict(w, b, features), targets)\n"
            "    grad_w, grad_b = jax.grad(loss, argnums=(0, 1))(weights, bias)\n"
            "    return weights - learning_rate * grad_w, bias - learning_rate * grad_b\n"),
    "1.5": "    return jax.nn.sigmoid(x)\n",
    "1.6": "    y = labels.astype(logits.dtype)\n    return jnp.mean(jax.nn.softplus(logits) - logits * y)\n",
    "1.7": "    scores = linear_predict(weights, bias, features)\n    return jnp.where(scores > 0, 1, 0).astype(jnp.int32)\n",
    "1.8": ("    n_features = features.shape[1]\n"
            "    w0 = jnp.zeros((n_features,), dtype=features.dtype)\n    b0 = jnp.array(0.0, dtype=features.dtype)\n\n"
            "    def body(i, carry):\n        w, b = carry\n"
            "        gw, gb = jax.grad(lambda w_, b_: logistic_loss(features @ w_ + b_, labels), argnums=(0, 1))(w, b)\n"
            "        return (w - learning_rate * gw, b - learning_rate * gb)\n\n"
            "    return jax.lax.fori_loop(0, steps, body, (w0, b0))\n"),
    "1.9": ("    mu = train_features.mean(axis=0)\n    sigma = train_features.std(axis=0)\n"
            "    sigma = jnp.where(sigma == 0, 1.0, sigma)\n    scaled = (train_features - mu) / sigma\n"
            "    if other_features is None:\n        return scaled\n    return scaled, (other_features - mu) / sigma\n"),
}

HONEST_B = {
    "1.1": "    return jnp.einsum('nd,d->n', features, weights) + bias\n",
    "1.2": "    return ((predictions - targets) ** 2).sum() / predictions.shape[0]\n",
    "1.3": ("    X = jnp.column_stack((features, jnp.ones(len(features), features.dtype)))\n"
            "    coef = jnp.linalg.solve(X.T @ X, X.T @ targets)\n    w, b = coef[:-1], coef[-1]\n    return w, b\n"),
    "1.4": ("    def objective(p):\n        return mse_loss(linear_predict(p[0], p[1], features), targets)\n"
            "    g = jax.grad(objective)(params)\n    new_w = params[0] - learning_rate * g[0]\n"
            "    new_b = params[1] - learning_rate * g[1]\n    return (new_w, new_b)\n"),
    "1.5": "    e = jnp.exp(-jnp.abs(x))\n    positive = 1 / (1 + e)\n    return jnp.where(x < 0, 1 - positive, positive)\n",
    "1.6": ("    labels = jnp.asarray(labels, logits.dtype)\n    per_example = jnp.logaddexp(0.0, logits) - labels * logits\n"
            "    return per_example.mean()\n"),
    "1.7": "    return jnp.int32(features @ weights + bias > 0)\n",
    "1.8": ("    grad_fn = jax.grad(lambda p: logistic_loss(linear_predict(p[0], p[1], features), labels))\n\n"
            "    def update(step_index, p):\n        g = grad_fn(p)\n"
            "        return (p[0] - learning_rate * g[0], p[1] - learning_rate * g[1])\n\n"
            "    start = (jnp.zeros_like(features[0]), jnp.zeros((), features.dtype))\n"
            "    return jax.lax.fori_loop(0, steps, update, start)\n"),
    "1.9": ("    centre = jnp.mean(train_features, 0, keepdims=True)\n    spread = jnp.std(train_features, 0, keepdims=True)\n"
            "    spread = jnp.where(spread > 0, spread, jnp.ones_like(spread))\n"
            "    def scale(rows):\n        return (rows - centre) / spread\n"
            "    return scale(train_features) if other_features is None else (scale(train_features), scale(other_features))\n"),
}

RENAMES = [("difference", "delta"), ("rows", "count"), ("design", "matrix_x"), ("theta", "beta"), ("grad_w", "dw"),
           ("grad_b", "db"), ("scores", "logit_values"), ("n_features", "dims"), ("w0", "start_w"), ("b0", "start_b"),
           ("body", "loop_body"), ("mu", "avg"), ("sigma", "sd"), ("scaled", "normed"), ("carry", "state")]


def renamed(source: str) -> str:
    """A copy of `source` with its local names and the comments of its tasks changed."""
    for old, new in RENAMES:
        source = re.sub(rf"\b{old}\b", new, source)
    return source.replace("    # TASK", "    # my answer to TASK")
