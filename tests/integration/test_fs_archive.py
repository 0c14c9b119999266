# The archive view of a succeeded job and archives/<job>.zip; read-only rules.
import csv
import errno
import io
import json
import os
import shlex
import stat
import time

import pytest

from fshelpers import (CONTROL, PROJECT, emu_archive, expect_errno, md5s, read, run_job, sh,
                       submit, wait_for, walk_files, zip_entries, zip_mtime)

FLT = {"recent": "today",
       "dump_columns": ["id", "time", "sip", "host", "attack", "action", "rule", "url"],
       "attacks": ["sqli", "xss", "lfi"], "nactions": ["pass"],
       "hosts": ["www.example.com", "api.example.com"], "nrules": ["040001"]}


def entry_stat_checks(jobdir, entries):
    """Every archive entry: listed with its size, 0444, the zip's mtime; dirs 0555."""
    for name, (data, zi) in entries.items():
        p = os.path.join(jobdir, name)
        st = os.stat(p)
        assert stat.S_ISREG(st.st_mode), name
        assert stat.S_IMODE(st.st_mode) == 0o444, (name, oct(st.st_mode))
        assert st.st_size == len(data) == zi.file_size, (name, st.st_size, len(data))
        assert int(st.st_mtime) == zip_mtime(zi), (name, st.st_mtime, zi.date_time)
        parent = os.path.dirname(name)
        while parent:
            dst = os.stat(os.path.join(jobdir, parent))
            assert stat.S_ISDIR(dst.st_mode) and stat.S_IMODE(dst.st_mode) == 0o555, parent
            parent = os.path.dirname(parent)
    jst = os.stat(jobdir)
    assert stat.S_ISDIR(jst.st_mode) and stat.S_IMODE(jst.st_mode) == 0o555


def test_succeeded_job_shows_archive_entries(mnt, emu):
    job = run_job(mnt, FLT)
    names = os.listdir(mnt.job(job))
    assert sorted(names) == sorted(list(CONTROL) + ["manifest.json", "events.csv"]), names
    entries = zip_entries(emu_archive(emu, job))
    entry_stat_checks(mnt.job(job), entries)
    files = walk_files(mnt.job(job))
    assert files == {k: v[0] for k, v in entries.items()}
    # ls -l agrees with the bytes cat returns
    for name in entries:
        p = os.path.join(mnt.job(job), name)
        size = int(sh("ls -ln %s" % shlex.quote(p)).stdout.split()[4])
        assert size == len(sh("cat %s" % shlex.quote(p)).stdout), name
        du = sh("du -b %s" % shlex.quote(p)).stdout.split()[0]
        assert int(du) == size, name


