"""course.weeks: the one table of weeks, and the weeks a command line names."""

import pytest

from course import lessons, registry, weeks
from grader import runner


def test_every_part_of_the_course_reads_the_one_table():
    assert runner.WEEKS is weeks.MODULES and lessons.LESSONS is weeks.MODULES
    assert registry.WEEK_MODULES == tuple(weeks.MODULES.values())


@pytest.mark.parametrize("text, number", [("3", 3), ("week3", 3), ("Week3", 3), ("week3_convolutions", 3), ("6", 6)])
def test_a_week_is_named_by_number_or_module(text, number):
    assert weeks.week_number(text) == number


@pytest.mark.parametrize("text", ["0", "7", "week10", "three", "", "week", "3a"])
def test_anything_else_is_refused_saying_what_a_week_is(text):
    with pytest.raises(ValueError, match="weeks are 1 to 6"):
        weeks.week_number(text)


def test_chosen_weeks_are_in_order_and_once_else_the_default():
    assert weeks.chosen(["4", "week1", "1"]) == [1, 4]
    assert weeks.chosen([]) == weeks.chosen(None) == [1, 2, 3, 4, 5, 6]
    assert weeks.chosen([], default=[1, 4]) == [1, 4] and weeks.chosen(["2"], default=[1, 4]) == [2]
