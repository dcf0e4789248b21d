"""course.files.write_atomically: a file is whole or not there, whatever fails while it is written."""

import threading

import numpy as np
import pytest

from course.files import write_atomically


def test_text_bytes_and_a_writer_function_are_written_whole(tmp_path):
    write_atomically(tmp_path / "a.txt", "héllo\n")
    write_atomically(tmp_path / "b.bin", b"\x00\xff")
    write_atomically(tmp_path / "c.npz", lambda file: np.savez(file, values=np.arange(3)))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    with np.load(tmp_path / "c.npz") as archive:
        np.testing.assert_array_equal(archive["values"], np.arange(3))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.npz"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial_one(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")

    def half_then_fail(file):
        file.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_concurrent_writers_never_mix_their_files(tmp_path):
    path = tmp_path / "shared.txt"
    contents = [str(index) * 100_000 for index in range(8)]
    threads = [threading.Thread(target=write_atomically, args=(path, content)) for content in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert path.read_text() in contents and list(tmp_path.iterdir()) == [path]
