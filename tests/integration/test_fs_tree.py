# The tree: root, .stats, projects/, mkdir projects/<id>, project and exports layout.
import errno
import json
import os
import stat

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
