# Job state: status (one line), .wait, failure jobs, polling rate, .job.json.
import ctypes
import errno
import json
import os
import signal
import shlex
import threading
import time

import pytest

from fshelpers import (CONTROL, FILTER, PROJECT, RFC3339_Z, emuharness, queries, read, run_job,
                       sh, stat_read_agree, submit, wait_end, wait_status)


def test_status_is_one_line_running_then_success(mnt, emu):
    emu.config(job_delay=1.5)
    job = submit(mnt)
    st = os.path.join(mnt.job(job), "status")
    assert read(st) == "running\n"
    wait_status(mnt, job, "success")
    assert read(st) == "success\n"
    text = read(st)
    assert text.count("\n") == 1 and text.endswith("\n")


def test_shell_idioms_on_status(mnt, emu):
    job = run_job(mnt)
    st = shlex.quote(os.path.join(mnt.job(job), "status"))
    sh("grep -qx success %s" % st)
    assert sh("grep -qx running %s" % st, check=False).returncode == 1
    r = sh('read state < %s && printf "%%s" "$state"' % st)
    assert r.stdout == b"success"


def test_wait_blocks_until_end(mnt, emu):
    emu.config(job_delay=1.5)
    t0 = time.monotonic()
    job = submit(mnt)
    assert read(os.path.join(mnt.job(job), "status")) == "running\n"
    line = read(os.path.join(mnt.job(job), ".wait"))
    took = time.monotonic() - t0
    assert line == "success\n"
    assert took >= 1.2, "read .wait returned after %.2fs, before the job ended" % took
    assert read(os.path.join(mnt.job(job), "status")) == "success\n"
    # after the end, .wait answers at once
    t1 = time.monotonic()
    assert read(os.path.join(mnt.job(job), ".wait")) == "success\n"
    assert time.monotonic() - t1 < 1


def test_wait_reader_can_be_interrupted(mnt, emu):
    emu.config(job_delay=30)
    job = submit(mnt)
    t0 = time.monotonic()
    r = sh("timeout -s INT 1 cat %s" % shlex.quote(os.path.join(mnt.job(job), ".wait")),
           check=False, timeout=20)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 10, "an interrupted .wait reader must return"
    time.sleep(0.2)
    assert mnt.proc.poll() is None, "hcexportfs died when a .wait reader was interrupted"
    assert read(os.path.join(mnt.job(job), "status")) == "running\n"
    emu.finish(job, "success")
    assert wait_end(mnt, job) == "success\n"


def test_failure_job(mnt, emu):
    flt = dict(FILTER, hosts=["fail.example.com"])
    job = submit(mnt, flt)
    assert wait_end(mnt, job) == "failure\n"
    assert read(os.path.join(mnt.job(job), "status")) == "failure\n"
    assert sorted(os.listdir(mnt.job(job))) == sorted(CONTROL)
    info = json.loads(read(os.path.join(mnt.job(job), ".job.json")))
    assert info["state"] == "failure" and info["task_status"] == "FAILED"
    assert os.listdir(mnt.path("projects", PROJECT, "archives")) == []
    assert emu.calls("download") == []


@pytest.mark.slow
def test_tight_status_reads_do_not_multiply_queries(mount_factory, emu):
    m = mount_factory(poll_interval=1)
    emu.config(job_delay=3)
    emu.clear_log()
    t0 = time.monotonic()
    job = submit(m)
    d = m.job(job)
    for _ in range(100):
        read(os.path.join(d, "status"))
    for _ in range(20):
        read(os.path.join(d, ".job.json"))
        os.stat(os.path.join(d, "status"))
        os.listdir(d)
    while read(os.path.join(d, "status")) != "success\n":
        assert time.monotonic() - t0 < 20, "job never succeeded"
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    n = len(queries(emu, job))
    assert n <= elapsed / 1.0 + 2, "%d queries in %.1fs with poll_interval=1" % (n, elapsed)


def test_ended_jobs_are_not_polled_again(mnt, emu):
    ok = run_job(mnt)
    bad = run_job(mnt, dict(FILTER, hosts=["fail.example.com"]), want="failure")
    os.listdir(mnt.job(ok))  # archive fetched
    time.sleep(0.3)
    before = {j: len(queries(emu, j)) for j in (ok, bad)}
    t_end = time.monotonic() + 2
    while time.monotonic() < t_end:  # keep reading: reads must not trigger polls either
        for j in (ok, bad):
            read(os.path.join(mnt.job(j), "status"))
            read(os.path.join(mnt.job(j), ".job.json"))
        time.sleep(0.05)
    after = {j: len(queries(emu, j)) for j in (ok, bad)}
    assert after == before, (before, after)


def check_job_json(info, job, flt):
    keys = ("job_id", "project_id", "service", "filter", "task_name", "task_status", "state",
            "file_id", "file_match",
            "file_name", "message", "submitted_at", "polled_at", "download", "error")
    for k in keys:
        assert k in info, "key %r missing from .job.json: %r" % (k, info)
    assert info["job_id"] == job
    assert info["project_id"] == PROJECT
    assert info["filter"] == flt
    assert RFC3339_Z.match(info["submitted_at"]), info["submitted_at"]
    assert isinstance(info["download"], dict) and set(info["download"]) >= {"done", "total"}


