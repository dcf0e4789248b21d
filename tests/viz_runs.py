"""The `runs` fixture: lenet5 and simple_cnn trained one short epoch, once a test session.

A pytest plugin: each test file that needs the runs names it in `pytest_plugins`, and they all
share one training.
"""

import pytest

from course import registry, train


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Run folders of lenet5 (shapes_gray) and simple_cnn (shapes_rgb) trained one short epoch."""
    root = tmp_path_factory.mktemp("runs")
    recipes = registry.recipes()
    for name, dataset in (("lenet5", "shapes_gray"), ("simple_cnn", "shapes_rgb")):
        train.fit(recipes[name], model_name=name, dataset=dataset, epochs=1, max_train_examples=500,
                  out_dir=root / name, progress=False)
    return root
