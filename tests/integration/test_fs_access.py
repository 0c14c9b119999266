# Access: the modes the tree shows, and that with allow_other they are
# enforced (allow_other implies default_permissions): another user browses
# and reads what the modes allow, but cannot submit through `new`, attach or
# forget jobs, or add projects.  Without allow_other other users see nothing.
# The other user is uid/gid 65534 (nobody), run in a subprocess.
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from fshelpers import PROJECT, Mount, run_job, stop_all

NOBODY = 65534

# what each kind of node shows (spec: filesystem.md; only `new` and the directories
# above it are writable, everything under a job directory is read-only)
EXPECTED_MODES = {
    "": 0o755, ".stats": 0o444, "projects": 0o755, "projects/P": 0o755,
    "projects/P/exports": 0o755, "projects/P/exports/new": 0o644,
    "projects/P/exports/J": 0o555, "projects/P/exports/J/status": 0o444,
    "projects/P/exports/J/.job.json": 0o444, "projects/P/exports/J/.wait": 0o444,
    "projects/P/exports/J/events.csv": 0o444, "projects/P/archives": 0o555,
    "projects/P/archives/J.zip": 0o444,
}

# run as nobody: each probe -> "ok" or the errno name
PROBE = r"""
import errno, json, os, sys
mp, project, job = sys.argv[1:4]
exp = os.path.join(mp, "projects", project, "exports")
def probe(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def read(p):
    with open(p, "rb") as f:
        f.read()
def write_new():
    fd = os.open(os.path.join(exp, "new"), os.O_WRONLY)
    try:
        os.write(fd, b'{"recent": "today", "dump_columns": ["id"]}\n')
    finally:
        os.close(fd)
out = {
    "stat_mountpoint": probe(lambda: os.stat(mp)),
    "ls_root": probe(lambda: os.listdir(mp)),
    "ls_exports": probe(lambda: os.listdir(exp)),
    "ls_job": probe(lambda: os.listdir(os.path.join(exp, job))),
    "read_stats": probe(lambda: read(os.path.join(mp, ".stats"))),
    "read_status": probe(lambda: read(os.path.join(exp, job, "status"))),
    "read_job_json": probe(lambda: read(os.path.join(exp, job, ".job.json"))),
    "read_entry": probe(lambda: read(os.path.join(exp, job, "events.csv"))),
    "read_zip": probe(lambda: read(os.path.join(mp, "projects", project, "archives",
                                                job + ".zip"))),
    "read_new": probe(lambda: read(os.path.join(exp, "new"))),
    "write_new": probe(write_new),
    "create_in_exports": probe(lambda: os.close(os.open(os.path.join(exp, "x"),
                                                        os.O_CREAT | os.O_WRONLY, 0o644))),
    "mkdir_attach": probe(lambda: os.mkdir(os.path.join(exp, "f" * 32))),
    "rmdir_job": probe(lambda: os.rmdir(os.path.join(exp, job))),
    "mkdir_project": probe(lambda: os.mkdir(os.path.join(mp, "projects", "b" * 32))),
    "write_in_job": probe(lambda: os.close(os.open(os.path.join(exp, job, "status"),
                                                   os.O_WRONLY))),
}
print(json.dumps(out))
"""


def as_nobody(*args):
    def drop():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    r = subprocess.run([sys.executable, "-c", PROBE] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=drop,
                       timeout=30, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


@pytest.fixture
def public_mount(emu):
    """make(opts) -> a started Mount whose mount point other users can reach (pytest's
    own temp dirs are 0700).  Unmounted, logs checked and removed at teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another uid")
    top = tempfile.mkdtemp(prefix="hcx-access-", dir="/tmp")
    os.chmod(top, 0o755)
    mounts = []

    def make(opts):
        m = Mount(top, "m%d" % len(mounts), emu.url, os.path.join(top, "cache%d" % len(mounts)),
                  opts=opts)
        mounts.append(m)
        return m.start()
    yield make
    problems = stop_all(mounts)
    shutil.rmtree(top, ignore_errors=True)
    assert not problems, problems


def mount_options(mountpoint):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == mountpoint:
                sep = fields.index("-")
                return set(fields[5].split(",")) | set(fields[sep + 3].split(","))
    raise AssertionError("%s is not in mountinfo" % mountpoint)


def test_modes_and_owner_of_the_tree(mnt, emu):
    job = run_job(mnt)
    os.listdir(mnt.job(job))
    for rel, mode in EXPECTED_MODES.items():
        path = os.path.join(mnt.mountpoint, rel.replace("/P", "/" + PROJECT)
                            .replace("/J", "/" + job))
        st = os.lstat(path)
        assert stat.S_IMODE(st.st_mode) == mode, "%s: mode %04o, expected %04o" % (
            rel, stat.S_IMODE(st.st_mode), mode)
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), rel


@pytest.mark.parametrize("opts", [{"allow_other": True},
                                  {"allow_other": True, "default_permissions": True}],
                         ids=["allow_other", "allow_other+default_permissions"])
def test_allow_other_enforces_the_modes(public_mount, emu, opts):
    m = public_mount(opts)
    assert {"allow_other", "default_permissions"} <= mount_options(m.mountpoint), \
        "allow_other must imply default_permissions"
    job = run_job(m)
    os.listdir(m.job(job))
    emu.clear_log()
    got = as_nobody(m.mountpoint, PROJECT, job)
    # browsing and reading: the modes allow it
    for k in ("stat_mountpoint", "ls_root", "ls_exports", "ls_job", "read_stats", "read_status",
              "read_job_json", "read_entry", "read_zip", "read_new"):
        assert got[k] == "ok", (k, got)
    # changing anything: the modes forbid it (the kernel says so before we are asked)
    for k in ("write_new", "create_in_exports", "mkdir_attach", "rmdir_job", "mkdir_project",
              "write_in_job"):
        assert got[k] == "EACCES", (k, got)
    assert emu.log() == [], "another user's attempt reached the cloud: %r" % emu.log()
    assert sorted(os.listdir(m.exports())) == sorted(["new", job])
    assert sorted(os.listdir(m.path("projects"))) == [PROJECT]
    # the owner still can
    job2 = run_job(m)
    assert len(emu.calls("submit")) == 1
    assert sorted(os.listdir(m.exports())) == sorted(["new", job, job2])
    # the cache directory behind the mount is private
    assert stat.S_IMODE(os.stat(m.cache_dir).st_mode) == 0o700


def test_without_allow_other_others_see_nothing(public_mount, emu):
    m = public_mount({})
    job = run_job(m)
    got = as_nobody(m.mountpoint, PROJECT, job)
    assert set(got.values()) == {"EACCES"}, got
    assert emu.calls("submit") and len(emu.calls("submit")) == 1


def test_write_to_new_refused_is_not_a_submit(public_mount, emu):
    """The refusal happens at open(): no filter body is ever read or sent."""
    m = public_mount({"allow_other": True})
    job = run_job(m)
    emu.clear_log()
    before = json.loads(open(m.path(".stats")).read())
    got = as_nobody(m.mountpoint, PROJECT, job)
    assert got["write_new"] == "EACCES"
    after = json.loads(open(m.path(".stats")).read())
    assert before["submits"] == 1 and after["submits"] == 1, (before, after)
    assert emu.calls("submit") == []
