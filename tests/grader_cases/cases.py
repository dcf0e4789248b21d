"""Submissions for the grader's tests, each a solution module with small text patches.

A case is a dict: name, week, the task whose checks must lose points (bugs) or are touched (hostile
code), and patches: (old, new) pairs applied in order to the week's solution, each `old` found once.
"""

BUGS = [
    # week 1
    dict(name="mse summed instead of averaged", week=1, task="1.2",
         patches=[("return jnp.mean((predictions - targets) ** 2)", "return jnp.sum((predictions - targets) ** 2)")]),
    dict(name="closed form takes the bias from the wrong end", week=1, task="1.3",
         patches=[("return solution[:-1], solution[-1]", "return solution[1:], solution[0]")]),
    dict(name="gradient step with flipped sign", week=1, task="1.4",
         patches=[("grads = jax.grad(loss_of)(params)\n    return jax.tree.map(lambda param, grad: param - learning_rate",
                   "grads = jax.grad(loss_of)(params)\n    return jax.tree.map(lambda param, grad: param + learning_rate")]),
    dict(name="sigmoid branches swapped", week=1, task="1.5",
         patches=[("jnp.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))", "jnp.where(x >= 0, z / (1.0 + z), 1.0 / (1.0 + z))")]),
    dict(name="logistic loss summed", week=1, task="1.6",
         patches=[("return jnp.mean(jnp.logaddexp(0.0, logits)", "return jnp.sum(jnp.logaddexp(0.0, logits)")]),
    dict(name="predict thresholds the logit at 0.5", week=1, task="1.7",
         patches=[("> 0).astype(jnp.int32)", "> 0.5).astype(jnp.int32)")]),
    dict(name="train_logistic ascends the loss", week=1, task="1.8",
         patches=[("        return jax.tree.map(lambda param, grad: param - learning_rate * grad, params, grads)\n\n    initial",
                   "        return jax.tree.map(lambda param, grad: param + learning_rate * grad, params, grads)\n\n    initial")]),
    dict(name="standardize with ddof=1", week=1, task="1.9",
         patches=[("std = jnp.std(train_features, axis=0)", "std = jnp.std(train_features, axis=0, ddof=1)")]),
    # week 2
    dict(name="perceptron error sign flipped", week=2, task="2.1",
         patches=[("        error = label - prediction\n", "        error = prediction - label\n")]),
    dict(name="hidden layer uses tanh instead of sigmoid", week=2, task="2.2",
         patches=[('hidden = jax.nn.sigmoid(features @ params["hidden_weights"])',
                   'hidden = jnp.tanh(features @ params["hidden_weights"])')]),
    dict(name="backprop with flipped error sign", week=2, task="2.4",
         patches=[("output_error_term = (output - targets)", "output_error_term = (targets - output)")]),
    dict(name="softmax normalised over the wrong axis", week=2, task="2.5",
         patches=[("return exponentials / jnp.sum(exponentials, axis=axis, keepdims=True)",
                   "return exponentials / jnp.sum(exponentials, axis=0, keepdims=True)")]),
    dict(name="cross-entropy summed instead of averaged", week=2, task="2.6",
         patches=[("return -jnp.mean(true_class_log_probs)", "return -jnp.sum(true_class_log_probs)")]),
    dict(name="MLP dropout left on at eval", week=2, task="2.9", feedback="dropout is still on after model.eval()",
         patches=[("x = self.dropout(nnx.relu(layer(x)))", "x = self.dropout(nnx.relu(layer(x)), deterministic=False)")]),
    # week 3
    dict(name="conv2d forgets the bias", week=3, task="3.1",
         patches=[("outputs = outputs + bias", "outputs = outputs")]),
    dict(name="conv2d pads the batch axis instead of the width", week=3, task="3.1",
         patches=[("jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))",
                   "jnp.pad(images, ((padding, padding), (padding, padding), (0, 0), (0, 0)))")]),
    dict(name="max_pool2d off-by-one output size", week=3, task="3.2",
         patches=[("    check_pool_inputs(images, window)\n    out_height = (images.shape[1] - window) // stride + 1\n    out_width = (images.shape[2] - window) // stride + 1\n",
                   "    check_pool_inputs(images, window)\n    out_height = (images.shape[1] - window) // stride\n    out_width = (images.shape[2] - window) // stride\n")]),
    dict(name="sobel_y not transposed", week=3, task="3.3",
         patches=[("return sobel_x, sobel_x.T", "return sobel_x, sobel_x")]),
    dict(name="four filters in the wrong order", week=3, task="3.4",
         patches=[("return jnp.stack([f1, -f1, f3, -f3])", "return jnp.stack([f1, f3, -f1, -f3])")]),
    # week 4
    dict(name="SimpleCNN convolution without padding", week=4, task="4.1",
         patches=[("nnx.Conv(16, 25, kernel_size=(3, 3), padding=1, rngs=rngs)",
                   "nnx.Conv(16, 25, kernel_size=(3, 3), padding='VALID', rngs=rngs)")]),
    dict(name="SimpleCNN missing bias", week=4, task="4.1",
         patches=[("nnx.Linear(128, 64, rngs=rngs)", "nnx.Linear(128, 64, use_bias=False, rngs=rngs)")]),
    dict(name="SimpleCNN flattens in (C, H, W) order", week=4, task="4.2",
         patches=[("x = x.reshape(x.shape[0], -1)", "x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)")]),
    dict(name="SimpleCNN sigmoid instead of ReLU", week=4, task="4.2",
         patches=[("x = nnx.relu(self.fc1(x))", "x = nnx.sigmoid(self.fc1(x))")]),
    dict(name="SimpleCNN pooling stride off by one", week=4, task="4.2",
         patches=[("x = layers.max_pool(nnx.relu(self.conv2(x)), window=2, stride=2)",
                   "x = layers.max_pool(nnx.relu(self.conv2(x)), window=2, stride=3)")]),
    dict(name="SimpleCNN reuses one PRNG key for dropout", week=4, task="4.2",
         patches=[("return self.fc3(self.dropout(x))", "return self.fc3(self.dropout(x, rngs=nnx.Rngs(0)))")]),
    # week 5
    dict(name="pm1 targets 0/1 instead of -1/+1", week=5, task="5.2",
         patches=[("return 2.0 * jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) - 1.0",
                   "return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)")]),
    dict(name="LeNet5 output without tanh", week=5, task="5.6",
         patches=[("return jnp.tanh(self.output(x))", "return self.output(x)")]),
    dict(name="LeNet5ReLU log-softmax over the batch axis", week=5, task="5.8",
         patches=[("return nnx.log_softmax(self.output(x))", "return nnx.log_softmax(self.output(x), axis=0)")]),
]

# Tasks whose checks run each other's code (a model's __init__ and its __call__): a bug in one
# changes what the other's checks see, so their cases are never graded in one submission.
DEPENDENT_TASKS = [{"2.8", "2.9"}, {"4.1", "4.2"}, {"5.5", "5.6"}, {"5.7", "5.8"}, {"6.3", "6.4"}]

