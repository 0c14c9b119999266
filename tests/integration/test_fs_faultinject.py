# Failures injected into a running mount with an LD_PRELOAD library
# (tests/shim/hcxfault.c, built beside each build's binary as
# <build>/tests/libhcxfault.so): the mount answers the one operation that
# failed with its error and stays healthy.
#
# Issue 13, point 4: an open of .stats whose text cannot be built (memory
# runs out) fails with ENOMEM.  The handle made for it is already linked in
# the list of open handles; an earlier version freed it without unlinking,
# and the next open wrote into freed memory (and the list kept a dangling
# entry until the unmount).  Run on the ASan build (the use-after-free is a
# report and an abort) and on the plain build under valgrind (an "Invalid
# write" and exit status 99).
import errno
import json
import os
import re
import shutil

import pytest

import fshelpers
from fshelpers import (HCX_BIN, REPO, VALGRIND, VALGRIND_ARGV, Mount, expect_errno, read,
                       run_job)

PLAIN_BIN = os.environ.get("HCEXPORTFS_PLAIN_BIN") or os.path.join(REPO, "build", "src",
                                                                    "hcexportfs")


def shim_for(binary):
    """libhcxfault.so of the build that made binary (<build>/src/hcexportfs)."""
    build = os.path.dirname(os.path.dirname(os.path.realpath(binary)))
    return os.path.join(build, "tests", "libhcxfault.so")


class ShimMount(Mount):
    """A Mount of a given binary (run under wrapper, e.g. valgrind)."""

    def __init__(self, *args, binary, wrapper=(), **kw):
        super().__init__(*args, **kw)
        self.binary = binary
        self.wrapper = list(wrapper)

    def argv(self):
        argv = super().argv()
        return self.wrapper + [self.binary] + argv[argv.index(HCX_BIN) + 1:]


@pytest.fixture
def shim_mount(tmp_path, emu, monkeypatch):
    """make(variant) -> (ShimMount started with the fault library, trigger path,
    fault count path).  The fault is off until the trigger file exists.  Every mount
    is unmounted at teardown, must exit 0 and leave no sanitizer or valgrind report."""
    mounts = []

    def make(variant):
        if variant == "valgrind":
            if not shutil.which("valgrind"):
                pytest.skip("valgrind is not installed")
            binary, wrapper = PLAIN_BIN, VALGRIND_ARGV
            monkeypatch.setattr(fshelpers, "SLOW", 8)  # start and stop take longer
        else:
            binary, wrapper = HCX_BIN, (VALGRIND_ARGV if VALGRIND else ())
        shim = shim_for(binary)
        if not os.access(binary, os.X_OK) or not os.path.exists(shim):
            pytest.fail("no %s or no %s (build with meson/ninja first)" % (binary, shim))
        trigger, count = tmp_path / "fault-on", tmp_path / "faults"
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = {"LD_PRELOAD": shim, "HCX_FAULT_JSON_KEY": "uptime_s",
               "HCX_FAULT_TRIGGER": str(trigger), "HCX_FAULT_COUNT": str(count),
               # the library comes before the ASan runtime in the load order
               "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
        m = ShimMount(tmp_path, "f%d" % len(mounts), emu.url, str(tmp_path / "cache"),
                      env=env, binary=binary, wrapper=wrapper)
        mounts.append(m)
        m.start()
        return m, trigger, count

    yield make
    problems = []
    for m in mounts:
        problems += m.stop_and_check()
        for i in range(len(m.logs)):
            if re.search(r"^==\d+== ", m.read_log(i), re.M):
                problems.append("valgrind reported:\n" + m.read_log(i)[-6000:])
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def stats(path):
    return json.loads(read(path))


@pytest.mark.parametrize("variant", ["asan", "valgrind"])
def test_stats_open_out_of_memory_fails_and_mount_stays_healthy(shim_mount, variant):
    m, trigger, count = shim_mount(variant)
    path = m.path(".stats")
    before = stats(path)
    assert before["jobs"] == {"running": 0, "success": 0, "failure": 0}, before
    assert not count.exists(), "a fault was injected before the trigger"

    # Its text cannot be built: each open fails with ENOMEM.  The next open
    # links a handle again, and closing one opened before unlinks it: both
    # would write into a failed open's handle if it were freed still linked.
    held = os.open(path, os.O_RDONLY)
    try:
        trigger.touch()
        for _ in range(3):
            expect_errno(errno.ENOMEM, os.open, path, os.O_RDONLY)
        assert json.loads(os.read(held, 1 << 20))["projects"] == before["projects"]
    finally:
        os.close(held)
    assert count.exists() and len(count.read_bytes()) >= 3, "the fault was not injected"
    trigger.unlink()

    # Healthy: .stats opens again (two handles at once), a job runs, the
    # files read, and the unmount (teardown) ends with exit status 0.
    fds = [os.open(path, os.O_RDONLY) for _ in range(2)]
    try:
        texts = [os.read(fd, 1 << 20) for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)
    assert all(json.loads(t)["projects"] == before["projects"] for t in texts), texts
    job = run_job(m)
    assert read(os.path.join(m.job(job), "status")) == "success\n"
    assert stats(path)["jobs"]["success"] == 1
