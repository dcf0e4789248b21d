"""The course's autograder: `course grade [WEEK ...] [--target exercises|solutions|PATH]`.

How a grade is computed (see README-style notes in `grader/runner.py`):
  1. The reference solutions run the checks' *probes* in a trusted child process; the resulting
     *evidence* (arrays, numbers, strings) is cached by content hash.
  2. The graded code runs the same probes in a fresh child process per week, with a time and a memory
     limit, no access to the solutions, and no way to fork or to write outside its scratch folder.
  3. This process (which never imports graded code) loads both evidence files without unpickling,
     and each check's *judge* compares them, awarding partial credit per property.
"""