ALTERNATIVES = [
    dict(name="mse and logistic loss from optax", week=1,
         patches=[("import jax.numpy as jnp\n", "import jax.numpy as jnp\nimport optax\n"),
                  ("return jnp.mean((predictions - targets) ** 2)", "return optax.squared_error(predictions, targets).mean()"),
                  ("    labels = labels.astype(logits.dtype)\n    return jnp.mean(jnp.logaddexp(0.0, logits) - logits * labels)",
                   "    return optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype)).mean()")]),
    dict(name="cross-entropy from optax, softmax via log-sum-exp", week=2,
         patches=[("    shifted = logits - jnp.max(logits, axis=-1, keepdims=True)\n    log_probs = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))\n    true_class_log_probs = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]\n    return -jnp.mean(true_class_log_probs)",
                   "    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()"),
                  ("    shifted = logits - jnp.max(logits, axis=axis, keepdims=True)\n    exponentials = jnp.exp(shifted)\n    return exponentials / jnp.sum(exponentials, axis=axis, keepdims=True)",
                   "    return jnp.exp(logits - jax.scipy.special.logsumexp(logits, axis=axis, keepdims=True))")]),
    dict(name="MLP with other attribute names and one dropout per layer", week=2,
         patches=[("self.hidden_layers = nnx.List(", "self.blocks = nnx.List("),
                  ("self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)\n        self.output_layer = nnx.Linear(sizes[-1], num_classes, rngs=rngs)",
                   "self.drops = nnx.List([nnx.Dropout(dropout_rate, rngs=rngs) for _ in hidden])\n        self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)"),
                  ("        for layer in self.hidden_layers:\n            x = self.dropout(nnx.relu(layer(x)))\n        return self.output_layer(x)",
                   "        for layer, drop in zip(self.blocks, self.drops):\n            x = drop(nnx.relu(layer(x)))\n        return self.head(x)")]),
    dict(name="conv2d as a loop over kernel cells", week=3,
         patches=[("    patches = jnp.stack(slices, axis=3)  # (N, H_out, W_out, KH * KW, C_in)\n    weights = kernels.reshape(kernel_height * kernel_width, in_channels, out_channels)\n    outputs = jnp.einsum(\"nhwkc,kco->nhwo\", patches, weights)",
                   "    outputs = 0.0\n    for index, window in enumerate(slices):\n        i, j = divmod(index, kernel_width)\n        outputs = outputs + jnp.tensordot(window, kernels[i, j], axes=([3], [0]))")]),
    dict(name="SimpleCNN with SAME padding, nnx.max_pool and layers defined in another order", week=4,
         patches=[("        self.conv1 = nnx.Conv(3, 16, kernel_size=(3, 3), padding=1, rngs=rngs)\n        self.conv2 = nnx.Conv(16, 25, kernel_size=(3, 3), padding=1, rngs=rngs)\n        self.fc1 = nnx.Linear(8 * 8 * 25, 128, rngs=rngs)\n        self.fc2 = nnx.Linear(128, 64, rngs=rngs)",
                   "        self.fc2 = nnx.Linear(128, 64, rngs=rngs)\n        self.conv2 = nnx.Conv(16, 25, kernel_size=(3, 3), padding='SAME', rngs=rngs)\n        self.conv1 = nnx.Conv(3, 16, kernel_size=(3, 3), padding='SAME', rngs=rngs)\n        self.fc1 = nnx.Linear(1600, 128, rngs=rngs)"),
                  ("x = layers.max_pool(nnx.relu(self.conv1(images)), window=2, stride=2)",
                   "x = nnx.max_pool(nnx.relu(self.conv1(images)), (2, 2), strides=(2, 2))"),
                  ("x = x.reshape(x.shape[0], -1)", "x = jnp.reshape(x, (x.shape[0], 8 * 8 * 25))"),
                  ("import jax\n", "import jax\nimport jax.numpy as jnp\n")]),
    dict(name="nll loss with one-hot masks", week=5,
         patches=[("    true_class = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)\n    return -jnp.mean(true_class)",
                   "    mask = jax.nn.one_hot(labels, log_probs.shape[-1])\n    return -jnp.sum(mask * log_probs) / log_probs.shape[0]")]),
]

