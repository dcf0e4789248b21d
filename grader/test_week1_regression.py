"""Week 1's checks (linear regression, gradient descent and logistic regression), one test each.

    python -m pytest grader/test_week1_regression.py [--target solutions|PATH]
"""

WEEK = 1


def test_check(check, graded):
    graded(check)
