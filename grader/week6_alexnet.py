"""Week 6 checks: resizing to 227, AlexNet's feature-map size, AlexNet (probed at 99x99 inputs
to stay fast: the layers are those at 227, and the last feature map is 2x2, so the flatten order shows),
and data parallelism: a batch split over 8 CPU devices, the state replicated, one step from there."""


from grader import models, steps
from grader.checks import Check
from grader.judges import all_of, hidden, same
from grader.probing import LibraryAnswer, attempt, block, normal

SMALL = 99  # a small input whose last feature map is 2x2 (67, the smallest AlexNet accepts, leaves 1x1)
# final_map_size for the sizes the probes use (a table, so that __init__ is graded on its own).
STAND_INS = {"final_map_size": {67: 1, 99: 2, 131: 3, 227: 6}.__getitem__}
ALEXNET = models.ModelSpec("AlexNet", "6.3", "6.4", input_shape=(SMALL, SMALL, 3), kwargs={"input_size": SMALL},
                           other_kwargs={"num_classes": 7, "dropout_rate": 0.3, "input_size": 131}, stand_ins=STAND_INS)


def setup(week):
    return {**models.setup(week, [ALEXNET]), **steps.one_device_step()}


def probe_resize_227(week, given):
    images = normal(60, (2, 8, 6, 3))
    return {"resized": attempt(lambda: block(week.resize_227(images)))}


def probe_final_map_size(week, given):
    return {f"size_{size}": attempt(lambda size=size: int(week.final_map_size(size))) for size in (67, 99, 131, 227, 300)}


# The training loop places batches and state itself; for this week's tasks that is withheld
# (grader.probing.withhold).
LIBRARY_ANSWERS = (LibraryAnswer("course.sharding", "shard_batch", "6.5 (shard_batch)"),
                   LibraryAnswer("course.sharding", "replicate", "6.6 (replicate)"))

PROBES = {
    "resize_227": probe_resize_227,
    "final_map_size": probe_final_map_size,
    **models.probes(ALEXNET),
    "data_parallel": steps.probe_data_parallel,
}

CHECKS = [
    Check(name="resize_227: bilinear resize", task="6.1", function="resize_227", points=2, judge=same("resized"),
          hint="transforms.resize(images, 227)"),
    Check(name="final_map_size: sizes", task="6.2", function="final_map_size", points=2,
          judge=all_of(*[same(f"size_{size}", f"input {size}", shape_weight=0, value_weight=1) for size in (67, 99, 131, 227, 300)]),
          hint="C1: (s - 11) // 4 + 1, then three times (s - 3) // 2 + 1"),
    *models.checks(ALEXNET),
    *steps.data_parallel_checks("6.5", "6.6"),
    hidden(task="6.1", function="resize_227", keys=("resized",)),
]
