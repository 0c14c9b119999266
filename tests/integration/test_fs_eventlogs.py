# projects/<id>/event-logs/ (issue 15): every file of WAF's event-log list under
# its cleaned name (clashes get "-<id>", empty names "<id>.csv"), exact sizes and
# generation times before any read and across remounts, a second rsync copies
# nothing, a job's file downloaded once, an expired URL, a file that leaves the
# list, 5,000 files, cache_max.  Skipped while the mount has no event-logs/.
import errno
import json
import os
import subprocess
import time

import pytest

from fshelpers import PROJECT, emuharness, read, run_job, wait_for


def evdir(m):
    return m.path("projects", PROJECT, "event-logs")


@pytest.fixture
def quiet(emu):
    """No seeded daily or foreign files: each test's list is its own."""
    emu.config(daily_files=0, daily_future=0, foreign_files=0)
    return emu


@pytest.fixture
def evm(mount_factory, quiet):
    m = mount_factory()
    if "event-logs" not in os.listdir(m.project()):
        pytest.skip("this build has no event-logs/ folder")
    return m


def ls_l(m):
    return {e.name: e.stat() for e in os.scandir(evdir(m))}


def stats(m):
    return json.loads(read(m.path(".stats")))["event_logs"]


def storage(emu, file_id=None, probes=False):
    """Storage GETs (of one file): downloads, or the one-byte size probes."""
    return [e for e in emu.storage_log() if e["method"] == "GET" and
            (file_id is None or e.get("file_id") == file_id) and
            (e.get("range") == "bytes=0-0") == probes]


def expected_names(ids, clash_every, empty_every):
    """Names of bulk files 0..n-1 (newest first): the older of two namesakes keeps
    the plain name, the newer gets "-<id>"; an empty name is "<id>.csv"."""
    def fname(i):
        if empty_every and i % empty_every == empty_every - 1:
            return ""
        if clash_every and i % clash_every == clash_every - 1 and i > 0:
            i -= 1
        return "waf-bulk-%05d.csv" % i
    out = {}
    for i, fid in enumerate(ids):
        n = fname(i)
        if not n:
            out[fid] = fid + ".csv"
        elif i + 1 < len(ids) and fname(i + 1) == n:
            out[fid] = n[:-4] + "-" + fid + ".csv"
        else:
            out[fid] = n
    return out


def test_names_sizes_times_equal_what_cat_returns(evm, emu):
    ids = emu.bulk_files(count=40, clash_every=5, empty_every=7, step_ms=1000)["files"]
    names = expected_names(ids, 5, 7)
    st = ls_l(evm)
    assert sorted(st) == sorted(names.values())
    assert storage(emu) == [], "listing downloaded a file"
    assert len(storage(emu, probes=True)) == 40
    files = {f["id"]: f for f in emu.files(PROJECT)}
    for fid, name in names.items():
        s = st[name]
        assert s.st_mtime == files[fid]["timestamp"] // 1000, name
        assert s.st_mode & 0o777 == 0o444
        data = read(os.path.join(evdir(evm), name), "rb")
        assert len(data) == s.st_size, name
    for fid, name in list(names.items())[:3]:
        assert read(os.path.join(evdir(evm), name), "rb") == emuharness.download(emu, fid)
    with pytest.raises(OSError) as e:
        open(os.path.join(evdir(evm), "nosuch.csv"))
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        open(os.path.join(evdir(evm), names[ids[0]]), "w")
    assert e.value.errno in (errno.EACCES, errno.EROFS)
    s = stats(evm)
    assert s["files_fetched"] == 40 and s["size_probes"] == 40 and s["list_calls"] >= 1


