#!/usr/bin/python3
"""bench/waiters.py: a mount under a storm of waiting requests (issue 13).

Parks W `.wait` readers on running jobs and L listings of jobs whose
download hangs, then times what other users do meanwhile (ls of exports/,
stat of a .job.json, read of a status, read of .stats, a 64 KiB pread of a
local archive's entry), each against the same operation on the idle mount
(ratio), times Ctrl-C on one more waiter (SIGINT to EINTR/exit), and reports
the mount's threads and its memory per waiter (RSS and anonymous memory
growth / waiters).

    bench/waiters.py [--bin build/src/hcexportfs] [--waiters 1000] [--listings 100]
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import emuharness  # noqa: E402
import fshelpers  # noqa: E402
from fshelpers import Mount, read, run_job, submit, wait_end, wait_for, walk_files  # noqa: E402


def mem_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "Threads"):
                out[k] = int(v.split()[0])
    return out


def timed(fn, n=30):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    return {"median_ms": statistics.median(ts), "p99_ms": ts[int(len(ts) * 0.99) - 1],
            "max_ms": ts[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "src", "hcexportfs"))
    ap.add_argument("--waiters", type=int, default=1000)
    ap.add_argument("--listings", type=int, default=100)
    a = ap.parse_args()
    os.environ["HCEXPORTFS_BIN"] = os.path.abspath(a.bin)
    tmp = tempfile.mkdtemp(prefix="hcx-waiters-")
    emu = emuharness.Emulator(tmp, job_delay=0.3).start()
    mnt = Mount(tmp, "w", emu.url, os.path.join(tmp, "cache"), poll_interval=0.2,
                log_level="info")
    readers = []
    try:
        emu.config(waf_file_format="zip", rows=20000, daily_files=0, daily_future=0,
                   foreign_files=0)
        mnt.start()
        done = run_job(mnt)
        entry = sorted(walk_files(mnt.job(done)))[0]
        entry_path = os.path.join(mnt.job(done), entry)
        fd = os.open(entry_path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        probes = {
            "ls exports/": lambda: os.listdir(mnt.exports()),
            "stat .job.json": lambda: os.stat(os.path.join(mnt.job(done), ".job.json")),
            "read status": lambda: read(os.path.join(mnt.job(done), "status")),
            "read .stats": lambda: read(mnt.path(".stats")),
            "pread 64K of an entry": lambda: os.pread(fd, 65536, (time.monotonic_ns() * 7919)
                                                       % max(1, size - 65536)),
        }
        idle = {k: timed(f) for k, f in probes.items()}
        emu.config(job_delay=3600)
        running = [submit(mnt) for _ in range(4)]
        fetching = [submit(mnt) for _ in range(a.listings)]
        emu.patch_faults(hang_calls=["download"])
        for j in fetching:
            emu.finish(j, "success")
        for j in fetching:
            wait_end(mnt, j)
        before = mem_kb(mnt.proc.pid)
        old = threading.stack_size(256 * 1024)
        for i in range(a.waiters):
            t = threading.Thread(target=lambda j=running[i % 4]: _quiet(
                read, os.path.join(mnt.job(j), ".wait")), daemon=True)
            t.start()
            readers.append(t)
        for j in fetching:
            t = threading.Thread(target=lambda j=j: _quiet(os.listdir, mnt.job(j)), daemon=True)
            t.start()
            readers.append(t)
        threading.stack_size(old)
        want = a.waiters + a.listings
        wait_for(lambda: json.loads(read(mnt.path(".stats")))["waiting"]["now"] >= want,
                 timeout=120, what="%d parked requests" % want)
        time.sleep(1)
        after = mem_kb(mnt.proc.pid)
        loaded = {k: timed(f) for k, f in probes.items()}
        # Ctrl-C on one more waiter, ten times.
        intr = []
        for _ in range(10):
            p = subprocess.Popen(["cat", os.path.join(mnt.job(running[0]), ".wait")],
                                 stdout=subprocess.DEVNULL)
            wait_for(lambda: json.loads(read(mnt.path(".stats")))["waiting"]["now"] > want)
            t0 = time.perf_counter()
            p.send_signal(signal.SIGINT)
            p.wait(10)
            intr.append((time.perf_counter() - t0) * 1000)
            wait_for(lambda: json.loads(read(mnt.path(".stats")))["waiting"]["now"] == want)
        os.close(fd)
        print("waiting requests: %d .wait readers + %d listings of downloading jobs"
              % (a.waiters, a.listings))
        print("%-24s %10s %10s %10s %10s %8s" % ("operation", "idle med", "loaded med",
                                                  "loaded p99", "loaded max", "ratio"))
        for k in probes:
            i, l_ = idle[k], loaded[k]
            print("%-24s %8.3fms %8.3fms %8.3fms %8.3fms %7.2fx" % (
                k, i["median_ms"], l_["median_ms"], l_["p99_ms"], l_["max_ms"],
                l_["median_ms"] / i["median_ms"] if i["median_ms"] else 0))
        print("Ctrl-C on a waiter: median %.2f ms, max %.2f ms (SIGINT to exit, 10 tries)"
              % (statistics.median(intr), max(intr)))
        print("mount threads: %d before, %d with %d waiting" % (before["Threads"],
                                                                after["Threads"], want))
        print("memory per waiter: RSS %+.0f bytes, anonymous %+.0f bytes (%d kB -> %d kB RSS)"
              % ((after["VmRSS"] - before["VmRSS"]) * 1024 / want,
                 (after["RssAnon"] - before["RssAnon"]) * 1024 / want,
                 before["VmRSS"], after["VmRSS"]))
    finally:
        try:
            emu.config(job_delay=0.1)
            emu.patch_faults(hang_calls=[])
            for j in emu.jobs():
                try:
                    emu.finish(j["job_id"], "success")
                except Exception:
                    pass
        except Exception:
            pass
        for t in readers:
            t.join(30)
        mnt.stop()
        emu.stop()


def _quiet(fn, *args):
    try:
        fn(*args)
    except OSError:
        pass


if __name__ == "__main__":
    main()
