"""Week 4 checks: SimpleCNN's layers (`__init__`) and forward pass (`__call__`)."""

from grader import models

SIMPLE_CNN = models.ModelSpec("SimpleCNN", "4.1", "4.2", input_shape=(32, 32, 3), other_kwargs={"num_classes": 7})


def setup(week):
    return models.setup(week, [SIMPLE_CNN])


PROBES = models.probes(SIMPLE_CNN)

CHECKS = models.checks(SIMPLE_CNN)
