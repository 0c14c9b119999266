# A hostile archive (emulator fault knob `hostile`): traversal names, absolute
# paths, symlinks, duplicates, names of the control files, invalid UTF-8, a
# newline in a name and an entry whose declared size lies.
import errno
import json
import os
import stat

import pytest

from fshelpers import CONTROL, read, run_job, wait_for


@pytest.fixture
def hostile(mnt, emu):
    emu.set_faults(hostile=True)
    job = run_job(mnt)
    emu.set_faults()
    d = mnt.job(job)
    os.listdir(d)
    # The tree lists while the archive is verified; walk it once it is final
    # (.job.json changes when verification ends).
    wait_for(lambda: json.loads(read(os.path.join(d, ".job.json")))["archive"] == "ready",
             timeout=30, what="the archive verified")
    return mnt, job, d


def read_or_eio(p):
    """Content, or None when the read fails with EIO (allowed for the lying entry)."""
    try:
        return read(p, "rb")
    except OSError as e:
        assert e.errno == errno.EIO and os.path.basename(p) == "liar.csv", (p, e)
        return None


def walk_all(top):
    """(dirs, files) as absolute paths, links not followed."""
    dirs, files = [], []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirs += [os.path.join(dirpath, n) for n in dirnames]
        files += [os.path.join(dirpath, n) for n in filenames]
    return dirs, files


def test_nothing_escapes_the_job_dir(hostile):
    mnt, job, d = hostile
    real_top = os.path.realpath(d)
    dirs, files = walk_all(d)
    assert files, "the hostile archive shows no files at all"
    for p in dirs + files:
        rp = os.path.realpath(p)
        assert rp == real_top or rp.startswith(real_top + os.sep), (p, rp)
        assert ".." not in os.path.relpath(p, d).split(os.sep), p
    # nothing appeared beside the job directory or above the mount
    assert sorted(n for n in os.listdir(mnt.exports())) == sorted(["new", job])
    assert not os.path.exists(os.path.join(mnt.exports(), "x"))
    assert not os.path.exists(mnt.path("projects", "etc"))
    assert sorted(os.listdir(mnt.mountpoint)) == [".stats", "projects"]


def test_no_symlinks_links_are_plain_files(hostile):
    _, _, d = hostile
    dirs, files = walk_all(d)
    for p in dirs + files:
        st = os.lstat(p)
        assert not stat.S_ISLNK(st.st_mode), "a symlink appeared: %s" % p
        assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), p
    contents = {os.path.relpath(p, d): read_or_eio(p) for p in files}
    # symlink entries appear as regular files holding the link target's text
    assert contents.get("link") == b"/etc/passwd", contents.get("link")
    assert contents.get("up") == b"../../..", contents.get("up")


def test_control_files_are_never_shadowed(hostile):
    _, job, d = hostile
    assert read(os.path.join(d, "status")) == "success\n"
    assert read(os.path.join(d, ".wait")) == "success\n"
    info = json.loads(read(os.path.join(d, ".job.json")))
    assert info["job_id"] == job
    names = os.listdir(d)
    assert len(names) == len(set(names)), "duplicate names in the listing: %r" % names
    for c in CONTROL:
        assert names.count(c) == 1
    assert read(os.path.join(d, "_status")) == "not the status\n"
    assert read(os.path.join(d, "_.job.json")) == "{}\n"
    assert read(os.path.join(d, "_.wait")) == "no\n"


def test_traversal_and_absolute_names_are_neutralised(hostile):
    _, _, d = hostile
    assert read(os.path.join(d, "x")) == "escape 1"
    assert read(os.path.join(d, "events.csv")) == "legit"
    _, files = walk_all(d)
    where = {}
    for p in files:
        where.setdefault(read_or_eio(p), []).append(os.path.relpath(p, d))
    assert where[b"escape 1"] == ["x"]
    # the other escapes are shown inside the job dir (leading '/' and '..' dropped)
    # or dropped altogether
    assert where.get(b"escape 2", ["etc/evil"]) == ["etc/evil"], where.get(b"escape 2")
    assert where.get(b"absolute", ["abs/path.csv"]) == ["abs/path.csv"], where.get(b"absolute")


def test_duplicates_last_one_wins(hostile):
    _, _, d = hostile
    assert read(os.path.join(d, "dup.csv")) == "second copy wins\n"
    assert os.listdir(d).count("dup.csv") == 1
    assert os.stat(os.path.join(d, "dup.csv")).st_size == len("second copy wins\n")


def test_lying_size_never_gives_wrong_bytes(hostile):
    mnt, _, d = hostile
    p = os.path.join(d, "liar.csv")
    if not os.path.exists(p):
        return  # dropped: acceptable
    st = os.stat(p)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except OSError as e:
        assert e.errno == errno.EIO, e
        # the log says which entry failed and why, not only "Input/output error"
        lines = [ln for ln in mnt.read_log().splitlines() if "liar.csv" in ln and "read " in ln]
        assert lines and all("Input/output error: " in ln for ln in lines), lines
        return
    # if it reads at all it must read right, with the listed size
    assert data == b"x" * 4096, (len(data), data[:40])
    assert st.st_size == len(data), (st.st_size, len(data))


def test_invalid_utf8_names_are_escaped(hostile):
    _, _, d = hostile
    names = os.listdir(d)
    for n in names:
        n.encode("utf-8")  # listdir gives str: surrogates would fail here
    low = {n.lower(): n for n in names}
    assert "bad%ff%fe.csv" in low, names
    assert read(os.path.join(d, low["bad%ff%fe.csv"])) == "invalid utf-8 name\n"
    for raw in os.listdir(d.encode()):
        raw.decode("utf-8")  # every name the kernel sees is valid UTF-8


def test_every_file_reads_as_listed(hostile):
    """Every listed file reads exactly its listed size (or fails with EIO)."""
    _, _, d = hostile
    _, files = walk_all(d)
    for p in files:
        st = os.stat(p)
        try:
            data = read(p, "rb")
        except OSError as e:
            assert e.errno == errno.EIO, (p, e)
            continue
        assert len(data) == st.st_size, (p, st.st_size, len(data))
