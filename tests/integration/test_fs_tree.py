# The tree: root, .stats, projects/, mkdir projects/<id>, project and exports layout.
import ctypes
import errno
import json
import os
import signal
import stat
import subprocess
import time

from fshelpers import OTHER_PROJECT, PROJECT, expect_errno, read, run_job, submit


def test_root_lists_stats_and_projects(mnt):
    assert sorted(os.listdir(mnt.mountpoint)) == [".stats", "projects"]
    assert stat.S_ISDIR(os.stat(mnt.path("projects")).st_mode)
    assert stat.S_ISREG(os.stat(mnt.path(".stats")).st_mode)


def test_stats_is_json_with_contract_keys(mnt, emu):
    job = run_job(mnt)
    assert "events.csv" in os.listdir(mnt.job(job))  # listing waits for the archive
    read(os.path.join(mnt.job(job), "events.csv"))
    text = read(mnt.path(".stats"))
    st = json.loads(text)
    assert isinstance(st, dict)
    for key in ("calls", "retries", "bytes_downloaded", "jobs", "cache", "reads", "uptime_s"):
        assert key in st, "key %r missing from .stats: %s" % (key, text)
    assert st["bytes_downloaded"] == os.stat(mnt.archive(job)).st_size, st
    assert st["jobs"].get("success") == 1, st["jobs"]
    assert "submit" in st["calls"] and "query" in st["calls"], st["calls"]
    assert st["cache"], st["cache"]
    assert st["reads"] >= 1, st
    assert isinstance(st["uptime_s"], (int, float)) and st["uptime_s"] >= 0
    # size agrees with content closely enough for cat (it is regenerated live)
    assert os.stat(mnt.path(".stats")).st_mode & 0o222 == 0, "'.stats' must be read-only"
    expect_errno((errno.EACCES, errno.EROFS, errno.EPERM), open, mnt.path(".stats"), "w")


def test_projects_lists_configured_projects(mount_factory, emu):
    m = mount_factory(projects=PROJECT + ":" + OTHER_PROJECT)
    assert sorted(os.listdir(m.path("projects"))) == sorted([PROJECT, OTHER_PROJECT])
    for pid in (PROJECT, OTHER_PROJECT):
        assert sorted(os.listdir(m.project(pid))) == ["archives", "event-logs", "exports"]
        assert os.listdir(m.exports(pid)) == ["new"]
        assert os.listdir(m.path("projects", pid, "archives")) == []


def test_unknown_project_is_enoent(mnt):
    expect_errno(errno.ENOENT, os.stat, mnt.project("ffffffffffffffffffffffffffffffff"))
    expect_errno(errno.ENOENT, os.stat, mnt.path("nothing-here"))


def test_mkdir_project_adds_it_and_is_remembered(mount_factory, emu):
    m = mount_factory()
    assert os.listdir(m.path("projects")) == [PROJECT]
    os.mkdir(m.project(OTHER_PROJECT))
    assert sorted(os.listdir(m.path("projects"))) == sorted([PROJECT, OTHER_PROJECT])
    assert sorted(os.listdir(m.project(OTHER_PROJECT))) == ["archives", "event-logs", "exports"]
    # the new project is usable at once
    job = run_job(m, pid=OTHER_PROJECT)
    assert job in os.listdir(m.exports(OTHER_PROJECT))
    expect_errno(errno.EEXIST, os.mkdir, m.project(OTHER_PROJECT))
    m.remount()
    assert sorted(os.listdir(m.path("projects"))) == sorted([PROJECT, OTHER_PROJECT])
    assert job in os.listdir(m.exports(OTHER_PROJECT))


def test_exports_lists_new_and_one_dir_per_job(mnt, emu):
    assert os.listdir(mnt.exports()) == ["new"]
    st = os.stat(mnt.new())
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    jobs = [submit(mnt) for _ in range(3)]
    names = os.listdir(mnt.exports())
    assert sorted(names) == sorted(["new"] + jobs), names
    for j in jobs:
        assert stat.S_ISDIR(os.stat(mnt.job(j)).st_mode)
    # a running job's directory holds only the control files
    for j in jobs:
        assert set(os.listdir(mnt.job(j))) >= {"status", ".job.json", ".wait"}


