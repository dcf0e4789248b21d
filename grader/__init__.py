"""The course's autograder: `course grade [WEEK ...] [--target exercises|solutions|PATH]`.

How a grade is computed (the engine, `grader/runner.py`, reads top to bottom):
  1. The reference solutions run the checks' *probes* in a trusted child process; the resulting
     *evidence* (arrays, numbers, strings) is cached by content hash (`grader/reference.py`).
  2. The graded code runs the same probes in a sandboxed child process per week, with a time and a
     memory limit, no access to the solutions, and no way to write outside its scratch folder
     (`grader/child_run.py`, `grader/sandbox.py`).
  3. This process (which never imports graded code) loads both evidence records without unpickling,
     and each check's *judge* compares them, awarding partial credit per property (`grader/checks.py`).

The instructor tools (publish, release, the Gradescope autograder, batch grading) are in
`grader/instructor/`, above both the student library (`course`) and the engine.
"""
