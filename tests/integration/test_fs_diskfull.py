# Full disk: cache_dir on a small tmpfs that fills up in the middle of a
# download.  The write fails cleanly, the partial file is removed, the job
# shows the error (.job.json and a log line), the download succeeds once
# space is back (byte for byte against the emulator's archive), and nothing
# else in the cache is damaged.  Needs root (mount -t tmpfs).
import glob
import os

import pytest

from fshelpers import emu_archive, job_info, md5s, read, run_job, submit, wait_end, wait_for, \
    walk_files, zip_entries

TMPFS_SIZE = 6 << 20
LEFT_FREE = 400 << 10  # what the filler leaves: less than the big archive needs


@pytest.fixture
def small_disk(tmpfs):
    return tmpfs("smalldisk", TMPFS_SIZE)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave):
    """Writes a filler file so that about `leave` bytes stay free; returns its path."""
    filler = os.path.join(path, "filler")
    n = free_bytes(path) - leave
    assert n > 0
    with open(filler, "wb") as f:
        f.write(b"\0" * n)
    return filler


@pytest.mark.slow
def test_disk_full_mid_download_then_space_back(small_disk, mount_factory, emu):
    cache = os.path.join(small_disk, "cache")
    m = mount_factory(cache_dir=cache)
    # a first job fully cached: it must come through untouched
    first = run_job(m)
    first_files = md5s(walk_files(m.job(first)))
    first_zip = read(m.archive(first), "rb")
    assert first_zip == emu_archive(emu, first)

    emu.config(rows=20000, compresslevel=0)  # a ~1.2 MB archive, stored
    filler = fill(small_disk, LEFT_FREE)
    big = submit(m)
    assert wait_end(m, big) == "success\n"
    size = [j for j in emu.jobs() if j["job_id"] == big][0]["archive_size"]
    assert size > 2 * LEFT_FREE, size

    # the write fails: .job.json says so, and the partial file is gone
    info = wait_for(lambda: (lambda i: i if i["error"] else None)(job_info(m, big)), timeout=20,
                    what="the disk-full error in .job.json")
    assert "No space left on device" in info["error"], info
    assert cache in info["error"] or "archives" in info["error"], info
    parts = glob.glob(os.path.join(cache, "archives", "**", "*.part"), recursive=True) + \
        glob.glob(os.path.join(cache, "archives", "**", ".*.part"), recursive=True)
    assert parts == [], "the partial download was left behind: %r" % parts
    assert free_bytes(small_disk) >= LEFT_FREE - (64 << 10), "the partial file still holds space"
    assert "No space left on device" in m.read_log()
    assert read(os.path.join(m.job(big), "status")) == "success\n"
    # the other job is still whole and served while the disk is full
    assert md5s(walk_files(m.job(first))) == first_files
    assert read(m.archive(first), "rb") == first_zip

    # space comes back: the next attempt succeeds (listing waits for it)
    os.unlink(filler)
    want = emu_archive(emu, big)
    names = os.listdir(m.job(big))
    assert "events.csv" in names, (names, job_info(m, big))
    assert md5s(walk_files(m.job(big))) == md5s({k: v[0] for k, v in zip_entries(want).items()})
    assert read(m.archive(big), "rb") == want
    assert job_info(m, big)["error"] is None
    assert job_info(m, big)["download"]["done"] == size
    # and nothing else in the cache was damaged, also after a remount
    m.remount()
    assert md5s(walk_files(m.job(first))) == first_files
    assert read(m.archive(first), "rb") == first_zip
    assert read(m.archive(big), "rb") == want
    # the journal survived: no damaged records were set aside
    assert glob.glob(os.path.join(cache, "journal", "**", "*.corrupt"), recursive=True) == []