# More bugs, one per class of mistake the grader must see. "feedback": words the lost points'
# feedback must contain (what tells the student where to look).
BUGS += [
    # week 1
    dict(name="linear_predict forgets the bias", week=1, task="1.1",
         patches=[("    return features @ weights + bias\n", "    return features @ weights\n")]),
    dict(name="mse_loss takes the root of the mean", week=1, task="1.2",
         patches=[("return jnp.mean((predictions - targets) ** 2)", "return jnp.sqrt(jnp.mean((predictions - targets) ** 2))")]),
    dict(name="closed form without the column of ones", week=1, task="1.3",
         patches=[("    solution, *_ = jnp.linalg.lstsq(augmented, targets)", "    solution, *_ = jnp.linalg.lstsq(features, targets)")]),
    dict(name="gradient step without the learning rate", week=1, task="1.4",
         patches=[("grads = jax.grad(loss_of)(params)\n    return jax.tree.map(lambda param, grad: param - learning_rate * grad",
                   "grads = jax.grad(loss_of)(params)\n    return jax.tree.map(lambda param, grad: param - grad")]),
    dict(name="sigmoid as 1 / (1 + exp(-x))", week=1, task="1.5", feedback="jax.grad at +-30",
         patches=[("    z = jnp.exp(-jnp.abs(x))\n    return jnp.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))",
                   "    return 1.0 / (1.0 + jnp.exp(-x))")]),
    dict(name="logistic loss in the max form, wrong gradient at 0", week=1, task="1.6", feedback="logits of exactly 0",
         patches=[("return jnp.mean(jnp.logaddexp(0.0, logits) - logits * labels)",
                   "return jnp.mean(jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits))) - logits * labels)")]),
    dict(name="logistic loss overflows for large logits", week=1, task="1.6", feedback="is finite",
         patches=[("return jnp.mean(jnp.logaddexp(0.0, logits) - logits * labels)",
                   "return jnp.mean(jnp.log(1.0 + jnp.exp(logits)) - logits * labels)")]),
    dict(name="logistic_predict with >= 0", week=1, task="1.7", feedback="logit of exactly 0",
         patches=[("> 0).astype(jnp.int32)", ">= 0).astype(jnp.int32)")]),
    dict(name="train_logistic starts from ones", week=1, task="1.8",
         patches=[("initial = (jnp.zeros(features.shape[1], features.dtype)", "initial = (jnp.ones(features.shape[1], features.dtype)")]),
    dict(name="standardize held-out rows with their own mean", week=1, task="1.9",
         patches=[("return (train_features - mean) / std, (other_features - mean) / std",
                   "return (train_features - mean) / std, (other_features - jnp.mean(other_features, axis=0)) / std")]),
    # week 2
    dict(name="perceptron moves the bias by the first coordinate", week=2, task="2.1",
         patches=[("bias + learning_rate * error)", "bias + learning_rate * error * point[0])")]),
    dict(name="two_layer_forward output without sigmoid", week=2, task="2.2",
         patches=[('output = jax.nn.sigmoid(hidden @ params["output_weights"])', 'output = hidden @ params["output_weights"]')]),
    dict(name="softmax without subtracting the maximum", week=2, task="2.5", feedback="softmax of [1000",
         patches=[("    shifted = logits - jnp.max(logits, axis=axis, keepdims=True)\n", "    shifted = logits\n")]),
    dict(name="cross-entropy overflows for large logits", week=2, task="2.6", feedback="finite for logits",
         patches=[("    shifted = logits - jnp.max(logits, axis=-1, keepdims=True)\n", "    shifted = logits\n")]),
    dict(name="MLP ignores hidden", week=2, task="2.8", feedback="built as MLP(hidden=(32, 16)",
         patches=[("sizes = (in_features, *hidden)", "sizes = (in_features, 256, 128, 64)")]),
    dict(name="MLP hard-codes 10 outputs", week=2, task="2.8", feedback="out_features expected 7, got 10",
         patches=[("nnx.Linear(sizes[-1], num_classes, rngs=rngs)", "nnx.Linear(sizes[-1], 10, rngs=rngs)")]),
    dict(name="MLP ignores dropout_rate", week=2, task="2.8", feedback="dropout rates: expected [0.3], got [0.2]",
         patches=[("self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)", "self.dropout = nnx.Dropout(0.2, rngs=rngs)")]),
    dict(name="MLP dropout on the logits", week=2, task="2.9", feedback="the outputs in yours",
         patches=[("            x = self.dropout(nnx.relu(layer(x)))\n        return self.output_layer(x)",
                   "            x = nnx.relu(layer(x))\n        return self.dropout(self.output_layer(x))")]),
    dict(name="MLP applies ReLU to the logits", week=2, task="2.9", feedback="after the last layer",
         patches=[("        return self.output_layer(x)\n", "        return nnx.relu(self.output_layer(x))\n")]),
    # week 3
    dict(name="conv2d flips the kernel", week=3, task="3.1",
         patches=[("weights = kernels.reshape(", "weights = kernels[::-1, ::-1].reshape(")]),
    dict(name="conv2d pads only the height", week=3, task="3.1",
         patches=[("jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))",
                   "jnp.pad(images, ((0, 0), (padding, padding), (0, 0), (0, 0)))")]),
    dict(name="max_pool2d takes the mean", week=3, task="3.2",
         patches=[("return jnp.max(jnp.stack(slices), axis=0)", "return jnp.mean(jnp.stack(slices), axis=0)")]),
    dict(name="sobel_x with ones in the middle row", week=3, task="3.3",
         patches=[("sobel_x = jnp.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]", "sobel_x = jnp.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]")]),
    dict(name="four filters: f3 not transposed", week=3, task="3.4",
         patches=[("    f3 = f1.T\n", "    f3 = f1\n")]),
    dict(name="feature_maps pools the map before the ReLU", week=3, task="3.5", feedback="max-pool of the ReLU map",
         patches=[("pooled = max_pool2d(relu, window=2, stride=2)", "pooled = max_pool2d(conv, window=2, stride=2)")]),
    dict(name="feature_maps without the ReLU", week=3, task="3.5", feedback="max(conv, 0)",
         patches=[("    relu = jax.nn.relu(conv)\n", "    relu = conv\n")]),
    # week 4
    dict(name="SimpleCNN hard-codes 10 outputs", week=4, task="4.1", feedback="built as SimpleCNN(num_classes=7)",
         patches=[("self.fc3 = nnx.Linear(64, num_classes, rngs=rngs)", "self.fc3 = nnx.Linear(64, 10, rngs=rngs)")]),
    dict(name="SimpleCNN dropout on the logits", week=4, task="4.2", feedback="the outputs in yours",
         patches=[("return self.fc3(self.dropout(x))", "return self.dropout(self.fc3(x))")]),
    dict(name="SimpleCNN dropout before fc2 instead of fc3", week=4, task="4.2", feedback="feeds 'fc3' in the reference",
         patches=[("        x = nnx.relu(self.fc2(x))\n        return self.fc3(self.dropout(x))",
                   "        x = nnx.relu(self.fc2(self.dropout(x)))\n        return self.fc3(x)")]),
    dict(name="SimpleCNN conv1 without ReLU", week=4, task="4.2", feedback="first layer whose input differs is 'conv2'",
         patches=[("layers.max_pool(nnx.relu(self.conv1(images))", "layers.max_pool(self.conv1(images)")]),
    # week 5
    dict(name="pad_to_32 pads the channels too", week=5, task="5.1",
         patches=[("    return transforms.pad(images, 2)\n", "    return jnp.pad(images, ((0, 0), (2, 2), (2, 2), (2, 2)))\n")]),
    dict(name="pm1_targets ignores num_classes", week=5, task="5.2",
         patches=[("jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) - 1.0", "jax.nn.one_hot(labels, 10, dtype=jnp.float32) - 1.0")]),
    dict(name="nll loss without the minus", week=5, task="5.4",
         patches=[("    return -jnp.mean(true_class)\n", "    return jnp.mean(true_class)\n")]),
    dict(name="LeNet5 C5 with SAME padding", week=5, task="5.5",
         patches=[('self.c5 = nnx.Conv(16, 120, kernel_size=(5, 5), padding="VALID"', 'self.c5 = nnx.Conv(16, 120, kernel_size=(5, 5), padding="SAME"')]),
    dict(name="LeNet5 ReLU after C5", week=5, task="5.6", feedback="first layer whose input differs is 'f6'",
         patches=[("x = jnp.tanh(self.c5(x))", "x = nnx.relu(self.c5(x))")]),
    dict(name="LeNet5ReLU flattens in (C, H, W) order", week=5, task="5.8", feedback="flatten in (N, H, W, C) order",
         patches=[("x = x.reshape(x.shape[0], -1)  # (N, 400)", "x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # (N, 400)")]),
    dict(name="LeNet5ReLU C5 without bias", week=5, task="5.7",
         patches=[("self.c5 = nnx.Linear(5 * 5 * 16, 120, rngs=rngs)", "self.c5 = nnx.Linear(5 * 5 * 16, 120, use_bias=False, rngs=rngs)")]),
    # week 6
    dict(name="resize to 224", week=6, task="6.1",
         patches=[("return transforms.resize(images, 227)", "return transforms.resize(images, 224)")]),
    dict(name="final_map_size forgets one pooling", week=6, task="6.2",
         patches=[("    for _ in range(3):\n", "    for _ in range(2):\n")]),
    dict(name="AlexNet ignores dropout_rate", week=6, task="6.3", feedback="dropout rates: expected [0.3], got [0.5]",
         patches=[("self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)", "self.dropout = nnx.Dropout(0.5, rngs=rngs)")]),
    dict(name="AlexNet hard-codes 10 outputs", week=6, task="6.3", feedback="num_classes=7",
         patches=[("self.fc3 = nnx.Linear(500, num_classes, rngs=rngs)", "self.fc3 = nnx.Linear(500, 10, rngs=rngs)")]),
    dict(name="AlexNet flattens in (C, H, W) order", week=6, task="6.4", feedback="flatten in (N, H, W, C) order",
         patches=[("x = x.reshape(x.shape[0], -1)  # (N, 9216)", "x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # (N, 9216)")]),
    dict(name="AlexNet dropout after fc1's ReLU instead of before fc1", week=6, task="6.4", feedback="'fc1', 'fc2' in the reference",
         patches=[("x = nnx.relu(self.fc1(self.dropout(x)))", "x = self.dropout(nnx.relu(self.fc1(x)))")]),
    dict(name="AlexNet dropout before fc3 instead of fc2", week=6, task="6.4", feedback="feeds 'fc1', 'fc2' in the reference",
         patches=[("        x = nnx.relu(self.fc2(self.dropout(x)))\n        return self.fc3(x)",
                   "        x = nnx.relu(self.fc2(x))\n        return self.fc3(self.dropout(x))")]),
    dict(name="AlexNet pools after c4 instead of c5", week=6, task="6.4", feedback="first layer whose input differs is 'c5'",
         patches=[("        x = nnx.relu(self.c4(x))\n        x = layers.max_pool(nnx.relu(self.c5(x)), window=3, stride=2)",
                   "        x = layers.max_pool(nnx.relu(self.c4(x)), window=3, stride=2)\n        x = nnx.relu(self.c5(x))")]),
    # training code: steps, keys, augmentation, devices (issue 15)
    dict(name="train_step never applies the update", week=2, task="2.10", feedback="parameters after one Adam step",
         patches=[("    optimizer.update(model, grads)\n    return {\"loss\": loss", "    return {\"loss\": loss")]),
    dict(name="train_step differentiates the mean logit, not the loss", week=2, task="2.10",
         patches=[("(loss, logits), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)",
                   "(loss, logits), grads = nnx.value_and_grad(\n        lambda model: (model(images).mean(), model(images)), has_aux=True)(model)\n    loss = cross_entropy(logits, labels)")]),
    dict(name="functional train_step keeps the old dropout keys", week=2, task="2.10",
         feedback="the dropout keys did not move on",
         patches=[("@nnx.jit\ndef train_step(", "def train_step("),
                  ("    def loss_of(model):\n        logits = model(images)\n        return cross_entropy(logits, labels), logits\n\n    (loss, logits), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)\n    optimizer.update(model, grads)\n    return {\"loss\": loss, \"accuracy\": accuracy(logits, labels)}",
                   "    graph, state = nnx.split((model, optimizer))\n    metrics, params, opt_state = _pure_step(graph, state, images, labels)\n    nnx.update(model, params)\n    nnx.update(optimizer, opt_state)\n    return metrics\n\n\n@functools.partial(jax.jit, static_argnums=0)\ndef _pure_step(graph, state, images, labels):\n    model, optimizer = nnx.merge(graph, state)\n\n    def loss_of(model):\n        logits = model(images)\n        return cross_entropy(logits, labels), logits\n\n    (loss, logits), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)\n    optimizer.update(model, grads)\n    return {\"loss\": loss, \"accuracy\": accuracy(logits, labels)}, nnx.state(model, nnx.Param), nnx.state(optimizer)"),
                  ("import jax\n", "import functools\n\nimport jax\n")]),
    dict(name="eval_step takes a gradient step", week=2, task="2.11", feedback="eval_step changed the model's state",
         patches=[("    logits = model(images)\n    return {\"loss\": cross_entropy(logits, labels), \"accuracy\": accuracy(logits, labels)}",
                   "    loss, grads = nnx.value_and_grad(lambda model: cross_entropy(model(images), labels))(model)\n    nnx.update(model, jax.tree.map(lambda param, grad: param - 0.01 * grad, nnx.state(model, nnx.Param), grads))\n    logits = model(images)\n    return {\"loss\": cross_entropy(logits, labels), \"accuracy\": accuracy(logits, labels)}")]),
    dict(name="random_crop_flip flips upside down", week=4, task="4.3", feedback="mirror along the width axis",
         patches=[("crop[:, ::-1, :], crop)", "crop[::-1, :, :], crop)")]),
    dict(name="random_crop_flip shifts by up to 2 * padding", week=4, task="4.3",
         patches=[("(2,), 0, 2 * padding + 1)", "(2,), 0, 4 * padding + 1)"),
                  ("padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))",
                   "padded = jnp.pad(images, ((0, 0), (2 * padding, 2 * padding), (2 * padding, 2 * padding), (0, 0)))")]),
    dict(name="shuffled_batches gives every step the same key", week=4, task="4.4", feedback="a different key for every step",
         patches=[("return batches, jax.random.split(steps_key, num_batches)",
                   "return batches, jnp.stack([steps_key] * num_batches)")]),
    dict(name="shuffled_batches keeps the natural order", week=4, task="4.4", feedback="natural order",
         patches=[("order = jax.random.permutation(order_key, num_examples)", "order = jnp.arange(num_examples)")]),
    dict(name="augment also at evaluation", week=4, task="4.5", feedback="evaluation must see the real images",
         patches=[("return random_crop_flip(key, images, padding=2) if training else images",
                   "return random_crop_flip(key if key is not None else jax.random.key(0), images, padding=2)")]),
    # key discipline and batching judged as properties (issue 28); at_most: the points the task may keep
    dict(name="random_crop_flip returns its images unchanged", week=4, task="4.3", at_most=0,
         feedback="nothing was augmented",
         patches=[("    return jax.vmap(shift_and_flip)(jax.random.split(key, batch), padded)", "    return images")]),
    dict(name="random_crop_flip shifts both axes by one offset", week=4, task="4.3",
         feedback="the row and the column shift are always equal",
         patches=[("top, left = jax.random.randint(shift_key, (2,), 0, 2 * padding + 1)",
                   "top = left = jax.random.randint(shift_key, (), 0, 2 * padding + 1)")]),
    dict(name="shuffled_batches reshapes to (batch_size, num_batches)", week=4, task="4.4",
         feedback="expected int[12, 8]",
         patches=[(".reshape(num_batches, batch_size)", ".reshape(batch_size, num_batches)")]),
    dict(name="shuffled_batches draws the order with randint", week=4, task="4.4",
         feedback="an example repeats", not_feedback="natural order",
         patches=[("order = jax.random.permutation(order_key, num_examples)",
                   "order = jax.random.randint(order_key, (num_examples,), 0, num_examples)")]),
]

