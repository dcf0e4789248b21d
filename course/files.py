"""Writing a file so that it is whole or not there: the one write-then-rename of the project."""

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: str | os.PathLike, content: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Writes `content` to `path` through a partial file in the same folder, renamed into place.

    Inputs:
      path: the file to write; a file already there is replaced only once the new one is complete.
      content: text (UTF-8), bytes, or a function that writes to the open binary file (e.g. `np.savez`).

    A reader sees the old file or the new one, never half of one; the partial file (named after this
    process and thread, so that concurrent writers never share one) is removed when writing fails.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(partial, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode() if isinstance(content, str) else content)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
