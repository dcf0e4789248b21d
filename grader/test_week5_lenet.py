"""Week 5's checks (padding, +1/-1 targets, the two losses, LeNet-5 and its ReLU variant), one test each.

    python -m pytest grader/test_week5_lenet.py [--target solutions|PATH]
"""

WEEK = 5


def test_check(check, graded):
    graded(check)
