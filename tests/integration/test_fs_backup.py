# Backup tools: rsync twice copies nothing the second time, cp -a and tar of a
# job directory equal the archive's contents.
import os
import re
import subprocess
import tarfile

import pytest

from fshelpers import CONTROL, FILTER, PROJECT, emu_archive, md5s, read, run_job, walk_files, \
    zip_entries


def rsync(src, dst, *extra):
    r = subprocess.run(["rsync", "-a", "--itemize-changes", "--stats", *extra, src, dst],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout.decode()


def itemized(out):
    """The itemize-changes lines (not the --stats block)."""
    return [l for l in out.splitlines() if re.match(r"^[<>ch.*][fdLDS][^ ]{9} ", l)]


@pytest.fixture
def jobs(mnt, emu):
    emu.config(files=3, folders=2)
    ok = run_job(mnt)
    bad = run_job(mnt, dict(FILTER, hosts=["fail.example.com"]), want="failure")
    os.listdir(mnt.job(ok))
    return ok, bad


@pytest.mark.slow
def test_rsync_twice_copies_nothing_the_second_time(mnt, emu, jobs, tmp_path):
    ok, bad = jobs
    dst = str(tmp_path / "backup")
    first = rsync(mnt.project() + "/", dst + "/")
    assert "Number of regular files transferred: 0" not in first
    second = rsync(mnt.project() + "/", dst + "/")
    assert itemized(second) == [], "second rsync changed things:\n" + second
    assert re.search(r"Number of regular files transferred: 0\b", second), second
    # the copy holds the exact archive, the unpacked entries and an empty `new`
    assert read(os.path.join(dst, "archives", ok + ".zip"), "rb") == emu_archive(emu, ok)
    assert not os.path.exists(os.path.join(dst, "archives", bad + ".zip"))
    assert os.path.getsize(os.path.join(dst, "exports", "new")) == 0
    entries = zip_entries(emu_archive(emu, ok))
    assert md5s(walk_files(os.path.join(dst, "exports", ok))) == \
        md5s({k: v[0] for k, v in entries.items()})
    assert read(os.path.join(dst, "exports", bad, "status")) == "failure\n"


def test_rsync_archives_keeps_exact_copy(mnt, emu, jobs, tmp_path):
    ok, _ = jobs
    dst = str(tmp_path / "arch")
    rsync(mnt.path("projects", PROJECT, "archives") + "/", dst + "/")
    assert os.listdir(dst) == [ok + ".zip"]
    assert read(os.path.join(dst, ok + ".zip"), "rb") == emu_archive(emu, ok)
    second = rsync(mnt.path("projects", PROJECT, "archives") + "/", dst + "/")
    assert itemized(second) == [], second


def test_cp_a_of_job_dir(mnt, emu, jobs, tmp_path):
    ok, _ = jobs
    dst = str(tmp_path / "copy")
    r = subprocess.run(["cp", "-a", mnt.job(ok), dst], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r
    entries = zip_entries(emu_archive(emu, ok))
    assert md5s(walk_files(dst)) == md5s({k: v[0] for k, v in entries.items()})
    assert read(os.path.join(dst, "status")) == "success\n"
    assert read(os.path.join(dst, ".wait")) == "success\n"
    assert read(os.path.join(dst, ".job.json"), "rb") == read(os.path.join(mnt.job(ok),
                                                                          ".job.json"), "rb")
    # cp -a kept the entries' modification times
    for name, (_, zi) in entries.items():
        assert int(os.stat(os.path.join(dst, name)).st_mtime) == \
            int(os.stat(os.path.join(mnt.job(ok), name)).st_mtime)


def test_tar_of_job_dir(mnt, emu, jobs, tmp_path):
    ok, _ = jobs
    out = str(tmp_path / "job.tar")
    r = subprocess.run(["tar", "-C", mnt.job(ok), "-cf", out, "."], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    # tar exits 1 with "file changed as we read it" when stat and read disagree
    assert r.returncode == 0 and not r.stderr, r
    entries = zip_entries(emu_archive(emu, ok))
    got = {}
    with tarfile.open(out) as t:
        for m in t.getmembers():
            if m.isfile():
                got[os.path.normpath(m.name)] = t.extractfile(m).read()
    control = {k: got.pop(k) for k in CONTROL if k in got}
    assert set(control) == set(CONTROL)
    assert control["status"] == b"success\n" and control[".wait"] == b"success\n"
    assert md5s(got) == md5s({k: v[0] for k, v in entries.items()})