def test_csv_honours_the_filter(mnt, emu):
    emu.config(rows=120)
    t0 = time.time()
    job = run_job(mnt, FLT)
    text = read(os.path.join(mnt.job(job), "events.csv"))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == FLT["dump_columns"]
    data = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert len(data) == 120, len(data)
    manifest = json.loads(read(os.path.join(mnt.job(job), "manifest.json")))
    assert manifest["rows"] == len(data) and manifest["job_id"] == job
    midnight = (int(t0) // 86400) * 86400
    for r in data:
        assert len(r) == len(FLT["dump_columns"])
        assert r["attack"] in FLT["attacks"], r
        assert r["action"] not in FLT["nactions"], r
        assert r["host"] in FLT["hosts"], r
        assert r["rule"] not in FLT["nrules"], r
        assert midnight * 1000 <= int(r["time"]) <= (time.time() + 5) * 1000, r


def test_folders_of_csv_files(mnt, emu):
    emu.config(files=4, folders=2, rows=80)
    job = run_job(mnt)
    top = sorted(os.listdir(mnt.job(job)))
    assert top == sorted(list(CONTROL) + ["manifest.json", "part-001", "part-002"]), top
    assert sorted(os.listdir(os.path.join(mnt.job(job), "part-001"))) == \
        ["events-0001.csv", "events-0003.csv"]
    assert sorted(os.listdir(os.path.join(mnt.job(job), "part-002"))) == \
        ["events-0002.csv", "events-0004.csv"]
    entries = zip_entries(emu_archive(emu, job))
    entry_stat_checks(mnt.job(job), entries)
    assert md5s(walk_files(mnt.job(job))) == md5s({k: v[0] for k, v in entries.items()})
    header = "id,time,attack\n"
    total = 0
    for name, (data, _) in entries.items():
        if name.endswith(".csv"):
            assert data.decode().startswith(header)
            total += data.decode().count("\n") - 1
    assert total == 80


def test_archive_zip_is_byte_identical(mnt, emu):
    emu.config(files=2, folders=1)
    job = run_job(mnt)
    os.listdir(mnt.job(job))
    assert os.listdir(mnt.path("projects", PROJECT, "archives")) == [job + ".zip"]
    served = emu_archive(emu, job)
    z = read(mnt.archive(job), "rb")
    assert z == served
    st = os.stat(mnt.archive(job))
    assert st.st_size == len(served)
    assert stat.S_IMODE(st.st_mode) == 0o444
    # and the unpacked view equals a zipfile reading of that very zip
    entries = zip_entries(z)
    assert md5s(walk_files(mnt.job(job))) == md5s({k: v[0] for k, v in entries.items()})


def test_partial_reads_of_entries(mnt, emu):
    """Random-access reads (pread at odd offsets/sizes) return the right bytes."""
    emu.config(rows=3000, compresslevel=9)
    job = run_job(mnt)
    entries = zip_entries(emu_archive(emu, job))
    data = entries["events.csv"][0]
    assert len(data) > 100000
    fd = os.open(os.path.join(mnt.job(job), "events.csv"), os.O_RDONLY)
    try:
        for off, n in [(len(data) - 10, 100), (12345, 777), (0, 1), (70000, 65536),
                       (1, 3), (len(data), 10), (len(data) + 5000, 10), (50000, 4096)]:
            assert os.pread(fd, n, off) == data[off:off + n], (off, n)
    finally:
        os.close(fd)


def test_running_job_has_only_control_files(mnt, emu):
    emu.config(job_delay=2)
    job = submit(mnt)
    assert sorted(os.listdir(mnt.job(job))) == sorted(CONTROL)
    assert os.listdir(mnt.path("projects", PROJECT, "archives")) == []
    expect_errno(errno.ENOENT, os.stat, mnt.archive(job))
    expect_errno(errno.ENOENT, os.stat, os.path.join(mnt.job(job), "events.csv"))


@pytest.fixture
def done_job(mnt, emu):
    emu.config(files=2, folders=1)
    job = run_job(mnt)
    os.listdir(mnt.job(job))
    return job


def test_writes_inside_job_dir_fail_with_erofs(mnt, done_job):
    d = mnt.job(done_job)
    f = os.path.join(d, "part-001", "events-0001.csv")
    assert os.path.exists(f)
    for target in (f, os.path.join(d, "status"), os.path.join(d, ".job.json"),
                   os.path.join(d, ".wait"), os.path.join(d, "manifest.json")):
        expect_errno(errno.EROFS, os.open, target, os.O_WRONLY)
        expect_errno(errno.EROFS, os.open, target, os.O_RDWR)
        expect_errno(errno.EROFS, os.open, target, os.O_WRONLY | os.O_TRUNC)
        expect_errno(errno.EROFS, os.truncate, target, 0)
        expect_errno(errno.EROFS, os.unlink, target)
        expect_errno(errno.EROFS, os.chmod, target, 0o644)
        expect_errno(errno.EROFS, os.rename, target, target + ".x")
        expect_errno(errno.EROFS, os.utime, target, (1, 1))
    for newname in (os.path.join(d, "newfile"), os.path.join(d, "part-001", "newfile")):
        expect_errno(errno.EROFS, os.open, newname, os.O_WRONLY | os.O_CREAT, 0o644)
        expect_errno(errno.EROFS, os.mkdir, newname)
        expect_errno(errno.EROFS, os.symlink, "x", newname)
        expect_errno(errno.EROFS, os.mknod, newname, 0o644 | stat.S_IFIFO)
        expect_errno(errno.EROFS, os.link, f, newname)
    expect_errno(errno.EROFS, os.rmdir, os.path.join(d, "part-001"))
    expect_errno(errno.EROFS, os.rename, os.path.join(d, "part-001"), os.path.join(d, "p2"))
    expect_errno(errno.EROFS, os.chmod, os.path.join(d, "part-001"), 0o755)
    expect_errno(errno.EROFS, os.chmod, d, 0o755)
    # shells see the failure too
    r = sh("echo hi > %s" % shlex.quote(os.path.join(d, "status")), check=False)
    assert r.returncode != 0 and b"Read-only" in r.stderr, r
    r = sh("touch %s" % shlex.quote(os.path.join(d, "x.csv")), check=False)
    assert r.returncode != 0 and b"Read-only" in r.stderr, r
    # and nothing changed
    assert sorted(os.listdir(d)) == sorted(list(CONTROL) + ["manifest.json", "part-001"])
    assert read(os.path.join(d, "status")) == "success\n"


def test_mkdir_of_known_job_is_eexist(mnt, done_job, emu):
    emu.clear_log()
    expect_errno(errno.EEXIST, os.mkdir, mnt.job(done_job))
    r = sh("mkdir %s" % shlex.quote(mnt.job(done_job)), check=False)
    assert r.returncode != 0 and b"exists" in r.stderr, r
    assert emu.calls("submit") == []
    assert sorted(os.listdir(mnt.exports())) == sorted(["new", done_job])


@pytest.mark.slow
def test_listing_waits_for_a_slow_download(mnt, emu):
    emu.config(rows=20000)
    emu.set_faults(slow_download_bps=400000)
    job = submit(mnt)
    assert read(os.path.join(mnt.job(job), ".wait")) == "success\n"
    info = json.loads(read(os.path.join(mnt.job(job), ".job.json")))
    dl = info["download"]
    assert dl["total"] is None or (isinstance(dl["total"], int) and 0 <= dl["done"] <= dl["total"])
    names = os.listdir(mnt.job(job))  # waits for the archive
    assert "events.csv" in names and "manifest.json" in names, names
    served = emu_archive(emu, job)
    assert read(mnt.archive(job), "rb") == served
    info = json.loads(read(os.path.join(mnt.job(job), ".job.json")))
    assert info["download"]["done"] == info["download"]["total"] == len(served)


@pytest.mark.slow
def test_cache_max_evicts_and_fetches_again(mount_factory, emu):
    """cache_max bounds the archives kept in cache_dir; an evicted archive is fetched
    again when next read."""
    emu.config(rows=2000)
    m = mount_factory(opts={"cache_max": "30K"})
    jobs = [run_job(m) for _ in range(3)]
    served = {j: emu_archive(emu, j) for j in jobs}
    assert all(12000 < len(z) < 30000 for z in served.values()), \
        [len(z) for z in served.values()]
    for j in jobs:
        assert read(m.archive(j), "rb") == served[j]

    def cached_bytes():
        total = 0
        for dirpath, _, files in os.walk(m.cache_dir):
            for fn in files:
                try:  # files come and go while the mount works
                    with open(os.path.join(dirpath, fn), "rb") as f:
                        if f.read(4) == b"PK\x03\x04":
                            total += os.fstat(f.fileno()).st_size
                except FileNotFoundError:
                    pass
        return total
    # eviction runs in the background right after a fetch
    wait_for(lambda: cached_bytes() <= 30 * 1024, timeout=20,
             what="cache_max=30K (%d bytes of archives cached)" % cached_bytes())
    emu.clear_log()
    for j in jobs:  # every job still reads right (fetched again where evicted)
        assert read(os.path.join(m.job(j), "events.csv"), "rb") == \
            zip_entries(served[j])["events.csv"][0]
    assert emu.calls("download"), "nothing was fetched again"


@pytest.mark.slow
def test_tree_listed_before_verification_content_never_wrong(mnt, emu):
    """Once the last byte is here the job's tree may be listed while the archive is still
    being verified ("archive": "verifying" in .job.json); reading waits for verification.
    With the first download damaged (verification fails, the tree is withdrawn and the
    archive fetched again), every read made at any moment returns the cloud's bytes."""
    emu.config(rows=150000)
    emu.set_faults(corrupt_downloads=1)
    job = submit(mnt)
    d = mnt.job(job)
    states, reads = set(), 0
    want = None
    deadline = time.time() + 120
    while time.time() < deadline:
        info = json.loads(read(os.path.join(d, ".job.json")))
        states.add(info["archive"])
        if info["archive"] in ("verifying", "ready"):
            names = os.listdir(d)
            assert "events.csv" in names, (info["archive"], names)
            if want is None:
                want = zip_entries(emu_archive(emu, job))["events.csv"][0]
            got = read(os.path.join(d, "events.csv"), "rb")  # waits for verification
            reads += 1
            assert got == want, "events.csv read wrong bytes (archive was %s)" % info["archive"]
            if info["archive"] == "ready":
                break
        time.sleep(0.005)
    else:
        raise AssertionError("never ready: saw %s" % sorted(states))
    assert len(emu.calls("download")) >= 3, "the damaged download was not fetched again"
    print("archive states seen: %s; %d full reads" % (sorted(states), reads))


def test_cache_max_evicts_an_archive_once_it_is_let_go(mount_factory, emu):
    """Over cache_max while the only candidate is open: it is evicted as soon as its
    last user closes it (not only at the next download)."""
    m = mount_factory(opts={"cache_max": "1K"})
    a = run_job(m)
    f = open(os.path.join(m.job(a), "events.csv"), "rb")  # waits for a's archive
    try:
        assert f.read(10)
        b = run_job(m)
        os.listdir(m.job(b))
        wait_for(lambda: json.loads(read(os.path.join(m.job(b), ".job.json")))["archive"]
                 == "ready", what="b's archive")
        time.sleep(0.3)
        # a is in use, b is the newest: both stay for now
        assert json.loads(read(os.path.join(m.job(a), ".job.json")))["archive"] == "ready"
    finally:
        f.close()
    wait_for(lambda: json.loads(read(os.path.join(m.job(a), ".job.json")))["archive"]
             == "evicted", timeout=10, what="a evicted once closed")
    assert json.loads(read(os.path.join(m.job(b), ".job.json")))["archive"] == "ready"
    assert read(os.path.join(m.job(a), "events.csv"), "rb")  # fetched again
