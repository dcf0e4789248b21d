"""A child's output (its stdout and stderr together, `grader.sandbox`), read as it comes and kept
bounded: its first bytes and its last 2 KiB, and how much there was, so that a child that prints
gigabytes costs the grader nothing.
"""

TAIL_BYTES = 2048


class Output:
    """What is kept of one child's output: the first `keep` bytes and the last TAIL_BYTES."""

    def __init__(self, keep: int):
        self.keep = keep
        self.head, self.tail, self.total = bytearray(), b"", 0

    def read_from(self, stream) -> None:
        """Reads `stream` (the child's stdout) to its end (run in a thread)."""
        while chunk := stream.read(65536):
            self.total += len(chunk)
            if len(self.head) < self.keep:
                self.head.extend(chunk[: self.keep - len(self.head)])
            self.tail = (self.tail + chunk)[-TAIL_BYTES:]

    def text(self) -> str:
        """The output kept, and where more was sent, how much and its last 1,000 characters."""
        text = self.head.decode("utf-8", "replace")
        if self.total > len(self.head):
            text += f"\n[... {self.total:,} bytes of output in all; the rest is not kept ...]\n"
            text += self.tail.decode("utf-8", "replace")[-1000:]
        return text
