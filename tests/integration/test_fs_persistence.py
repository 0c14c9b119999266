# Known jobs survive an unmount, a kill -9 and a restart; a remount works with
# the cloud unreachable and serves completed jobs from the cache.
import json
import os
import signal
import time

import pytest

from fshelpers import (CONTROL, FILTER, emu_archive, md5s, read, run_job, submit, wait_end,
                       wait_for, walk_files, zip_entries)


def listed_jobs(m):
    names = os.listdir(m.exports())
    assert names.count("new") == 1
    jobs = [n for n in names if n != "new"]
    assert len(jobs) == len(set(jobs)), "a job is listed twice: %r" % names
    return jobs


def snapshot(m, job):
    d = m.job(job)
    return {"status": read(os.path.join(d, "status")),
            "files": md5s(walk_files(d)),
            "filter": json.loads(read(os.path.join(d, ".job.json")))["filter"]}


def test_jobs_survive_unmount_and_remount(mount_factory, emu):
    m = mount_factory()
    ok = run_job(m)
    bad = run_job(m, dict(FILTER, hosts=["fail.example.com"]), want="failure")
    emu.config(job_delay=2.5)
    running = submit(m)
    os.listdir(m.job(ok))
    before = {j: snapshot(m, j) for j in (ok, bad)}
    zbytes = read(m.archive(ok), "rb")
    m.remount()
    assert sorted(listed_jobs(m)) == sorted([ok, bad, running])
    for j in (ok, bad):
        assert snapshot(m, j) == before[j]
    assert read(m.archive(ok), "rb") == zbytes
    # the job that was running at unmount is polled again and completes
    assert wait_end(m, running) == "success\n"
    assert "events.csv" in os.listdir(m.job(running))
    assert json.loads(read(os.path.join(m.job(running), ".job.json")))["filter"] == FILTER


def test_remount_does_not_download_again(mount_factory, emu):
    m = mount_factory()
    job = run_job(m)
    os.listdir(m.job(job))
    expected = md5s({k: v[0] for k, v in zip_entries(emu_archive(emu, job)).items()})
    m.stop()
    emu.clear_log()
    m.start()
    assert md5s(walk_files(m.job(job))) == expected
    time.sleep(0.5)
    assert emu.calls("download") == [], "the cached archive was downloaded again"
    assert emu.calls("query") == [], "an ended job was polled again after the remount"


def test_saved_index_serves_remounts_and_is_rebuilt_when_damaged(mount_factory, emu):
    """The tree of a fetched archive is saved beside it (<job>.zip.idx) and a remount
    serves it; a damaged or foreign index is ignored (the archive is walked again and
    the index rewritten); removing the job removes it."""
    emu.config(files=30, folders=3)
    m = mount_factory()
    job = run_job(m)
    expected = md5s({k: v[0] for k, v in zip_entries(emu_archive(emu, job)).items()})
    assert md5s(walk_files(m.job(job))) == expected
    zips = [os.path.join(d, f) for d, _, fs in os.walk(m.cache_dir) for f in fs
            if f == job + ".zip"]
    assert len(zips) == 1, zips
    idx = zips[0] + ".idx"
    wait_for(lambda: os.path.exists(idx), what="the saved index")
    good = read(idx, "rb")
    assert good.startswith(b"HCXIDX\0\1")
    for damage in (good[:len(good) // 2], b"garbage" * 100,
                   good[:200] + bytes([good[200] ^ 1]) + good[201:]):
        m.stop()
        with open(idx, "wb") as f:
            f.write(damage)
        m.start()
        assert md5s(walk_files(m.job(job))) == expected
        wait_for(lambda: read(idx, "rb") == good, what="the index rewritten")
    m.stop()
    m.start()
    assert md5s(walk_files(m.job(job))) == expected
    os.rmdir(m.job(job))
    assert not os.path.exists(idx) and not os.path.exists(zips[0])


@pytest.mark.slow
def test_jobs_survive_kill_9(mount_factory, emu):
    m = mount_factory()
    done = [run_job(m) for _ in range(2)]
    for j in done:
        os.listdir(m.job(j))
    before = {j: snapshot(m, j) for j in done}
    emu.config(job_delay=2)
    running = [submit(m) for _ in range(3)]
    just = submit(m)            # killed right after the id was read back
    m.kill(signal.SIGKILL)
    m.start()
    jobs = listed_jobs(m)
    assert sorted(jobs) == sorted(done + running + [just]), jobs
    for j in done:
        assert snapshot(m, j) == before[j]
    for j in running + [just]:
        assert wait_end(m, j) == "success\n"
        assert "events.csv" in os.listdir(m.job(j))


@pytest.mark.slow
def test_kill_9_during_download_recovers(mount_factory, emu):
    emu.config(rows=20000)
    emu.set_faults(slow_download_bps=200000)
    m = mount_factory()
    job = submit(m)
    assert wait_end(m, job) == "success\n"
    wait_for(lambda: emu.calls("download"), what="the download to start")
    time.sleep(0.3)  # the download is under way
    m.kill(signal.SIGKILL)
    emu.set_faults()
    m.start()
    assert listed_jobs(m) == [job]
    entries = zip_entries(emu_archive(emu, job))
    assert md5s(walk_files(m.job(job))) == md5s({k: v[0] for k, v in entries.items()})
    assert read(m.archive(job), "rb") == emu_archive(emu, job)


def test_remount_with_cloud_stopped_serves_cache(mount_factory, private_emu):
    emu = private_emu
    m = mount_factory(url=emu.url)
    emu.config(files=2, folders=1)
    ok = run_job(m)
    bad = run_job(m, dict(FILTER, hosts=["fail.example.com"]), want="failure")
    os.listdir(m.job(ok))
    before = {j: snapshot(m, j) for j in (ok, bad)}
    zbytes = read(m.archive(ok), "rb")
    m.stop()
    emu.stop()
    m.start()  # the cloud is unreachable: mounting must still work
    assert sorted(listed_jobs(m)) == sorted([ok, bad])
    for j in (ok, bad):
        assert snapshot(m, j) == before[j]
    assert read(m.archive(ok), "rb") == zbytes
    assert sorted(os.listdir(m.job(ok))) == sorted(list(CONTROL) + ["manifest.json",
                                                                     "part-001"])
    assert read(os.path.join(m.job(ok), ".wait")) == "success\n"


def test_mount_removes_leftover_sidecars_only(mount_factory, emu):
    """At mount, temporary sidecars of interrupted writes and sidecars whose archive is
    gone are removed; a kept archive's own sidecars stay."""
    m = mount_factory()
    job = run_job(m)
    assert md5s(walk_files(m.job(job)))
    m.stop()
    adir = [d for d, _, fs in os.walk(m.cache_dir) if job + ".zip" in fs][0]
    gone = "f" * 32
    junk = [gone + ".zip.idx", gone + ".zip.ckpt", job + ".zip.idx.tmp.77.1",
            job + ".zip.ckpt.tmp.77.2"]
    for name in junk:
        with open(os.path.join(adir, name), "wb") as f:
            f.write(b"left over")
    kept = sorted(n for n in os.listdir(adir))
    m.start()
    left = sorted(os.listdir(adir))
    assert not set(junk) & set(left), left
    assert set(kept) - set(junk) <= set(left), (kept, left)
    assert job + ".zip.idx" in left
