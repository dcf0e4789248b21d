#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder's image. It installs the course
# (the wheel in wheels/, with no solutions in it) into ROOT/venv, with its dependencies pinned to the
# versions that recorded the reference evidence (requirements.txt), and bubblewrap for the sandbox.
# ROOT is /autograder; $COURSE_AUTOGRADER_ROOT moves it for a dry run. $COURSE_AUTOGRADER_PYTHON
# names the Python to use (3.11 or newer); by default the newest one found, else Ubuntu's python3.11.
set -euo pipefail
ROOT="${COURSE_AUTOGRADER_ROOT:-/autograder}"
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

# First of all, every file of source/ becomes its owner's alone (root's on Gradescope): source/ holds
# the recorded answers (the public and hidden checks' evidence, the manifest with the hidden seed), the
# config and the wheel. The graded code runs as other users; they reach the Python environment
# installed below (which holds no answers: `course autograder` checks the wheel), never source/.
chmod -R go-rwx "$SOURCE"

supported() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

install_packages() {  # Debian and Ubuntu packages; needs root
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: cannot install $* without root" >&2
    return 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The sandbox. Where bubblewrap cannot run (many containers), the grader runs each child as a fresh
# unprivileged uid instead: that needs root, which Gradescope's harness has.
if ! command -v bwrap >/dev/null; then
  install_packages bubblewrap || echo "setup.sh: no bubblewrap; the unprivileged-user sandbox will be used" >&2
fi

PYTHON="${COURSE_AUTOGRADER_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && supported "$candidate"; then
      PYTHON="$(command -v "$candidate")"
      break
    fi
  done
fi
if [ -z "$PYTHON" ]; then  # Gradescope's Ubuntu 22.04 image has Python 3.10; its universe has 3.11
  install_packages python3.11 python3.11-venv
  PYTHON=python3.11
fi
supported "$PYTHON" || { echo "setup.sh: $PYTHON is older than Python 3.11, which the course needs" >&2; exit 1; }

"$PYTHON" -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$ROOT/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$SOURCE/requirements.txt" "$SOURCE"/wheels/*.whl

# The sandboxed children run as other users: they must be able to open (not list) every folder on
# the way to the interpreter and the environment.
for folder in "$(dirname "$("$ROOT/venv/bin/python" -c 'import os, sys; print(os.path.realpath(sys.executable))')")" \
              "$ROOT/venv"; do
  while [ "$folder" != "/" ]; do
    chmod o+x "$folder"
    folder="$(dirname "$folder")"
  done
done
chmod -R o+rX "$ROOT/venv"

# A last check that the grader can run here: its sandbox, and the recorded evidence of every week.
"$ROOT/venv/bin/python" -m grader.instructor.gradescope --root "$ROOT" --check