def _names_of(it):
    return [e.name for e in it]


def test_listing_is_one_snapshot_names_added_meanwhile_neither_repeat_nor_hide(mount_factory):
    # Offsets of a listing are indices: without a snapshot per open
    # directory, names added before the offset between two buffers shift
    # the rest, and the next buffer repeats names of the one before.
    m = mount_factory()
    projects = m.path("projects")
    late = ["%032x" % (0xe << 124 | i) for i in range(150)]
    for pid in late:
        os.mkdir(os.path.join(projects, pid))
    before = sorted(os.listdir(projects))
    assert len(before) == 151
    early = ["%032x" % (i + 1) for i in range(40)]
    with os.scandir(projects) as it:
        first = next(it).name  # one buffer, less than the whole directory
        for pid in early:
            os.mkdir(os.path.join(projects, pid))
        names = [first] + _names_of(it)
    assert len(names) == len(set(names)), \
        "repeated: %r" % sorted(n for n in set(names) if names.count(n) > 1)
    assert sorted(names) == before, "a listing shows the directory as it was when it began"
    assert sorted(os.listdir(projects)) == sorted(before + early)


def test_rewinddir_takes_a_fresh_snapshot(mount_factory):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.opendir.argtypes = [ctypes.c_char_p]
    libc.readdir.restype = ctypes.c_void_p
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.rewinddir.argtypes = [ctypes.c_void_p]
    libc.closedir.argtypes = [ctypes.c_void_p]
    name_at = 8 + 8 + 2 + 1  # struct dirent on Linux: d_ino, d_off, d_reclen, d_type, d_name

    def read_all(d):
        out = []
        while True:
            ent = libc.readdir(d)
            if not ent:
                return out
            out.append(ctypes.string_at(ent + name_at).decode())

    m = mount_factory()
    projects = m.path("projects")
    d = libc.opendir(projects.encode())
    assert d, os.strerror(ctypes.get_errno())
    try:
        assert sorted(read_all(d)) == [".", "..", PROJECT]
        os.mkdir(m.project(OTHER_PROJECT))
        libc.rewinddir(d)
        assert sorted(read_all(d)) == sorted([".", "..", PROJECT, OTHER_PROJECT])
    finally:
        libc.closedir(d)


def test_listed_inodes_are_let_go_when_the_kernel_forgets_them(mount_factory):
    # readdirplus hands the kernel an inode with each entry (a lookup each);
    # once the kernel drops its caches every one is forgotten again, so a
    # mount browsed for weeks does not keep a number for every name it showed.
    m = mount_factory()
    projects = m.path("projects")

    def inodes():
        return json.loads(read(m.path(".stats")))["inodes"]

    base = inodes()
    for i in range(60):
        os.mkdir(os.path.join(projects, "%032x" % (0xd << 124 | i)))
    for _ in range(3):
        with os.scandir(projects) as it:
            for e in it:
                e.stat()
        for pid in os.listdir(projects)[:20]:
            os.listdir(os.path.join(projects, pid))
    assert inodes() > base + 60
    deadline = time.monotonic() + 10
    while inodes() > base + 2 and time.monotonic() < deadline:
        subprocess.run(["sh", "-c", "sync; echo 2 > /proc/sys/vm/drop_caches"], check=True)
        time.sleep(0.2)
    assert inodes() <= base + 2, "inodes kept after the kernel forgot them: %d (from %d)" % (
        inodes(), base)


def test_directories_open_at_the_end_are_freed(mount_factory):
    # A directory still open when the mount ends (the kernel's releasedir is
    # asynchronous and never comes then) holds its listing's snapshot: freed
    # at the end like open files, or the sanitizer build reports a leak.
    m = mount_factory()
    held = [os.open(p, os.O_RDONLY | os.O_DIRECTORY)
            for p in (m.path("projects"), m.exports(), m.path("projects", PROJECT, "archives"))]
    try:
        for fd in held:
            os.listdir(fd)  # a snapshot on each handle
        m.kill(signal.SIGTERM)
    finally:
        for fd in held:
            os.close(fd)
    problems = m.check_logs()
    assert not problems, problems