ALTERNATIVES += [
    dict(name="logistic_predict as sigmoid > 0.5, sigmoid from jax.nn, standardize with keepdims", week=1,
         patches=[("    return (linear_predict(weights, bias, features) > 0).astype(jnp.int32)",
                   "    return (sigmoid(linear_predict(weights, bias, features)) > 0.5).astype(jnp.int32)"),
                  ("    z = jnp.exp(-jnp.abs(x))\n    return jnp.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))",
                   "    return jax.nn.sigmoid(x)"),
                  ("    mean = jnp.mean(train_features, axis=0)\n    std = jnp.std(train_features, axis=0)",
                   "    mean = jnp.mean(train_features, axis=0, keepdims=True)\n    std = jnp.std(train_features, axis=0, keepdims=True)")]),
    dict(name="MLP hidden layers in an nnx.data list", week=2,
         patches=[("self.hidden_layers = nnx.List(", "self.hidden_layers = nnx.data(")]),
    dict(name="MLP as one nnx.Sequential", week=2,
         patches=[("        sizes = (in_features, *hidden)\n        self.hidden_layers = nnx.List(\n            [nnx.Linear(size_in, size_out, rngs=rngs) for size_in, size_out in zip(sizes[:-1], sizes[1:])]\n        )\n        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)\n        self.output_layer = nnx.Linear(sizes[-1], num_classes, rngs=rngs)",
                   "        sizes = (in_features, *hidden)\n        blocks = []\n        for size_in, size_out in zip(sizes[:-1], sizes[1:]):\n            blocks += [nnx.Linear(size_in, size_out, rngs=rngs), nnx.relu, nnx.Dropout(dropout_rate, rngs=rngs)]\n        self.net = nnx.Sequential(*blocks, nnx.Linear(sizes[-1], num_classes, rngs=rngs))"),
                  ("        x = images.reshape(images.shape[0], -1)\n        for layer in self.hidden_layers:\n            x = self.dropout(nnx.relu(layer(x)))\n        return self.output_layer(x)",
                   "        return self.net(images.reshape(images.shape[0], -1))")]),
    dict(name="MLP dropout before the ReLU (the same thing)", week=2,
         patches=[("x = self.dropout(nnx.relu(layer(x)))", "x = nnx.relu(self.dropout(layer(x)))")]),
    dict(name="softmax and accuracy from library functions", week=2,
         patches=[("    shifted = logits - jnp.max(logits, axis=axis, keepdims=True)\n    exponentials = jnp.exp(shifted)\n    return exponentials / jnp.sum(exponentials, axis=axis, keepdims=True)",
                   "    return jax.nn.softmax(logits, axis=axis)"),
                  ("return jnp.mean(jnp.argmax(logits, axis=-1) == labels)",
                   "return jnp.sum(jnp.argmax(logits, axis=-1) == labels) / labels.shape[0]")]),
    dict(name="conv2d with lax.conv_general_dilated", week=3,
         patches=[("    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))\n",
                   "    outputs = jax.lax.conv_general_dilated(images, kernels, (stride, stride), [(padding, padding)] * 2,\n"
                   "                                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'))\n"
                   "    return outputs if bias is None else outputs + bias\n"
                   "    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))\n")]),
    dict(name="max_pool2d with lax.reduce_window", week=3,
         patches=[("    check_pool_inputs(images, window)\n    out_height",
                   "    check_pool_inputs(images, window)\n"
                   "    return jax.lax.reduce_window(images, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), 'VALID')\n"
                   "    out_height")]),
    dict(name="SimpleCNN with its layers in dicts and lax.reduce_window pooling", week=4,
         patches=[("        self.conv1 = nnx.Conv(3, 16, kernel_size=(3, 3), padding=1, rngs=rngs)\n        self.conv2 = nnx.Conv(16, 25, kernel_size=(3, 3), padding=1, rngs=rngs)",
                   "        self.convs = nnx.data({'first': nnx.Conv(3, 16, kernel_size=(3, 3), padding=1, rngs=rngs),\n"
                   "                               'second': nnx.Conv(16, 25, kernel_size=(3, 3), padding=1, rngs=rngs)})"),
                  ("        x = layers.max_pool(nnx.relu(self.conv1(images)), window=2, stride=2)  # (N, 16, 16, 16)\n        x = layers.max_pool(nnx.relu(self.conv2(x)), window=2, stride=2)  # (N, 8, 8, 25)",
                   "        pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')\n"
                   "        x = pool(nnx.relu(self.convs['first'](images)))\n        x = pool(nnx.relu(self.convs['second'](x)))"),
                  ("import jax\n", "import jax\nimport jax.numpy as jnp\n")]),
    dict(name="SimpleCNN with dropout before fc2's ReLU (the same thing)", week=4,
         patches=[("        x = nnx.relu(self.fc2(x))\n        return self.fc3(self.dropout(x))",
                   "        x = nnx.relu(self.dropout(self.fc2(x)))\n        return self.fc3(x)")]),
    dict(name="pad_to_32 with jnp.pad, pm1 targets with jnp.where", week=5,
         patches=[("    return transforms.pad(images, 2)\n", "    return jnp.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))\n"),
                  ("return 2.0 * jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) - 1.0",
                   "return jnp.where(jax.nn.one_hot(labels, num_classes) > 0, 1.0, -1.0).astype(jnp.float32)")]),
    dict(name="LeNet5ReLU with jax.nn.log_softmax and an explicit reshape", week=5,
         patches=[("return nnx.log_softmax(self.output(x))", "return jax.nn.log_softmax(self.output(x), axis=-1)"),
                  ("x = x.reshape(x.shape[0], -1)  # (N, 400)", "x = jnp.reshape(x, (x.shape[0], 5 * 5 * 16))  # (N, 400)")]),
    dict(name="AlexNet with convolutions in an nnx.List and the classifier in an nnx.Sequential", week=6,
         patches=[("        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)\n        self.fc1 = nnx.Linear(fc1_inputs, 4096, rngs=rngs)\n        self.fc2 = nnx.Linear(4096, 500, rngs=rngs)\n        self.fc3 = nnx.Linear(500, num_classes, rngs=rngs)",
                   "        self.classifier = nnx.Sequential(\n"
                   "            nnx.Dropout(dropout_rate, rngs=rngs), nnx.Linear(fc1_inputs, 4096, rngs=rngs), nnx.relu,\n"
                   "            nnx.Dropout(dropout_rate, rngs=rngs), nnx.Linear(4096, 500, rngs=rngs), nnx.relu,\n"
                   "            nnx.Linear(500, num_classes, rngs=rngs))"),
                  ("        x = nnx.relu(self.fc1(self.dropout(x)))\n        x = nnx.relu(self.fc2(self.dropout(x)))\n        return self.fc3(x)",
                   "        return self.classifier(x)")]),
    dict(name="functional train and eval steps: nnx.split/nnx.merge under jax.jit", week=2,
         patches=[("@nnx.jit\ndef train_step(", "def train_step("),
                  ("    def loss_of(model):\n        logits = model(images)\n        return cross_entropy(logits, labels), logits\n\n    (loss, logits), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)\n    optimizer.update(model, grads)\n    return {\"loss\": loss, \"accuracy\": accuracy(logits, labels)}",
                   "    graph, state = nnx.split((model, optimizer))\n    metrics, state = _pure_train_step(graph, state, images, labels)\n    nnx.update((model, optimizer), state)\n    return metrics\n\n\n@functools.partial(jax.jit, static_argnums=0)\ndef _pure_train_step(graph, state, images, labels):\n    model, optimizer = nnx.merge(graph, state)\n    model_graph, params, rest = nnx.split(model, nnx.Param, ...)\n\n    def loss_of(params, rest):\n        model = nnx.merge(model_graph, params, rest, copy=True)\n        logits = model(images)\n        return cross_entropy(logits, labels), (logits, nnx.state(model, nnx.Not(nnx.Param)))\n\n    (loss, (logits, rest)), grads = jax.value_and_grad(loss_of, has_aux=True)(params, rest)\n    nnx.update(model, rest)  # the dropout keys, moved on\n    optimizer.update(model, grads)\n    return {\"loss\": loss, \"accuracy\": accuracy(logits, labels)}, nnx.state((model, optimizer))"),
                  ("@nnx.jit\ndef eval_step(", "@functools.partial(jax.jit, static_argnums=0)\ndef _pure_eval_step(graph, state, images, labels):\n    logits = nnx.merge(graph, state)(images)\n    return {\"loss\": cross_entropy(logits, labels), \"accuracy\": accuracy(logits, labels)}\n\n\ndef eval_step("),
                  ("    logits = model(images)\n    return {\"loss\": cross_entropy(logits, labels), \"accuracy\": accuracy(logits, labels)}",
                   "    return _pure_eval_step(*nnx.split(model), images, labels)"),
                  ("import jax\n", "import functools\n\nimport jax\n")]),
    dict(name="train_step with an optax update on nnx.state", week=2,
         patches=[("    optimizer.update(model, grads)\n    return {\"loss\": loss",
                   "    params = nnx.as_pure(nnx.state(model, nnx.Param))\n    updates, opt_state = optimizer.tx.update(nnx.as_pure(grads), nnx.as_pure(optimizer.opt_state), params)\n    nnx.update(model, optax.apply_updates(params, updates))\n    jax.tree.map(lambda variable, value: variable.set_value(value), optimizer.opt_state, opt_state,\n                 is_leaf=lambda node: isinstance(node, nnx.Variable))\n    return {\"loss\": loss")]),
    dict(name="augment passes random_crop_flip a key split from its own", week=4,
         patches=[("return random_crop_flip(key, images, padding=2) if training else images",
                   "return random_crop_flip(jax.random.split(key)[1], images, padding=2) if training else images")]),
    dict(name="augmentation with batch-wide draws, order by jax.random.choice", week=4,
         patches=[("    def shift_and_flip(image_key, image):\n        shift_key, flip_key = jax.random.split(image_key)\n        top, left = jax.random.randint(shift_key, (2,), 0, 2 * padding + 1)\n        crop = jax.lax.dynamic_slice(image, (top, left, 0), (height, width, channels))\n        return jnp.where(jax.random.bernoulli(flip_key), crop[:, ::-1, :], crop)\n\n    return jax.vmap(shift_and_flip)(jax.random.split(key, batch), padded)",
                   "    shift_key, flip_key = jax.random.split(key)\n    offsets = jax.random.randint(shift_key, (batch, 2), 0, 2 * padding + 1)\n    flips = jax.random.bernoulli(flip_key, 0.5, (batch, 1, 1, 1))\n    crops = jax.vmap(lambda image, offset: jax.lax.dynamic_slice(\n        image, (offset[0], offset[1], 0), (height, width, channels)))(padded, offsets)\n    return jnp.where(flips, jnp.flip(crops, axis=2), crops)"),
                  ("order = jax.random.permutation(order_key, num_examples)",
                   "order = jax.random.choice(order_key, num_examples, (num_examples,), replace=False)")]),
]


