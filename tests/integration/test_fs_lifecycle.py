# A job's life in the cache: rmdir (and mkdir again) while it downloads,
# stat and mtime of evicted archives, a full cache disk, and control files
# whose content changes between two calls.
import glob
import json
import os
import subprocess
import time

import pytest

from fshelpers import (PROJECT, emu_archive, job_info, read, run_job, stat_read_agree,
                       submit, wait_end, wait_for)


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


# ---- the cache directory and server text (issue 13, point 4) -------------------
def refused_start(m):
    with pytest.raises(AssertionError) as ei:
        m.start()
    assert "before mounting" in str(ei.value), ei.value
    return m.read_log()


@pytest.mark.parametrize("how", ["group-writable", "other-writable", "another user's"])
def test_cache_dir_not_private_is_refused(mount_factory, emu, tmp_path, how):
    cache = tmp_path / "shared-cache"
    cache.mkdir()
    if how == "another user's":
        if os.geteuid() != 0:
            pytest.skip("needs root to chown")
        os.chmod(str(cache), 0o700)
        os.chown(str(cache), 65534, 65534)
    else:
        os.chmod(str(cache), 0o770 if how == "group-writable" else 0o707)
    m = mount_factory(cache_dir=str(cache), start=False)
    log = refused_start(m)
    assert str(cache) in log, log
    assert ("chmod go-w" in log) if how != "another user's" else ("owned by uid" in log), log
    assert not os.path.exists(str(cache / "journal")), "the cache was used anyway"


def test_cache_files_are_not_created_through_links(mount_factory, emu, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    victim = tmp_path / "elsewhere"
    os.symlink(str(victim), str(cache / "lock"))
    m = mount_factory(cache_dir=str(cache), start=False)
    refused_start(m)
    assert not os.path.lexists(str(victim)), "a file was created through a link in the cache"


class _IamRefuses:
    """An IAM endpoint that refuses every login with control characters in its text."""
    TEXT = "bad password\nerror: forged line\x1b[31m red\r\x07"

    def __init__(self):
        import http.server
        import threading
        text = self.TEXT

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"error_code": "IAM.0101", "error_msg": text}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_iam_error_text_is_cleaned(mount_factory, emu, tmp_path):
    iam = _IamRefuses()
    try:
        cred = tmp_path / "cred.ini"
        cred.write_text("[basic]\nuser = alice\npassword = pw-Zr8#kQ2!vN5\ndomain = acme\n")
        os.chmod(str(cred), 0o600)
        m = mount_factory(ak=None, sk=None, opts={"credentials": str(cred),
                                                  "iam_endpoint": iam.url})
        fd = os.open(m.new(), os.O_RDWR)
        try:
            try:
                os.write(fd, b'{"recent":"today","dump_columns":["id"]}\n')
            except OSError:
                pass  # the submit failed: the reply says why
            reply = os.read(fd, 4096).decode()
        finally:
            os.close(fd)
        assert reply.startswith("error: ") and reply.endswith("\n"), repr(reply)
        assert reply.count("\n") == 1, "the reply line was split: %r" % reply
        assert not any(ord(c) < 0x20 and c != "\n" or ord(c) == 0x7f for c in reply), repr(reply)
        assert "bad password" in reply, repr(reply)
        log = m.read_log()
        assert "bad password" in log, log
        assert "\x1b" not in log and "\x07" not in log and "\r" not in log, repr(log[-2000:])
        assert not any(line.startswith("error: forged") for line in log.splitlines()), log
    finally:
        iam.close()


# ---- a full cache disk (issue 13, point 5) ---------------------------------------
@pytest.fixture
def tiny_disk(tmpfs):
    """A 1 MiB tmpfs: smaller than the archive of test_full_disk_..."""
    return tmpfs("tinydisk", 1 << 20)


def listed_archives_stat(m):
    """Every name archives/ lists, with its stat (which must not fail)."""
    d = m.path("projects", PROJECT, "archives")
    out = {}
    for name in os.listdir(d):
        try:
            out[name] = os.stat(os.path.join(d, name)).st_size
        except OSError as e:
            raise AssertionError("archives/ lists %s but its stat fails: %s" % (name, e))
    return out


