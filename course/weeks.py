"""The six weeks of the course: the one table of their module names, and the weeks a command names."""

MODULES = {
    1: "week1_regression",
    2: "week2_neural_networks",
    3: "week3_convolutions",
    4: "week4_simple_cnn",
    5: "week5_lenet",
    6: "week6_alexnet",
}


def week_number(text: str) -> int:
    """1 from "1", "week1" or "week1_regression"; ValueError, saying what a week is, for anything else."""
    number = text.lower().removeprefix("week").split("_")[0]
    if not number.isdigit() or int(number) not in MODULES:
        raise ValueError(f"unknown week {text!r}; weeks are 1 to {len(MODULES)} (e.g. 3 or week3)")
    return int(number)


def chosen(texts: list[str] | None, default: list[int] | None = None) -> list[int]:
    """The weeks `texts` name (command-line arguments), in order and each once; `default` (all weeks
    unless given) when they name none."""
    named = sorted({week_number(text) for text in texts or []})
    return named or list(sorted(MODULES) if default is None else default)