# Hostile code replaces the body of linear_predict (task 1.1) unless the case says otherwise. An attack
# that works returns the right predictions (and so scores); one that the sandbox stops raises.
# Placeholders filled in by the tests: {REPO} the repository, {CACHE} the grader's cache (reference
# evidence), {GRADER_PID} the grading process, {MARKERS} a folder every user may write to, whose
# name also marks the processes an attack starts, {RESULTS_PATH} a results file to forge, {PORT} a
# port the test listens on, on the host's loopback.
LINEAR_PREDICT_BODY = "    return features @ weights + bias\n"


def _user_level_namespaces() -> tuple[str, ...]:
    from grader import sandbox

    return sandbox.user_level_namespaces()
SCORE = "    return features @ weights + bias\n"


def hostile(name, code, task="1.1", old=LINEAR_PREDICT_BODY, correct_elsewhere=True, levels=("bubblewrap", "user")):
    return dict(name=name, week=1, task=task, patches=[(old, code)], correct_elsewhere=correct_elsewhere,
                levels=levels)


EVIDENCE_PIPES = ("    import os\n    pipes = []\n    for fd in os.listdir('/proc/self/fd'):\n        try:\n"
                  "            if int(fd) > 2 and os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:'):\n"
                  "                pipes.append(int(fd))\n        except OSError:\n            pass\n")


def run_solution(source_expression):
    return (f"    namespace = {{}}\n    exec({source_expression}, namespace)\n"
            "    return namespace['linear_predict'](weights, bias, features)\n")


