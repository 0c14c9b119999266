# .stats agrees with what the cloud saw: the emulator's request log is the
# reference for calls per API and status code, retries and bytes downloaded;
# the cache directory for archives and bytes; the jobs for the states.
import collections
import json
import os
import time

from fshelpers import read, run_job, walk_files, wait_for


def stats(m):
    return json.loads(read(m.path(".stats")))


def test_stats_counters_match_the_emulator_log(mount_factory, emu):
    emu.config(files=3, folders=1)
    # Every 2nd submit and query is throttled (Retry-After 0): a throttled submit is
    # retried within the call (counted in "retries"), a throttled query is polled
    # again later by the poller (a new call, not a retry).
    emu.set_faults(every_nth=2, nth_status=429, nth_calls=["submit", "query"], retry_after=0)
    m = mount_factory()
    t0 = time.monotonic()
    jobs = [run_job(m) for _ in range(2)]
    read_bytes = 0
    for j in jobs:
        wait_for(lambda: json.loads(read(os.path.join(m.job(j), ".job.json")))["archive"]
                 == "ready", timeout=30, what="archive of %s" % j)
        for rel, data in walk_files(m.job(j)).items():
            read_bytes += len(data)
    emu.set_faults()
    time.sleep(0.3)  # nothing is in flight: both jobs ended, archives local

    log = emu.log()
    st = stats(m)
    for call in ("submit", "query", "download", "token"):
        seen = collections.Counter(str(e["status"]) for e in log
                                   if e["call"] == call and e["status"] is not None)
        assert dict(seen) == {k: v for k, v in st["calls"][call].items() if v}, \
            (call, dict(seen), st["calls"][call])
    throttled = {c: sum(1 for e in log if e["call"] == c and e["status"] == 429)
                 for c in ("submit", "query")}
    assert throttled["submit"] >= 1, "the fault knob did not throttle any submit"
    assert st["retries"]["submit"] == throttled["submit"], (st["retries"], throttled)
    assert st["retries"]["query"] <= throttled["query"], (st["retries"], throttled)
    assert st["retries"]["download"] == 0, st["retries"]
    assert st["bytes_downloaded"] == sum(e["bytes_sent"] or 0 for e in log
                                         if e["call"] == "download" and e["status"] in (200, 206))
    assert st["jobs"] == {"running": 0, "success": 2, "failure": 0}, st["jobs"]
    assert st["submits"] == 2

    zips = [os.path.join(d, f) for d, _, fs in os.walk(m.cache_dir) for f in fs
            if f.endswith(".zip")]
    assert st["cache"]["archives"] == len(zips) == 2, (st["cache"], zips)
    on_disk = sum(os.path.getsize(z) + sum(os.path.getsize(z + s) for s in (".ckpt", ".idx")
                                           if os.path.exists(z + s)) for z in zips)
    assert st["cache"]["bytes"] == on_disk, (st["cache"], on_disk)
    assert st["bytes_read"] >= read_bytes and st["reads"] >= len(jobs), st
    assert 0 <= st["uptime_s"] <= time.monotonic() - t0 + 5, st["uptime_s"]
