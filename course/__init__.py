"""Deep Into CNN: the shared library of the course (data, training engine, figures, command line)."""

__version__ = "0.1.0"