def rsync(src, dst):
    r = subprocess.run(["rsync", "-a", "--itemize-changes", src, dst], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0, r.stderr
    return [l for l in r.stdout.decode().splitlines() if l[:1] in "<>ch.*" and " " in l]


def test_stable_across_remount_and_second_rsync_copies_nothing(evm, emu, tmp_path):
    emu.bulk_files(count=10, clash_every=4, empty_every=6)
    dst = str(tmp_path / "backup") + "/"
    first = rsync(evm.path("projects", PROJECT, "event-logs") + "/", dst)
    assert len([l for l in first if l.startswith(">f")]) == 10
    before = {n: (s.st_size, s.st_mtime, s.st_ino) for n, s in ls_l(evm).items()}
    evm.remount()
    emu.clear_log()
    after = {n: (s.st_size, s.st_mtime) for n, s in
             ((n, os.stat(os.path.join(evdir(evm), n))) for n in before)}
    assert after == {n: v[:2] for n, v in before.items()}
    assert emu.log() == [], "stat after a remount called the cloud"
    assert rsync(evm.path("projects", PROJECT, "event-logs") + "/", dst) == []
    assert storage(emu) == [], "the second rsync downloaded"


def test_job_file_downloaded_once(evm, emu):
    emu.config(waf_file_link="id")
    job = run_job(evm)
    os.listdir(evm.job(job))  # its archive is local
    name = json.loads(read(os.path.join(evm.job(job), ".job.json")))["file_name"]
    time.sleep(0.3)
    st = ls_l(evm)
    assert name in st
    data = read(os.path.join(evdir(evm), name), "rb")
    assert len(data) == st[name].st_size and data == read(evm.archive(job), "rb")
    assert len(storage(emu, job)) == 1 and storage(emu, job, probes=True) == []
    assert stats(evm)["shared_with_jobs"] >= 1


def test_expired_url(evm, emu):
    ids = emu.bulk_files(count=2)["files"]
    names = expected_names(ids, 0, 0)
    ls_l(evm)
    emu.config(clock_offset=700)  # the listed URLs expired 100 s ago
    data = read(os.path.join(evdir(evm), names[ids[1]]), "rb")
    assert data.startswith(b"id,time,sip,attack\n")
    codes = [e["status"] for e in emu.storage_log() if e.get("range") is None]
    assert codes[-2:] == [403, 200], codes


def test_file_that_leaves_the_list(evm, emu):
    ids = emu.bulk_files(count=3)["files"]
    names = expected_names(ids, 0, 0)
    gone = os.path.join(evdir(evm), names[ids[1]])
    assert read(gone, "rb")
    copies = [f for d, _, fs in os.walk(evm.cache_dir) for f in fs if ids[1] in f]
    assert copies, "no local copy"
    emu.remove_file(ids[1])
    time.sleep(0.3)
    assert sorted(ls_l(evm)) == sorted([names[ids[0]], names[ids[2]]])
    with pytest.raises(FileNotFoundError):
        os.stat(gone)
    assert not [f for d, _, fs in os.walk(evm.cache_dir) for f in fs if ids[1] in f]


@pytest.mark.slow
def test_five_thousand_files(mount_factory, quiet):
    # poll_interval longer than any ls -l here: one refresh cold, none warm,
    # however slow the machine (under valgrind a first ls -l outlasts 0.2 s)
    emu = quiet
    evm = mount_factory(poll_interval=30)
    emu.bulk_files(count=5000, clash_every=100, empty_every=1000, build=True)
    emu.clear_log()
    t0 = time.monotonic()
    st = ls_l(evm)
    first = time.monotonic() - t0
    lists = len(emu.api_calls("event_dump"))
    probes = len(storage(emu, probes=True))
    assert len(st) == 5000 and lists == 50 and probes == 5000, (len(st), lists, probes)
    emu.clear_log()
    t0 = time.monotonic()
    assert len(ls_l(evm)) == 5000
    second = time.monotonic() - t0
    assert storage(emu, probes=True) == [] and emu.api_calls("event_dump") == []
    print("ls -l of 5000 event-log files: %.2f s first (%d list calls, %d probes), %.2f s "
          "second" % (first, lists, probes, second))


def test_cache_max_evicts_and_fetches_again(mount_factory, quiet):
    emu = quiet
    ids = emu.bulk_files(count=4, rows=300)["files"]
    m = mount_factory(opts={"cache_max": "60K"})
    if "event-logs" not in os.listdir(m.project()):
        pytest.skip("this build has no event-logs/ folder")
    names = expected_names(ids, 0, 0)
    sizes = {n: s.st_size for n, s in ls_l(m).items()}
    assert sum(sizes.values()) > 60 * 1024 > max(sizes.values()) * 2, sizes
    first = read(os.path.join(evdir(m), names[ids[0]]), "rb")
    for fid in ids[1:]:
        read(os.path.join(evdir(m), names[fid]), "rb")
    wait_for(lambda: stats(m)["evicted"] >= 1, what="an eviction")
    assert stats(m)["cached_bytes"] <= 60 * 1024
    assert read(os.path.join(evdir(m), names[ids[0]]), "rb") == first
    assert len(storage(emu, ids[0])) == 2


def test_refused_list_answers_without_a_storm(mount_factory, quiet):
    """Every list call refused (429 with Retry-After 0): a stat of a name and a
    listing answer with an error, the list is asked again at most once per
    poll_interval, never in a loop."""
    quiet.patch_faults(every_nth=1, nth_status=429, retry_after=0, nth_calls=["list"])
    m = mount_factory(poll_interval=2)
    if "event-logs" not in os.listdir(m.project()):
        pytest.skip("this build has no event-logs/ folder")
    quiet.clear_log()
    t0 = time.monotonic()
    # In children: a lookup that never answers must fail the test, not hang it.
    for argv in (["stat", os.path.join(evdir(m), "whatever.csv")], ["ls", evdir(m)]):
        try:
            r = subprocess.run(argv, capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("%s did not answer while the list is refused" % argv[0])
        assert r.returncode != 0, r
    took = time.monotonic() - t0
    time.sleep(1)
    calls = len(quiet.api_calls("event_dump"))
    # One refresh (with its bounded retries of a 429), not one per lookup.
    assert calls <= 12, "%d list calls in %.1f s" % (calls, took + 1)
    quiet.patch_faults(every_nth=0)


def test_first_listing_bounded_while_sizes_hang(mount_factory, quiet):
    """A first listing whose size probes hang answers after request_timeout
    with what it knows (here nothing), not after every probe gave up."""
    quiet.bulk_files(count=8, name_prefix="hang-", build=True)
    quiet.patch_faults(hang_calls=["download"])
    try:
        m = mount_factory(opts={"request_timeout": "2"})
        if "event-logs" not in os.listdir(m.project()):
            pytest.skip("this build has no event-logs/ folder")
        t0 = time.monotonic()
        names = os.listdir(evdir(m))
        took = time.monotonic() - t0
        assert took < 8, "first listing took %.1f s" % took
        assert not [n for n in names if n.startswith("hang-")], names
    finally:
        quiet.patch_faults(hang_calls=[])


def test_open_job_file_keeps_the_job_archive_from_eviction(mount_factory, quiet):
    """event-logs/<name> of a job's file reads the job's archive: while it is
    open the archive is in use, as an open archives/ file is, and it goes only
    once let go."""
    emu = quiet
    emu.config(waf_file_link="id")
    m = mount_factory(opts={"cache_max": "1K"})
    if "event-logs" not in os.listdir(m.project()):
        pytest.skip("this build has no event-logs/ folder")

    def archive(job):
        return json.loads(read(os.path.join(m.job(job), ".job.json")))["archive"]

    a = run_job(m)
    os.listdir(m.job(a))  # a's archive is local
    name = json.loads(read(os.path.join(m.job(a), ".job.json")))["file_name"]
    time.sleep(0.3)
    assert name in ls_l(m)
    f = open(os.path.join(evdir(m), name), "rb")
    try:
        head = f.read(4)
        assert stats(m)["shared_with_jobs"] >= 1 and storage(emu, a, probes=False)
        b = run_job(m)
        os.listdir(m.job(b))
        wait_for(lambda: archive(b) == "ready", what="b's archive")
        time.sleep(0.3)
        # a is in use through event-logs/, b is the newest: both stay for now
        assert archive(a) == "ready"
        f.seek(0)
        assert f.read() == read(m.archive(a), "rb") and head
    finally:
        f.close()
    wait_for(lambda: archive(a) == "evicted", timeout=10, what="a evicted once closed")
    assert archive(b) == "ready"


@pytest.mark.parametrize("content_range", [True, False])
def test_empty_file_is_listed_with_size_zero(evm, emu, content_range):
    """An empty object answers the one-byte size probe 416, with or without
    Content-Range: bytes */0 (stores differ); either way the file shows, empty."""
    emu.set_faults(range_416_content_range=content_range)
    ids = emu.bulk_files(count=2, format="empty")["files"]
    names = expected_names(ids, 0, 0)
    st = ls_l(evm)
    assert sorted(st) == sorted(names.values()), st
    for fid, name in names.items():
        assert st[name].st_size == 0
        assert read(os.path.join(evdir(evm), name), "rb") == b""
    assert len(storage(emu, probes=True)) == 2


def test_failed_size_probes_wait_before_they_are_asked_again(mount_factory, quiet):
    """Storage refusing every file: the list is refreshed each poll_interval, but
    a file whose size probe failed is not probed again on every refresh (a
    pause that doubles, from 30 s); the files show once storage answers."""
    emu = quiet
    ids = emu.bulk_files(count=3)["files"]
    m = mount_factory(poll_interval=0.1)
    if "event-logs" not in os.listdir(m.project()):
        pytest.skip("this build has no event-logs/ folder")
    emu.set_faults(storage_fault="denied")
    assert ls_l(m) == {}
    first = len(storage(emu, probes=True))
    assert first >= 3
    lists = len(emu.api_calls("event_dump"))
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert ls_l(m) == {}
        time.sleep(0.2)
    assert len(emu.api_calls("event_dump")) > lists, "the list itself is refreshed"
    assert len(storage(emu, probes=True)) == first, "failed probes asked again at once"
    emu.set_faults()
    m.remount()
    assert sorted(ls_l(m)) == sorted(expected_names(ids, 0, 0).values())
