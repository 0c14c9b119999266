# Requests that wait hold no thread (issue 13, point 1): a thousand `.wait`
# readers and a hundred listings of downloading jobs park in the filesystem
# (fs/calls.h) while everything else keeps answering; Ctrl-C on any one
# waiter ends it with EINTR.  Counts, not timings: bench/waiters.py measures
# the latencies and the memory per waiter.
import errno
import json
import os
import signal
import subprocess
import threading
import time

from fshelpers import read, run_job, submit, wait_end, wait_for, walk_files

READERS = 1000
LISTINGS = 100


def stats(mnt):
    return json.loads(read(mnt.path(".stats")))


def threads_of(pid):
    return len(os.listdir("/proc/%d/task" % pid))


class Waiters:
    """Blocking reads and listings, each in a thread of its own (small stacks),
    that record what they got."""

    def __init__(self):
        self.threads, self.results, self.lock = [], [], threading.Lock()

    def _run(self, fn, arg):
        try:
            r = fn(arg)
        except OSError as e:
            r = "errno %d" % e.errno
        with self.lock:
            self.results.append(r)

    def start(self, fn, args):
        old = threading.stack_size(256 * 1024)
        try:
            for a in args:
                t = threading.Thread(target=self._run, args=(fn, a), daemon=True)
                t.start()
                self.threads.append(t)
        finally:
            threading.stack_size(old)

    def join(self, timeout):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))
        return [t for t in self.threads if t.is_alive()]


def test_a_thousand_waiters_hold_no_thread(mnt, emu):
    done = run_job(mnt)                       # a local archive, read while the others wait
    done_files = walk_files(mnt.job(done))
    emu.config(job_delay=600)
    running = [submit(mnt) for _ in range(4)]
    # One listing per job: libfuse 3.14 (Debian 12) does not let the kernel
    # run two directory operations of one directory at once, so further
    # listings of the same job would wait in the kernel, not here.
    fetching = [submit(mnt) for _ in range(LISTINGS)]
    emu.patch_faults(hang_calls=["download"])  # their downloads never end (until lifted)
    for j in fetching:
        emu.finish(j, "success")
    for j in fetching:
        assert wait_end(mnt, j) == "success\n"
    base = stats(mnt)["waiting"]["now"]
    waiters = Waiters()
    try:
        waiters.start(lambda j: read(os.path.join(mnt.job(j), ".wait")),
                      [running[i % len(running)] for i in range(READERS)])
        waiters.start(lambda j: sorted(os.listdir(mnt.job(j))),
                      fetching)
        wait_for(lambda: stats(mnt)["waiting"]["now"] >= base + READERS + LISTINGS, timeout=60,
                 what="%d parked requests" % (READERS + LISTINGS))
        # The mount holds no thread per waiter: libfuse's workers (at most 16)
        # plus its own few.
        assert threads_of(mnt.proc.pid) < 48, threads_of(mnt.proc.pid)
        # Everything else answers meanwhile.
        assert set(os.listdir(mnt.exports())) >= set(running + fetching + [done, "new"])
        assert read(os.path.join(mnt.job(running[0]), "status")) == "running\n"
        os.stat(os.path.join(mnt.job(running[1]), ".job.json"))
        for f in done_files:
            assert read(os.path.join(mnt.job(done), f), "rb")
        assert stats(mnt)["waiting"]["now"] >= base + READERS + LISTINGS
        # Ctrl-C on one more waiter: it ends, the others stay.
        cat = subprocess.Popen(["cat", os.path.join(mnt.job(running[0]), ".wait")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: stats(mnt)["waiting"]["now"] >= base + READERS + LISTINGS + 1,
                     what="the extra reader to park")
            before = stats(mnt)["waiting"]["interrupted"]
            cat.send_signal(signal.SIGINT)
            assert cat.wait(timeout=10) == -signal.SIGINT
        finally:
            cat.kill()
            cat.wait()
        s = stats(mnt)["waiting"]
        assert s["interrupted"] == before + 1
        assert s["now"] == base + READERS + LISTINGS
        assert not waiters.results, waiters.results[:5]
        # The jobs end: every waiter gets its answer.
        for j in running:
            emu.finish(j, "success")
        emu.patch_faults(hang_calls=[])
    finally:
        for j in running:
            try:
                emu.finish(j, "success")
            except Exception:
                pass
        emu.patch_faults(hang_calls=[])
        left = waiters.join(120)
    assert not left, "%d waiters never answered" % len(left)
    wait_lines = [r for r in waiters.results if isinstance(r, str)]
    listings = [r for r in waiters.results if isinstance(r, list)]
    assert wait_lines == ["success\n"] * READERS, sorted(set(map(str, waiters.results)))[:5]
    assert len(listings) == LISTINGS
    for names in listings:
        assert {"status", ".job.json", ".wait"} <= set(names) and len(names) > 3, names
    for j in running:
        assert wait_end(mnt, j) == "success\n"
    assert stats(mnt)["waiting"]["now"] == 0


def test_interrupted_listing_and_lookup_end(mnt, emu):
    """A listing and a lookup that wait for a download end on Ctrl-C (the
    kernel's INTERRUPT is answered EINTR), and the download goes on for the
    next reader."""
    emu.config(job_delay=0.3)
    emu.patch_faults(hang_calls=["download"])
    try:
        job = submit(mnt)
        wait_end(mnt, job)
        d = mnt.job(job)
        before = stats(mnt)["waiting"]["interrupted"]
        for argv in (["ls", d], ["cat", os.path.join(d, "events.csv")]):
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                wait_for(lambda: stats(mnt)["waiting"]["now"] == 1, what="%s to park" % argv[0])
                p.send_signal(signal.SIGINT)
                assert p.wait(timeout=10) == -signal.SIGINT
            finally:
                p.kill()
                p.wait()
        s = stats(mnt)["waiting"]
        assert s["interrupted"] == before + 2 and s["now"] == 0, s
    finally:
        emu.patch_faults(hang_calls=[])
    names = os.listdir(d)
    assert len(names) > 3, names
