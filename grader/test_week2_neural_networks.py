"""Week 2's checks (the perceptron, a two-layer network, softmax, cross-entropy and the MLP), one test each.

    python -m pytest grader/test_week2_neural_networks.py [--target solutions|PATH]
"""

WEEK = 2


def test_check(check, graded):
    graded(check)
