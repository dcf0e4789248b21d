"""Week 3's checks (convolution and max-pooling from scratch, Sobel kernels, filters, feature maps), one test each.

    python -m pytest grader/test_week3_convolutions.py [--target solutions|PATH]
"""

WEEK = 3


def test_check(check, graded):
    graded(check)
