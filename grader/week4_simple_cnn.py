"""Week 4 checks: SimpleCNN's layers (`__init__`) and forward pass (`__call__`)."""

from grader import models

SIMPLE_CNN = models.ModelSpec("SimpleCNN", "4.1", "4.2", input_shape=(32, 32, 3))


def setup(week):
    return models.setup(week, [SIMPLE_CNN])


PROBES = {
    "SimpleCNN.init": models.probe_init(SIMPLE_CNN),
    "SimpleCNN.call": models.probe_call(SIMPLE_CNN),
}

CHECKS = models.checks(SIMPLE_CNN)
