# mkdir exports/<job_id> attaches a job created elsewhere; rmdir forgets one.
import errno
import json
import os
import shlex
import time
import uuid

import pytest

from fshelpers import (CONTROL, FILTER, emu_archive, emuharness, expect_errno, files_under, md5s,
                       read, run_job, sh, submit, walk_files, wait_end, zip_entries)


def test_mkdir_attaches_a_job_created_elsewhere(mnt, emu):
    emu.config(files=2, folders=1)
    job = emuharness.submit(emu, dict(FILTER, attacks=["xss"]))
    emu.clear_log()
    os.mkdir(mnt.job(job))
    assert job in os.listdir(mnt.exports())
    assert emu.calls("submit") == [], "attaching must not submit anything"
    assert wait_end(mnt, job) == "success\n"
    assert read(os.path.join(mnt.job(job), "status")) == "success\n"
    info = json.loads(read(os.path.join(mnt.job(job), ".job.json")))
    assert info["job_id"] == job and info["filter"] is None
    entries = zip_entries(emu_archive(emu, job))
    assert md5s(walk_files(mnt.job(job))) == md5s({k: v[0] for k, v in entries.items()})
    assert sorted(os.listdir(mnt.job(job))) == sorted(list(CONTROL) + ["manifest.json",
                                                                        "part-001"])
    assert read(mnt.archive(job), "rb") == emu_archive(emu, job)


def test_mkdir_attaches_with_shell_and_survives_remount(mount_factory, emu):
    m = mount_factory()
    job = emuharness.submit(emu, FILTER)
    sh("mkdir %s" % shlex.quote(m.job(job)))
    assert wait_end(m, job) == "success\n"
    m.remount()
    assert job in os.listdir(m.exports())
    assert "events.csv" in os.listdir(m.job(job))


def test_mkdir_of_unknown_job_is_enoent(mnt, emu):
    unknown = uuid.uuid4().hex
    expect_errno(errno.ENOENT, os.mkdir, mnt.job(unknown))
    assert os.listdir(mnt.exports()) == ["new"]
    r = sh("mkdir %s" % shlex.quote(mnt.job(uuid.uuid4().hex)), check=False)
    assert r.returncode != 0
    assert os.listdir(mnt.exports()) == ["new"]
    q = [e for e in emu.calls("query") if e.get("task_id") == unknown]
    assert q and q[0]["status"] == 404, q


def test_rmdir_forgets_a_job(mount_factory, emu):
    m = mount_factory()
    keep = run_job(m)
    gone = run_job(m)
    os.listdir(m.job(gone))
    zbytes = read(m.archive(gone), "rb")
    os.rmdir(m.job(gone))
    assert sorted(os.listdir(m.exports())) == sorted(["new", keep])
    assert not os.path.exists(m.archive(gone))
    expect_errno(errno.ENOENT, os.stat, m.job(gone))
    # its cached data is dropped
    for p in files_under(m.cache_dir):
        with open(p, "rb") as f:
            assert f.read() != zbytes, "the forgotten job's archive is still cached: %s" % p
    m.remount()
    assert sorted(os.listdir(m.exports())) == sorted(["new", keep])
    assert "events.csv" in os.listdir(m.job(keep))
    # the cloud job itself is untouched: it can be attached again
    os.mkdir(m.job(gone))
    assert wait_end(m, gone) == "success\n"


def test_rmdir_of_running_job_forgets_it_locally(mnt, emu):
    emu.config(job_delay=2)
    job = submit(mnt)
    os.rmdir(mnt.job(job))
    assert os.listdir(mnt.exports()) == ["new"]
    r = emuharness.wait_job(emu, job)
    assert r["task_status"] == "success"  # the cloud job goes on


def test_rmdir_of_unknown_job_is_enoent(mnt, emu):
    expect_errno(errno.ENOENT, os.rmdir, mnt.job(uuid.uuid4().hex))


@pytest.mark.slow
def test_rmdir_racing_the_fetcher_forgets_for_good(mount_factory, emu):
    """rmdir of jobs at every stage of their archive fetch: none of them comes back
    after a remount and none of their archives stays in the cache."""
    emu.config(rows=400)
    m = mount_factory()
    jobs = [submit(m) for _ in range(8)]
    for j in jobs:
        assert wait_end(m, j) == "success\n"
    for i, j in enumerate(jobs):
        if i % 2:
            os.listdir(m.job(j))  # this one right after its archive became available
        os.rmdir(m.job(j))
    assert os.listdir(m.exports()) == ["new"]
    time.sleep(1)  # let the fetcher finish whatever it was doing
    m.stop()
    zips = [emu_archive(emu, j) for j in jobs]
    for p in files_under(m.cache_dir):
        with open(p, "rb") as f:
            data = f.read()
        assert data not in zips, "a forgotten job's archive stayed in the cache: %s" % p
        for j in jobs:
            assert j.encode() not in data or p.endswith(".log"), \
                "forgotten job %s still recorded in %s" % (j, p)
    m.start()
    assert os.listdir(m.exports()) == ["new"], "forgotten jobs came back after a remount"
