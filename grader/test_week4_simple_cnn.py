"""Week 4's checks (SimpleCNN's layers and forward pass), one test each.

    python -m pytest grader/test_week4_simple_cnn.py [--target solutions|PATH]
"""

WEEK = 4


def test_check(check, graded):
    graded(check)
