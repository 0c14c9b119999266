# A job's life in the cache: rmdir (and mkdir again) while it downloads,
# stat and mtime of evicted archives, a full cache disk, and control files
# whose content changes between two calls.
import glob
import json
import os
import shutil
import subprocess
import time

import pytest

from fshelpers import (CONTROL, PROJECT, emu_archive, read, run_job, submit, wait_end,
                       wait_for)


def job_info(m, job):
    return json.loads(read(os.path.join(m.job(job), ".job.json")))


def stats(m):
    return json.loads(read(m.path(".stats")))


def parts_of(m):
    return glob.glob(os.path.join(m.cache_dir, "archives", "**", ".*.part"), recursive=True)


def start_slow_download(m, emu):
    """A succeeded job whose (~1.2 MB) file downloads at 200 kB/s; returns it once
    its download request has reached storage and bytes arrive.  Its file names it
    (an attached job that already succeeded is matched by id or name only)."""
    emu.config(rows=20000, compresslevel=0, waf_file_link="id")
    emu.set_faults(slow_download_bps=200000)
    job = submit(m)
    assert wait_end(m, job) == "success\n"
    wait_for(lambda: emu.calls("download"), what="the download to start")
    wait_for(lambda: job_info(m, job)["download"]["done"] > 0, what="bytes to arrive")
    return job


@pytest.mark.slow
def test_rmdir_stops_the_download_at_once(mount_factory, emu):
    m = mount_factory()
    job = start_slow_download(m, emu)
    size = [j for j in emu.jobs() if j["job_id"] == job][0]["archive_size"]
    os.rmdir(m.job(job))
    wait_for(lambda: "forgotten while downloading; download stopped" in m.read_log(),
             timeout=10, what="the forgotten job's transfer to stop")
    # it stopped early: far from the whole file, and it is not fetched again
    assert stats(m)["bytes_downloaded"] < size // 2, (stats(m), size)
    assert len(emu.calls("download")) == 1
    assert parts_of(m) == []
    assert os.listdir(m.path("projects", PROJECT, "archives")) == []
    emu.set_faults()


@pytest.mark.slow
def test_rmdir_then_mkdir_while_downloading(mount_factory, emu):
    m = mount_factory()
    job = start_slow_download(m, emu)
    os.rmdir(m.job(job))
    emu.set_faults()  # the re-attached job's download runs at full speed
    os.mkdir(m.job(job))
    assert wait_end(m, job) == "success\n"
    names = os.listdir(m.job(job))  # waits for the archive
    assert "events.csv" in names, (names, job_info(m, job))
    info = wait_for(lambda: (lambda i: i if i["archive"] != "verifying" else None)(
        job_info(m, job)), what="the archive to be verified")
    assert info["archive"] == "ready" and info["error"] is None, info
    # one (stopped) download of the forgotten job, one of the re-attached job
    assert len(emu.calls("download")) == 2, [e.get("bytes_sent") for e in emu.calls("download")]
    assert read(m.archive(job), "rb") == emu_archive(emu, job)
    assert "forgotten while downloading; download stopped" in m.read_log()
    assert parts_of(m) == []


def archive_stats(m):
    d = m.path("projects", PROJECT, "archives")
    out = {}
    for name in sorted(os.listdir(d)):
        st = os.stat(os.path.join(d, name))
        out[name] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.slow
def test_evicted_archives_stat_without_fetching_and_keep_their_time(mount_factory, emu,
                                                                      tmp_path):
    """cache_max evicts; ls -l of archives/ answers from what is remembered (no
    download), size and mtime never change (also once fetched again, also after a
    remount), and a second rsync -a copies nothing."""
    emu.config(rows=2000)
    m = mount_factory(opts={"cache_max": "30K"})
    jobs = [run_job(m) for _ in range(3)]
    served = {j: emu_archive(emu, j) for j in jobs}
    assert all(12000 < len(z) < 30000 for z in served.values()), [len(z) for z in served.values()]
    for j in jobs:
        assert read(m.archive(j), "rb") == served[j]
        time.sleep(1.1)  # mtimes of whole seconds apart: a refetch would show
    wait_for(lambda: sum(job_info(m, j)["archive"] == "evicted" for j in jobs) >= 2,
             timeout=20, what="two archives evicted")
    before = archive_stats(m)
    assert sorted(before) == sorted(j + ".zip" for j in jobs), before
    for j in jobs:
        assert before[j + ".zip"][0] == len(served[j])
    emu.clear_log()
    # stat / ls -l of evicted files: nothing fetched
    for _ in range(3):
        assert archive_stats(m) == before
    subprocess.run(["ls", "-l", "--full-time", m.path("projects", PROJECT, "archives")],
                   check=True, stdout=subprocess.DEVNULL)
    assert emu.calls("download") == [], "stat of an evicted archive downloaded it"
    assert sum(job_info(m, j)["archive"] == "evicted" for j in jobs) >= 2

    backup = str(tmp_path / "backup")
    src = m.path("projects", PROJECT, "archives") + "/"
    subprocess.run(["rsync", "-a", src, backup + "/"], check=True)  # fetches the evicted
    for j in jobs:
        assert read(os.path.join(backup, j + ".zip"), "rb") == served[j]
    assert emu.calls("download"), "nothing was fetched again"
    # fetched again: the same size and time, also after the first rsync evicted more
    assert archive_stats(m) == before
    downloads = len(emu.calls("download"))
    r = subprocess.run(["rsync", "-a", "--stats", src, backup + "/"], check=True,
                       stdout=subprocess.PIPE, universal_newlines=True)
    assert "Number of regular files transferred: 0" in r.stdout, r.stdout
    assert len(emu.calls("download")) == downloads
    m.remount()
    assert archive_stats(m) == before
    for j in jobs:
        assert read(m.archive(j), "rb") == served[j]
    assert archive_stats(m) == before