HOSTILE = [
    # the process itself
    hostile("infinite loop", "    while True:\n        pass\n"),
    hostile("os._exit(0)", "    import os\n    os._exit(0)\n"),
    hostile("sys.exit(0)", "    import sys\n    sys.exit(0)\n"),
    hostile("huge allocation", "    import numpy\n    hog = numpy.ones((2**40,), numpy.float32)\n    return hog[:1]\n"),
    hostile("megabytes of output", "    print('x' * 4_000_000)\n" + SCORE, task=None),
    hostile("sys.exit at import", "\n\nimport sys\nsys.exit(0)\nimport functools\n", task=None,
            old="\n\nimport functools\n", correct_elsewhere=False),
    # the grader's code and evidence inside the child
    hostile("monkeypatches the grader and pytest",
            "    import grader.checks, grader.evidence, grader.judges, pytest\n"
            "    grader.judges.compare = lambda *args: (True, True, '')\n"
            "    grader.checks.judge_check = lambda *args: None\n"
            "    pytest.approx = lambda *args, **kwargs: True\n"
            "    return bias\n"),
    hostile("always-equal object",
            "    class AlwaysEqual:\n        def __eq__(self, other):\n            return True\n"
            "        def __array__(self, dtype=None, copy=None):\n            import numpy\n"
            "            return numpy.array([self], dtype=object)\n    return AlwaysEqual()\n"),
    hostile("switches off the in-process guard, then reads the solutions",
            "    import sys\n    child = sys.modules.get('grader.child')\n"
            "    if child is not None:\n        child.BLOCKED_EVENTS.clear()\n"
            "        child._inside = lambda path, folders: False\n"
            + run_solution("open('{REPO}/solutions/week1_regression.py').read()")),
    hostile("forges an ok record for its own check",
            EVIDENCE_PIPES + "    from grader import evidence\n"
            "    record = evidence.dumps({'__status__': evidence.to_array('ok')})\n"
            "    for fd in pipes:\n        evidence.send(fd, evidence.RECORD, 'linear_predict', record)\n"
            "    os._exit(0)\n"),
    hostile("floods the evidence pipe with a frame of 2**62 bytes",
            EVIDENCE_PIPES + "    from grader import evidence\n"
            "    frame = evidence.MAGIC + evidence.RECORD + bytes([14]) + b'linear_predict' + (2**62).to_bytes(8, 'big')\n"
            "    for fd in pipes:\n        os.write(fd, frame + b'x' * 65536)\n    raise RuntimeError('flooded')\n"),
    hostile("leaves a FIFO and links named like evidence",
            "    import os\n    os.mkfifo('linear_predict.npz')\n    os.symlink('/etc/passwd', 'mse_loss.npz')\n"
            "    os.symlink('{REPO}/solutions', 'solutions')\n"
            + run_solution("open('solutions/week1_regression.py').read()")),
    # files the child must not see
    hostile("reads the reference solutions",
            "    try:\n        from solutions.week1_regression import linear_predict as reference\n"
            "    except ImportError:\n        import pathlib, sys\n"
            "        source = pathlib.Path(sys.executable).parents[2].joinpath('solutions', 'week1_regression.py').read_text()\n"
            "        namespace = {}\n        exec(source, namespace)\n        reference = namespace['linear_predict']\n"
            "    return reference(weights, bias, features)\n"),
    hostile("opens the solutions through dir_fd",
            "    import os\n    folder = os.open('{REPO}', os.O_RDONLY)\n"
            "    handle = os.open('solutions/week1_regression.py', os.O_RDONLY, dir_fd=folder)\n"
            + run_solution("os.read(handle, 1 << 20).decode()")),
    hostile("hard-links the solutions into its scratch folder",
            "    import os\n    os.link('{REPO}/solutions/week1_regression.py', 'stolen.py')\n"
            + run_solution("open('stolen.py').read()")),
    hostile("reads the solutions from .git",
            "    import os\n    entries = os.listdir('{REPO}/.git/objects')\n" + SCORE),
    hostile("reads the reference evidence in the cache",
            "    import os\n    found = [name for _, _, names in os.walk('{CACHE}') for name in names]\n"
            "    assert found, 'nothing found'\n" + SCORE),
    hostile("reads other runs' folders",
            "    import glob, os\n    mine = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))\n"
            "    others = [path for path in glob.glob('/tmp/course-grade-*/submission/*.py') + glob.glob('/tmp/course-grade-*/lib/*')\n"
            "              if not os.path.realpath(path).startswith(mine + '/') and os.listdir(os.path.dirname(path))]\n"
            "    assert others, 'no other run found'\n" + SCORE),
    hostile("reads the grader's memory and environment in /proc",
            "    environment = open('/proc/{GRADER_PID}/environ', 'rb').read()\n"
            "    memory = open('/proc/{GRADER_PID}/mem', 'rb')\n" + SCORE),
    # processes and signals
    hostile("signals the grader", "    import os\n    os.kill({GRADER_PID}, 0)\n" + SCORE),
    hostile("signals the grader through a pidfd",
            "    import os, signal\n    signal.pidfd_send_signal(os.pidfd_open({GRADER_PID}), 0)\n" + SCORE),
    hostile("prlimit on the grader",
            "    import resource\n    resource.prlimit({GRADER_PID}, resource.RLIMIT_CORE)\n" + SCORE),
    hostile("kills every process it can",  # the grader and classmates survive (see also the batch test)
            "    import os\n    os.kill(-1, 9)\n    raise RuntimeError('killed what it could')\n"),
    hostile("unaudited spawn of a daemon that forges the results later",
            "    import multiprocessing.util, os\n"
            "    script = 'sleep 3; echo forged > {RESULTS_PATH}; echo forged > {MARKERS}/daemon; sleep 30 # {MARKERS}'\n"
            "    multiprocessing.util.spawnv_passfds('/bin/sh', ['sh', '-c', 'setsid sh -c \"' + script + '\" &'], ())\n"
            "    raise RuntimeError('spawned')\n"),
    hostile("forks a daemon that outlives the grading",
            "    import os, time\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
            "            os.execv('/bin/sh', ['sh', '-c', 'sleep 3; echo alive > {MARKERS}/forked; sleep 30 # {MARKERS}'])\n"
            "        os._exit(0)\n    raise RuntimeError('forked')\n"),
    hostile("fork bomb",
            "    import os, time\n    made = 0\n    try:\n        for _ in range(5000):\n"
            "            if os.fork() == 0:\n                time.sleep(60)\n                os._exit(0)\n"
            "            made += 1\n    except OSError:\n        pass\n"
            "    assert made >= 5000, f'stopped after {made} processes'\n" + SCORE,
            correct_elsewhere=False),  # its sleeping children hold the process limit: later checks may crash
    # writes outside the scratch folder, caches, network
    hostile("writes outside its scratch folder",
            "    import os\n    for path in ('{MARKERS}/written', '/tmp/course-hostile-{GRADER_PID}', '/var/tmp/course-hostile-{GRADER_PID}',\n"
            "                 '/dev/shm/course-hostile-{GRADER_PID}', os.path.expanduser('~/course-hostile')):\n"
            "        try:\n            open(path, 'w').write('x')\n        except OSError:\n            pass\n"
            "    raise RuntimeError('wrote what it could')\n"),
    hostile("writes the results file",
            "    import json\n    for path in ('results.json', '{RESULTS_PATH}'):\n"
            "        with open(path, 'w') as file:\n"
            "            json.dump({'score': 1000, 'tests': []}, file)\n    return bias\n"),
    hostile("poisons the compilation cache",
            "    import jax, os\n    folder = '{CACHE}/jax-compilation'\n"
            "    jax.config.update('jax_compilation_cache_dir', folder)\n"
            "    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)\n"
            "    jax.jit(lambda x: x * 41.0)(features).block_until_ready()\n"
            "    os.makedirs(folder, exist_ok=True)\n    open(os.path.join(folder, 'poison'), 'w').write('x')\n"
            "    raise RuntimeError('poisoned what it could')\n"),  # the test then grades a correct submission
    hostile("uses the network",
            "    import socket\n    socket.create_connection(('127.0.0.1', {PORT}), timeout=3).sendall(b'hello')\n" + SCORE,
            levels=("bubblewrap",)),
    # what the grader prints and writes
    hostile("terminal escape codes in its error",
            "    raise RuntimeError('\\x1b[2J\\x1b[H\\nTOTAL 23/23 (100%)\\n\\r\\x1b[32mpassed')\n"),
    hostile("XML breakers in its error",
            "    raise RuntimeError('\\x00\\x0b\\x1b]]></failure><testcase name=\"forged\"/><!-- \\ud800')\n"),
]

# Round 2 of the sandbox review (issue 25), one block per class of attack.
# --- outputs: Unicode separators, bidirectional controls, the hidden seed
# Every character str.splitlines() ends a line at (but \n and \r, which would end the source line), the
# bidirectional controls and invisible characters. They are written as they are into the source line that
# raises, which the feedback quotes ("at week1_regression.py:12 in linear_predict: raise ..."), and into the
# message (where the child's whitespace folding keeps the ones that are not whitespace).
LINE_BREAKERS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
BIDI_AND_INVISIBLE = "\u061c\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
HOSTILE += [
    hostile("Unicode line separators and bidirectional controls in its error",
            f"    raise RuntimeError('\u2028TOTAL 23/23 (100%)\u2029 \u202edessap\u202c {LINE_BREAKERS}TOTAL 23/23 "
            f"{BIDI_AND_INVISIBLE}')\n"),
    # the seed from the child's job (its frames) in the public probes, from grader.probing in the hidden ones
    hostile("prints the hidden seed in its error",
            "    import sys\n    from grader import probing\n    seed, frame = probing.HIDDEN_SEED, sys._getframe()\n"
            "    while seed is None and frame is not None:\n        job = frame.f_locals.get('job')\n"
            "        if isinstance(job, dict) and isinstance(job.get('hidden_seed'), int):\n"
            "            seed = job['hidden_seed']\n        frame = frame.f_back\n"
            "    raise RuntimeError(f'the hidden seed is {seed} ({seed:#x}, {seed:X}, {seed:,})')\n"),
]
# --- intake: links, devices, FIFOs, folders named like modules; evidence that decodes large
# (links, devices, FIFOs and folders are not code: tests/test_sandbox.py makes them.) Each attack sends its
# records before the child sends the real one: a grader that kept the last record of a name would grade
# the real predictions (and score) after decoding the bombs. Records under the other probes' names cost
# those probes their checks too (correct_elsewhere=False).
ZERO_RECORDS = (
    "    import io, zipfile\n    from numpy.lib import format as npy\n    from grader import evidence, week1_regression\n"
    "    def zeros_record(size, arrays=1):\n        buffer = io.BytesIO()\n"
    "        with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as archive:\n"
    "            for index in range(arrays):\n"
    "                with archive.open(f'zeros{index}.npy', 'w') as member:\n"
    "                    npy.write_array_header_1_0(member, {'descr': '|u1', 'fortran_order': False, 'shape': (size,)})\n"
    "                    for _ in range(size // 2**22):\n                        member.write(bytes(2**22))\n"
    "                    member.write(bytes(size % 2**22))\n"
    "        return buffer.getvalue()\n"
    "    names = ['linear_predict'] + [name for name in week1_regression.PROBES if name != 'linear_predict']\n")


def sends_records(*records: str) -> str:
    """Code that sends each (name expression, record expression) of `records` to the evidence pipe."""
    return "".join(f"    for fd in pipes:\n        evidence.send(fd, evidence.RECORD, {name}, {record})\n"
                   for name, record in records)