@pytest.mark.slow
def test_full_disk_error_after_each_try_and_nothing_listed(tiny_disk, mount_factory, emu):
    m = mount_factory(cache_dir=os.path.join(tiny_disk, "cache"))
    emu.config(rows=20000, compresslevel=0)  # ~1.2 MB: never fits
    job = submit(m)
    assert wait_end(m, job) == "success\n"
    # the error shows after the first failed try, not after the last
    info = wait_for(lambda: (lambda i: i if i["error"] else None)(job_info(m, job)), timeout=30,
                    what="the error in .job.json")
    tries = len(emu.calls("download"))
    assert tries <= 2, "the error showed only after %d tries: %s" % (tries, info)
    assert "No space left on device" in info["error"], info
    # while it fails, archives/ never lists the file (its stat would fail)
    seen = set()
    for _ in range(1):
        before = len(emu.calls("download"))
        wait_for(lambda: len(emu.calls("download")) > before, timeout=30,
                 what="another download try")
        listed = listed_archives_stat(m)
        seen.update(listed)
        info = job_info(m, job)
        assert info["error"], ("a failed try left no error", info)
    assert seen == set(), seen


@pytest.mark.slow
def test_damaged_copy_error_shows_and_file_not_listed_while_fetched_again(mount_factory, emu):
    """A first copy that fails verification is a failed try: .job.json says so at
    once, and while the next copy downloads archives/ does not list the file (it is
    not local; its stat would wait or fail)."""
    m = mount_factory()
    emu.config(rows=20000, compresslevel=0)  # ~1.2 MB at 400 kB/s: 3 s a copy
    emu.set_faults(corrupt_downloads=1, slow_download_bps=400000)
    job = submit(m)
    assert wait_end(m, job) == "success\n"
    wait_for(lambda: "fetching again (1/" in m.read_log(), timeout=30,
             what="the damaged first copy")
    checked = 0

    def copy2_running(i):
        """The second copy downloads and is not whole: nothing of it is published."""
        dl = i["download"]
        return i["archive"] == "fetching" and dl["total"] is not None and \
            dl["done"] < dl["total"]
    adir = m.path("projects", PROJECT, "archives")
    while True:
        before = job_info(m, job)
        names = os.listdir(adir)
        after = job_info(m, job)
        if after["archive"] not in ("queued", "fetching") or len(emu.calls("download")) > 2:
            break
        if copy2_running(before) and copy2_running(after):
            checked += 1
            assert names == [], ("listed while the copy is fetched again", names, after)
            assert after["error"] and "damaged" in after["error"], after
        time.sleep(0.05)
    assert checked > 0, "never saw the second copy downloading"
    names = os.listdir(m.job(job))  # waits for the good copy
    assert "events.csv" in names, (names, job_info(m, job))
    info = wait_for(lambda: (lambda i: i if i["archive"] == "ready" else None)(job_info(m, job)),
                    what="the archive ready")
    assert info["error"] is None, info
    assert list(listed_archives_stat(m)) == [job + ".zip"]
    emu.set_faults()
    assert read(m.archive(job), "rb") == emu_archive(emu, job)


# ---- stat and read of a file whose content changes (issue 13, point 6) -----------
class _Changing:
    """A fake file: each stat and read returns the next of its contents."""

    def __init__(self, stats, reads):
        self.stats, self.reads = list(stats), list(reads)

    def stat(self, path):
        import types
        v = self.stats.pop(0) if len(self.stats) > 1 else self.stats[0]
        return types.SimpleNamespace(st_size=len(v))

    def read(self, path):
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]


def test_stat_read_check_tolerates_a_change_not_a_disagreement():
    fetching = b'{"archive": "fetching"}' + b" " * 596   # 619 bytes
    verifying = b'{"archive": "verifying"}' + b" " * 596  # 620 bytes
    # the tsan-run case: stat before the change, read after it
    f = _Changing([fetching, verifying], [verifying])
    assert stat_read_agree("x", stat=f.stat, readf=f.read, pause=0) == verifying
    # content that keeps changing for a while, then settles
    f = _Changing([fetching, verifying, fetching, verifying, verifying],
                  [verifying, fetching, verifying, verifying])
    assert stat_read_agree("x", stat=f.stat, readf=f.read, pause=0) == verifying
    # a real disagreement: stat says 619 of content that stays 620 bytes
    f = _Changing([fetching], [verifying])
    with pytest.raises(AssertionError, match="did not change"):
        stat_read_agree("x", stat=f.stat, readf=f.read, pause=0)
    # content that never settles: bounded
    f = _Changing([fetching, verifying] * 100, [verifying, fetching] * 100)
    with pytest.raises(AssertionError):
        stat_read_agree("x", tries=10, stat=f.stat, readf=f.read, pause=0)
