"""Tests of ``analysis/common/io.py``: atomic writes and copies leave either the old or the new file."""

from __future__ import annotations

import stat

import pytest

from analysis.common import io as aio


def test_atomic_copy_copies_bytes_with_ordinary_mode(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 100)
    dst = aio.atomic_copy(src, tmp_path / "out" / "dst.bin")
    assert dst.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(dst.stat().st_mode) == 0o644
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.bin"]  # no temporary left


def test_atomic_copy_failure_keeps_the_old_file(tmp_path, monkeypatch):
    dst = tmp_path / "dst.txt"
    dst.write_text("old")
    src = tmp_path / "src.txt"
    src.write_text("new")

    def broken(a, b):
        with open(b, "w") as fh:
            fh.write("ne")  # partly written, then the copy fails
        raise OSError("disk full")

    monkeypatch.setattr(aio.shutil, "copyfile", broken)
    with pytest.raises(OSError, match="disk full"):
        aio.atomic_copy(src, dst)
    assert dst.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.txt", "src.txt"]