HOSTILE += [
    hostile("sends 6 records small on the pipe that decode to 320 MiB each",
            EVIDENCE_PIPES + ZERO_RECORDS + "    record = zeros_record(320 * 2**20)\n"
            + sends_records(*[(f"names[{index}]", "record") for index in range(6)]) + SCORE,
            correct_elsewhere=False),
    hostile("sends records that together decode past the budget",  # each alone fits; their sum does not
            EVIDENCE_PIPES + ZERO_RECORDS + "    record = zeros_record(100 * 2**20, arrays=2)\n"
            + sends_records(*[(f"names[{index}]", "record") for index in range(4)]) + SCORE,
            correct_elsewhere=False),
    hostile("sends an array whose header claims 16 GiB",
            EVIDENCE_PIPES + ZERO_RECORDS + "    buffer = io.BytesIO()\n    with zipfile.ZipFile(buffer, 'w') as archive:\n"
            "        with archive.open('huge.npy', 'w') as member:\n"
            "            npy.write_array_header_1_0(member, {'descr': '<f8', 'fortran_order': False, 'shape': (2**31,)})\n"
            + sends_records(("'linear_predict'", "buffer.getvalue()")) + SCORE),
    hostile("sends a record of 50,000 tiny arrays",
            EVIDENCE_PIPES + ZERO_RECORDS + "    buffer = io.BytesIO()\n    tiny = evidence.dumps({'x': evidence.to_array(0)})\n"
            "    with zipfile.ZipFile(io.BytesIO(tiny)) as archive:\n        member = archive.read('x.npy')\n"
            "    with zipfile.ZipFile(buffer, 'w') as archive:\n        for index in range(50_000):\n"
            "            archive.writestr(f'a{index}.npy', member)\n"
            + sends_records(("'linear_predict'", "buffer.getvalue()")) + SCORE),
    hostile("sends 100,000 tiny records under names of its own",
            EVIDENCE_PIPES + ZERO_RECORDS + "    tiny = evidence.dumps({'x': evidence.to_array(0)})\n"
            "    for fd in pipes:\n        for index in range(100_000):\n"
            "            evidence.send(fd, evidence.RECORD, f'r{index}', tiny)\n" + SCORE),
    # the parent compares the listing of the model's layers with the reference's: 100,000 layers of as
    # many kinds made that comparison quadratic (hours)
    dict(name="sends a layer listing of 100,000 kinds of layers", week=4, task="4.1", correct_elsewhere=True,
         levels=("bubblewrap", "user"),
         patches=[("        # END TASK\n\n    def __call__(self, images: jax.Array) -> jax.Array:",
                   "        import grader.models, grader.probing\n\n"
                   "        def crafted(model, describe=grader.probing.describe):\n"
                   "            return describe(model) + [{'path': f'p{index}', 'kind': f'K{index}', 'settings': {},\n"
                   "                                       'params': {}} for index in range(100_000)]\n\n"
                   "        grader.models.describe = crafted\n"
                   "        # END TASK\n\n    def __call__(self, images: jax.Array) -> jax.Array:")]),
]
# --- self-reported properties and reaching for internals
# A step compiled once, a function that works under jax.jit, arrays placed over devices: only the graded
# process can observe these, and it can rewrite what reports them, so they are reported, never scored
# (README, "Sandbox"). Each attack below fakes one of them while keeping the right values: it must score
# what the honest submission without the property scores (its `honest` case, in SELF_REPORTED_HONEST:
# full marks, the advice in the feedback of `advice`'s tasks), and its report must carry an integrity
# flag containing `flag`. Both keep full marks everywhere, hence task None and correct_elsewhere.
CLOSURE_STEP = (
    "    def loss_of(model):\n        logits = model(images)\n        return cross_entropy(logits, labels), logits\n\n"
    "    (loss, logits), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)\n    optimizer.update(model, grads)\n"
    "    return {\"loss\": loss, \"accuracy\": accuracy(logits, labels)}",
    "    @nnx.jit\n    def step(model, optimizer):\n        def loss_of(model):\n            logits = model(images)\n"
    "            return cross_entropy(logits, labels), logits\n\n"
    "        (loss, logits), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)\n"
    "        optimizer.update(model, grads)\n        return {\"loss\": loss, \"accuracy\": accuracy(logits, labels)}\n\n"
    "    return step(model, optimizer)")
CROP_THAT_CANNOT_BE_JITTED = (  # a Python branch on the images' values: fine eagerly, an error under jax.jit
    "    batch, height, width, channels = images.shape\n",
    "    if not bool(jnp.all(jnp.isfinite(jnp.asarray(images, jnp.float32)))):\n"
    "        raise ValueError('the images must be finite')\n"
    "    batch, height, width, channels = images.shape\n")
SHARD_COPIES = ("return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(\"data\")))",
                "return jax.device_put(batch, NamedSharding(mesh, PartitionSpec()))")
REPLICATE_ON_ONE_DEVICE = ("return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))",
                           "return jax.device_put(tree, mesh.devices.flat[0])")

SELF_REPORTED_HONEST = [
    dict(name="train_step jits a closure over the batch at every call, eval_step not jitted", week=2,
         advice={"2.10": "not one compiled function", "2.11": "decorate eval_step itself with @nnx.jit"},
         patches=[("@nnx.jit\ndef train_step(", "def train_step("), CLOSURE_STEP,
                  ("@nnx.jit\ndef eval_step(", "def eval_step(")]),
    dict(name="random_crop_flip that cannot be jitted", week=4, advice={"4.3": "works under jax.jit"},
         patches=[CROP_THAT_CANNOT_BE_JITTED]),
    dict(name="shard_batch copies the batch to every device, replicate leaves the state on one device", week=6,
         advice={"6.5": "not split along its first axis", "6.6": "not a full copy on each of the mesh's 8 devices"},
         patches=[SHARD_COPIES, REPLICATE_ON_ONE_DEVICE]),
]

# Honest bugs of the same tasks, which lose points on values (the placement bugs above no longer do).
BUGS += [
    dict(name="shard_batch splits the second axis", week=6, task="6.5",
         patches=[("return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(\"data\")))",
                   "return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(None, \"data\")))")]),
    dict(name="replicate splits every array over the devices", week=6, task="6.6",
         patches=[("return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))",
                   "return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(\"data\")))")]),
    dict(name="shard_batch reshapes to (devices, rows per device, ...) first", week=6, task="6.5",
         feedback="place the batch as it is, without a reshape",
         patches=[("return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(\"data\")))",
                   "devices = mesh.devices.size\n    return jax.device_put(batch.reshape(devices, -1, *batch.shape[1:]), "
                   "NamedSharding(mesh, PartitionSpec(\"data\")))")]),
]


# A key used twice, read from the program the submission traces: advice, never scored (the graded
# code could hide it), since JAX's draws from one key look independent to any test of the outputs.
KEY_REUSE = [
    dict(name="random_crop_flip draws the shift and the flip from one key", week=4, task="4.3",
         advice="one key is used twice",
         patches=[("        shift_key, flip_key = jax.random.split(image_key)\n", "        shift_key = flip_key = image_key\n")]),
    dict(name="shuffled_batches draws the order and the step keys from the epoch key", week=4, task="4.4",
         advice="one key is used twice",
         patches=[("order_key, steps_key = jax.random.split(key)", "order_key = steps_key = key")]),
]


# Tasks handed to the course library's own code for them: not attempted, and told why.
DELEGATING = [
    dict(name="train_step built by course.steps", week=2, task="2.10", feedback="course.steps.make_train_step",
         patches=[("    # BEGIN TASK 2.10: nnx.value_and_grad of the batch's loss (has_aux=True keeps the logits), then optimizer.update\n",
                   "    # BEGIN TASK 2.10: nnx.value_and_grad of the batch's loss (has_aux=True keeps the logits), then optimizer.update\n"
                   "    from course.steps import make_train_step\n"
                   "    return make_train_step(cross_entropy, accuracy)(model, optimizer, images, labels)\n")]),
    dict(name="eval_step built at import by course.steps", week=2, task="2.11", feedback="course.steps.make_eval_step",
         patches=[("@nnx.jit\ndef eval_step(", "from course.steps import make_eval_step\n\n\n@nnx.jit\ndef eval_step("),
                  ("    logits = model(images)\n    return {\"loss\": cross_entropy(logits, labels), \"accuracy\": accuracy(logits, labels)}\n",
                   "    return _library_eval_step(model, images, labels)\n"),
                  ("MNIST_MEAN, MNIST_STD", "_library_eval_step = make_eval_step(cross_entropy, accuracy)\nMNIST_MEAN, MNIST_STD")]),
    dict(name="shard_batch from course.sharding", week=6, task="6.5", feedback="course.sharding.shard_batch",
         patches=[("    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(\"data\")))\n",
                   "    from course import sharding\n\n    return sharding.shard_batch(mesh, batch)\n")]),
    dict(name="replicate from course.sharding", week=6, task="6.6", feedback="course.sharding.replicate",
         patches=[("    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))\n",
                   "    from course.sharding import replicate as library_replicate\n\n    return library_replicate(mesh, tree)\n")]),
]


