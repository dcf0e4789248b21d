"""Week 6's checks (resizing to 227, AlexNet's feature-map size and AlexNet), one test each.

    python -m pytest grader/test_week6_alexnet.py [--target solutions|PATH]
"""

WEEK = 6


def test_check(check, graded):
    graded(check)
