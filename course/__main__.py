"""`python -m course` is the `course` command."""

import sys

from course.cli import main

sys.exit(main())