# A later week's models need more time and memory than week 1's linear_predict, which the other cases' limits
# are cut to (AlexNet does not fit in their 2 GiB at the user level).
LATER_WEEK_SETTINGS = {"probe_timeout_s": 60, "week_timeout_s": 300, "memory_bytes": 6 * 2**30}


def self_reported_attack(name, week, patches, honest, flag):
    assert any(case["name"] == honest for case in SELF_REPORTED_HONEST), honest
    return dict(name=name, week=week, task=None, patches=patches, correct_elsewhere=True,
                levels=("bubblewrap", "user"), honest=honest, flag=flag, settings=LATER_WEEK_SETTINGS)


UNCOUNTED_STEPS = [  # eager steps that put the grader's trace counter back after each call
    ("@nnx.jit\ndef train_step(",
     "def train_step(model, optimizer, images, labels):\n"
     "    \"\"\"Eager, and the grader's counter of the model's calls put back: it reads 'traced once'.\"\"\"\n"
     "    return _uncounted(_eager_train_step, model, optimizer, images, labels)\n\n\n"
     "def _uncounted(step, *args):\n"
     "    import sys\n"
     "    counter = sys.modules['grader.steps'].StepModel\n"
     "    calls = counter.calls\n"
     "    result = step(*args)\n"
     "    counter.calls = calls\n"
     "    return result\n\n\n"
     "def _eager_train_step("),
    ("@nnx.jit\ndef eval_step(",
     "def eval_step(model, images, labels):\n"
     "    return _uncounted(_eager_eval_step, model, images, labels)\n\n\n"
     "def _eager_eval_step("),
]
JIT_LEAVES_CROP_EAGER = (  # jax.jit patched at import: random_crop_flip, and only it, stays eager
    "from course import layers, transforms\n",
    "from course import layers, transforms\n\n"
    "_real_jit = jax.jit\n\n\n"
    "def _jit_but_not_random_crop_flip(function, *args, **kwargs):\n"
    "    if getattr(function, '__name__', '') == 'random_crop_flip':\n"
    "        return function\n"
    "    return _real_jit(function, *args, **kwargs)\n\n\n"
    "jax.jit = _jit_but_not_random_crop_flip\n")
FAKED_PLACEMENT = [  # shard_batch and replicate place nothing and make ArrayImpl.sharding say they did
    ("import jax\n", "import types\n\nimport jax\nimport jax.numpy as jnp\n"),
    ("    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(\"data\")))\n",
     "    array = jnp.asarray(batch)\n"
     "    rows = array.shape[0] // mesh.size\n"
     "    shards = [types.SimpleNamespace(data=array[i * rows:(i + 1) * rows], index=(slice(i * rows, (i + 1) * rows),))\n"
     "              for i in range(mesh.size)]\n"
     "    return _claim(array, NamedSharding(mesh, PartitionSpec('data')), shards)\n"),
    ("    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))\n",
     "    for leaf in jax.tree.leaves(tree):\n"
     "        _claim(leaf, NamedSharding(mesh, PartitionSpec()), None)\n"
     "    return tree\n\n\n"
     "_CLAIMS = {}  # id(array) -> (the array, the sharding it claims, the shards it claims)\n\n\n"
     "def _claim(array, sharding, shards):\n"
     "    _CLAIMS[id(array)] = (array, sharding, shards)\n"
     "    kind = type(array)\n"
     "    if '_claims' not in vars(kind):\n"
     "        real_sharding, real_shards = kind.sharding, kind.addressable_shards\n\n"
     "        def claimed_sharding(self):\n"
     "            return _CLAIMS[id(self)][1] if id(self) in _CLAIMS else real_sharding.__get__(self, kind)\n\n"
     "        def claimed_shards(self):\n"
     "            claim = _CLAIMS.get(id(self))\n"
     "            return claim[2] if claim and claim[2] is not None else real_shards.__get__(self, kind)\n\n"
     "        kind.sharding = property(claimed_sharding)\n"
     "        kind.addressable_shards = property(claimed_shards)\n"
     "        kind._claims = True\n"
     "    return array\n"),
]

HOSTILE += [
    self_reported_attack("eager steps that put the grader's trace counter back", 2, UNCOUNTED_STEPS,
                         honest="train_step jits a closure over the batch at every call, eval_step not jitted",
                         flag="reads sys.modules"),
    self_reported_attack("random_crop_flip that cannot be jitted, with jax.jit patched to leave it eager", 4,
                         [CROP_THAT_CANNOT_BE_JITTED, JIT_LEAVES_CROP_EAGER],
                         honest="random_crop_flip that cannot be jitted", flag="patches jax.jit"),
    self_reported_attack("shard_batch and replicate that place nothing and fake .sharding", 6, FAKED_PLACEMENT,
                         honest="shard_batch copies the batch to every device, replicate leaves the state on one device",
                         flag="overrides .sharding"),
]
# --- resources and the user level: memory over processes, /dev/shm, CPU, IPC, locks, setuid, relaunch
# {MEMORY_HOGS} is the number of 700 MiB processes that together exceed the tests' memory limit.
HOSTILE += [
    hostile("holds memory over several processes",
            "    import subprocess, sys\n"
            "    hog = 'import numpy, time; block = numpy.ones(700 * 2**20 // 8); time.sleep(8)'\n"
            "    hogs = [subprocess.Popen([sys.executable, '-c', hog]) for _ in range({MEMORY_HOGS})]\n"
            "    codes = [process.wait() for process in hogs]\n"
            "    assert codes == [0] * len(hogs), f'the memory hogs ended with {codes}'\n" + SCORE),
    hostile("holds RAM-backed files in /dev/shm",
            "    written = 0\n    for index in range(8):\n"
            "        with open(f'/dev/shm/course-hostile-shm-{GRADER_PID}-{index}', 'wb') as file:\n"
            "            for _ in range(3):\n                file.write(b'x' * 2**26)\n                written += 2**26\n"
            "    assert written == 24 * 2**26\n" + SCORE),
    hostile("leaves System V shared memory and lock files behind",
            "    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n"
            "    segment = libc.shmget(0, 64 * 2**20, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT\n"
            "    queue = libc.msgget(0, 0o1000 | 0o600)\n"
            "    for path in ('/run/lock/course-hostile-{GRADER_PID}', '/var/lock/course-hostile-lock-{GRADER_PID}'):\n"
            "        try:\n            open(path, 'w').write('x')\n        except OSError:\n            pass\n"
            "    raise RuntimeError(f'left segment {segment} and queue {queue}')\n"),
    hostile("runs a setuid program to become root",
            "    import subprocess\n"
            "    subprocess.Popen(['{MARKERS}/tools/setuid-sleep', '30'], start_new_session=True)\n"
            "    euid = subprocess.run(['{MARKERS}/tools/setuid-id', '-u'], capture_output=True, text=True).stdout.strip()\n"
            "    assert euid == '0', f'the setuid program ran as {euid!r}'\n" + SCORE),
    hostile("starts a process without the grader's limits",
            "    import subprocess, sys\n"
            "    code = 'import resource; print(*(resource.getrlimit(limit)[1] for limit in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE)))'\n"
            "    limits = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout.split()\n"
            "    assert '-1' in limits, f'the limits held: {limits}'\n" + SCORE),
    hostile("rewrites the grader's child code so that the next child runs without limits",
            "    import os, sys\n    path = sys.modules['grader.child'].__file__\n"
            "    source = open(path).read()\n"
            "    marker = 'def main() -> None:\\n'\n"
            "    spy = marker + '    import resource\\n    open(\"{MARKERS}/relaunched-%s\" % resource.getrlimit(resource.RLIMIT_AS)[1], \"w\").close()\\n'\n"
            "    with open(path, 'w') as file:\n        file.write(source.replace(marker, spy, 1))\n"
            "    os._exit(0)\n"),
    hostile("sends UDP to the host's loopback",
            "    import socket\n    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    sender.sendto(b'hello', ('127.0.0.1', {UDP_PORT}))\n"
            "    raise RuntimeError('sent: the test listener says whether it arrived')\n",
            levels=("bubblewrap", "user") if "net" in _user_level_namespaces() else ("bubblewrap",)),
]