def test_job_json_contract_keys(mnt, emu):
    emu.config(job_delay=1.5)
    t_before = time.time()
    job = submit(mnt)
    p = os.path.join(mnt.job(job), ".job.json")
    info = json.loads(read(p))
    check_job_json(info, job, FILTER)
    assert info["state"] == "running" and info["task_status"] == "RUNNING"
    assert info["download"]["total"] is None, info["download"]
    assert info["error"] is None
    assert info["message"] == "Checking domain name configuration"
    assert wait_end(mnt, job) == "success\n"
    os.listdir(mnt.job(job))  # waits for the archive
    info = json.loads(read(p))
    check_job_json(info, job, FILTER)
    q = emuharness.wait_job(emu, job)
    assert info["state"] == "success" and info["task_status"] == "SUCCESS"
    assert info["task_name"] is None  # WAF's async-job call names no task
    assert info["message"] == q["message"]  # the async-job call's, once polled
    assert info["file_id"] == q["file_id"] and info["file_name"] == q["file_name"]
    assert info["file_match"] == "time" and info["format"] == "zip", info
    assert RFC3339_Z.match(info["polled_at"]), info["polled_at"]
    size = os.stat(mnt.archive(job)).st_size
    assert info["download"] == {"done": size, "total": size} or \
        (info["download"]["done"] == size and info["download"]["total"] == size), info["download"]
    assert info["error"] is None
    sub = time.mktime(time.strptime(info["submitted_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert t_before - 2 <= sub <= time.time() + 2, info["submitted_at"]
    pol = time.mktime(time.strptime(info["polled_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert pol >= sub


@pytest.mark.parametrize("name", ["status", ".job.json"])
def test_stat_size_equals_content(mnt, emu, name):
    emu.config(job_delay=1)
    job = submit(mnt)
    p = os.path.join(mnt.job(job), name)
    sizes = []
    deadline = time.monotonic() + 15
    while True:
        # .job.json changes while the archive is fetched (fetching, verifying,
        # ready): a change between the stat and the read is not a disagreement.
        data = stat_read_agree(p)
        sizes.append(len(data))
        if read(os.path.join(mnt.job(job), "status")) == "success\n":
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.listdir(mnt.job(job))
    time.sleep(0.3)
    stat_read_agree(p)
    # fstat on an open descriptor agrees with what that descriptor reads
    with open(p, "rb") as f:
        assert os.fstat(f.fileno()).st_size == len(f.read())


@pytest.mark.parametrize("name", ["status", ".job.json", ".wait"])
def test_stat_agrees_with_read_right_after_job_ends(mnt, emu, name):
    """stat while running, then at once after the end: stat and read must agree
    (no stale size from a cached attribute; tar of a job directory relies on it)."""
    emu.config(job_delay=0.6)
    job = submit(mnt)
    p = os.path.join(mnt.job(job), name)
    os.stat(p)
    assert read(os.path.join(mnt.job(job), ".wait")) == "success\n"
    # The archive's fetch starts now and .job.json changes with it (fetching,
    # verifying, ready): a change between one stat and its read is not staleness.
    # A stale cached attribute would last attr_timeout (1 s): it shows as a stat
    # that disagrees with content that did not change.
    stat_read_agree(p)


def test_ls_l_sizes_of_control_files(mnt, emu):
    job = run_job(mnt)
    os.listdir(mnt.job(job))
    time.sleep(0.3)
    for name in ("status", ".job.json", ".wait"):
        p = os.path.join(mnt.job(job), name)
        r = sh("ls -ln %s" % shlex.quote(p))
        size = int(r.stdout.split()[4])
        assert size == len(read(p, "rb")), (name, r.stdout)


def test_many_jobs_polled_concurrently(mnt, emu):
    jobs = [submit(mnt) for _ in range(5)]
    results = {}

    def w(j):
        results[j] = wait_end(mnt, j)

    ts = [threading.Thread(target=w, args=(j,)) for j in jobs]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert results == {j: "success\n" for j in jobs}


def test_interrupted_wait_read_returns_eintr(mnt, emu):
    emu.config(job_delay=30)
    job = submit(mnt)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(mnt.job(job), ".wait"), os.O_RDONLY)
    old = signal.signal(signal.SIGALRM, lambda *a: None)
    signal.siginterrupt(signal.SIGALRM, True)
    try:
        buf = ctypes.create_string_buffer(64)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        t0 = time.monotonic()
        n = libc.read(fd, buf, 64)
        e = ctypes.get_errno()
        took = time.monotonic() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(fd)
    assert n == -1 and e == errno.EINTR, (n, e, buf.raw[:20])
    assert took < 10
    assert mnt.proc.poll() is None, "hcexportfs died when a .wait reader was interrupted"
    emu.finish(job, "success")
    assert wait_end(mnt, job) == "success\n"
