# Logging: -o log_level=error|warn|info|debug decides which lines reach the
# log (stderr with -f); every line names its level, and lines about a job name
# the job.  Large downloads report their progress at info.
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from fshelpers import (AK, FILTER, HCX_BIN, PROJECT, SK, _die_with_parent, expect_errno,
                       run_job)

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} hcexportfs (error|warn|info|debug): (.*)$")
LEVELS = ("error", "warn", "info", "debug")
PROGRESS = re.compile(r"^job ([0-9a-f]{32}): downloaded (\d+) of (\d+) bytes \((\d+)%, "
                      r"[\d.]+ MiB/s\)$")
UNKNOWN = re.compile(r"^job ([0-9a-f]{32}): downloaded (\d+) bytes, size not announced yet "
                     r"\([\d.]+ MiB/s\)$")


def parse(text):
    """[(level, message)] of the log; every line must have the log's format."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        assert m, "log line not in the log format: %r" % line
        out.append((m.group(1), m.group(2)))
    return out


def exercise(mnt):
    """A job that succeeds and a filter that is refused: info and error lines."""
    job = run_job(mnt)
    os.listdir(mnt.job(job))  # waits for the archive
    bad = b'{"recent":"today","dump_columns":[""]}'
    fd = os.open(mnt.new(), os.O_WRONLY)
    try:
        expect_errno(22, os.write, fd, bad)
    finally:
        os.close(fd)
    return job


@pytest.mark.parametrize("level", LEVELS + (None,))
def test_log_level_filters_lines(mount_factory, emu, level):
    m = mount_factory(log_level=level)
    job = exercise(m)
    m.stop()
    lines = parse(m.read_log())
    allowed = LEVELS[:LEVELS.index(level or "info") + 1]
    seen = {lvl for lvl, _ in lines}
    assert seen <= set(allowed), "level %s let through %s" % (level, seen - set(allowed))
    # The refusal is an error: present at every level.
    assert any(lvl == "error" and "filter refused" in msg and PROJECT in msg
               for lvl, msg in lines), lines
    info_lines = [msg for lvl, msg in lines if lvl == "info"]
    if "info" in allowed:
        assert "project %s: submitted job %s" % (PROJECT, job) in info_lines, info_lines
        assert any(msg.startswith("job %s: archive fetched (" % job) for msg in info_lines)
        assert any(msg.startswith("mounted on ") for msg in info_lines)
    else:
        assert info_lines == []
    debug = [msg for lvl, msg in lines if lvl == "debug"]
    if level == "debug":
        # The download call, with the job and the file the cloud named.
        downloads = emu.calls("download")
        assert len(downloads) == 1, downloads
        want = "job %s: GET download of file %s for project %s from byte 0" % (
            job, downloads[0]["file_id"], PROJECT)
        assert want in debug, debug
        assert any(msg.startswith("cache directory /") for msg in debug)
    else:
        assert debug == []


def test_bad_log_level_is_refused(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run([HCX_BIN, "-f", "-o", "endpoint=http://127.0.0.1:9,log_level=verbose,"
                        "cache_dir=%s" % (tmp_path / "c"), str(mnt)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30, env={"HOME": str(tmp_path)})
    assert r.returncode == 1
    assert b"log_level=verbose: expected error, warn, info or debug" in r.stderr, r.stderr
    assert not os.path.ismount(str(mnt))


COLUMNS = ["id", "time", "sip", "attack", "url", "host", "payload", "request_line", "cookie",
           "request_body", "action", "rule", "status", "region", "policyid"]


@pytest.mark.slow
def test_large_download_logs_progress_at_info(mount_factory, emu):
    """~19 MiB stored (level 0), the first transfer cut at half: both the plain 200
    reply (Content-Length) and the resumed 206 (Content-Range) announce the size, so
    progress is a line per tenth, in order across the cut, never repeated."""
    emu.config(rows=80000, compresslevel=0)
    # Throttled to a WAN-like rate: libcurl reports progress on its own
    # schedule, which on a fast loopback transfer can be once at the end.
    emu.set_faults(cut_downloads=1, slow_download_bps=12 << 20)
    m = mount_factory(log_level="info")
    big = run_job(m, {"recent": "today", "dump_columns": COLUMNS})
    os.listdir(m.job(big))
    size = os.stat(m.archive(big)).st_size
    assert size >= 16 << 20, "archive too small for the test: %d" % size
    emu.set_faults()
    emu.config(rows=40, compresslevel=6)
    small = run_job(m)
    os.listdir(m.job(small))
    m.stop()
    lines = parse(m.read_log())
    assert len(emu.calls("download")) == 3  # big twice (cut, resumed), small once
    unknown = [msg for lvl, msg in lines if UNKNOWN.match(msg)]
    tenths = [(lvl, PROGRESS.match(msg)) for lvl, msg in lines if PROGRESS.match(msg)]
    assert not unknown, "the size was announced, yet: %s" % unknown
    assert tenths, "progress lines missing:\n" + m.read_log()
    assert all(lvl == "info" for lvl, _ in tenths)
    assert {p.group(1) for _, p in tenths} == {big}, "only the large archive reports"
    pcts = [int(p.group(4)) for _, p in tenths]
    done = [int(p.group(2)) for _, p in tenths]
    assert pcts == sorted(set(pcts)), pcts
    assert all(pct % 10 == 0 for pct in pcts), pcts
    assert pcts[-1] == 100 and done[-1] == size, (pcts, done)
    assert all(int(p.group(3)) == size for _, p in tenths)
    assert all(d * 10 // size * 10 == pct for d, pct in zip(done, pcts)), list(zip(done, pcts))
    assert any(d <= size // 2 + 1 for d in done), "nothing logged before the cut: %s" % done
    assert any(d > size // 2 + 1 for d in done), "nothing logged after resuming: %s" % done


def test_warn_level_hides_progress_and_calls_shows_retries(mount_factory, emu):
    """warn: neither progress (info) nor the download call (debug) is logged, even
    for a large archive; warnings of a retried download are."""
    emu.config(rows=40000, compresslevel=0)
    emu.set_faults(cut_downloads=1)
    m = mount_factory(log_level="warn")
    job = run_job(m, {"recent": "today", "dump_columns": COLUMNS})
    os.listdir(m.job(job))
    m.stop()
    lines = parse(m.read_log())
    assert {lvl for lvl, _ in lines} <= {"error", "warn"}, lines
    assert any(lvl == "warn" and msg.startswith("job %s: " % job) and "retrying" in msg
               for lvl, msg in lines), lines
    assert len(emu.calls("download")) == 2


LISTENER = r'''
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
with open(sys.argv[1], "ab", buffering=0) as out:
    print("ready", flush=True)
    while True:
        out.write(s.recv(65536).rstrip(b"\0\n") + b"\n")
'''


def serving(mnt):
    """Is an hcexportfs process for mnt still running?"""
    for p in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == b"hcexportfs" and mnt.encode() in argv:
            return True
    return False


def test_daemonized_logs_go_to_syslog(tmp_path, emu):
    """Without -f: lines go to syslog (identity hcexportfs with its pid, facility
    daemon, the level as priority).  Run in a private mount namespace whose /dev
    is a tmpfs holding the needed devices and a /dev/log socket of the test's own."""
    for tool in ("unshare", "nsenter", "fusermount3"):
        if not shutil.which(tool):
            pytest.skip("%s is not installed" % tool)
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespace)")
    received = tmp_path / "syslog"
    olddev = tmp_path / "olddev"
    olddev.mkdir()
    listener = tmp_path / "listener.py"
    listener.write_text(LISTENER)
    setup = ('set -e; mount --bind /dev "$0"; mount -t tmpfs -o mode=755 hcxdev /dev; '
             'for f in null zero full random urandom fuse; do touch /dev/$f; '
             'mount --bind "$0/$f" /dev/$f; done; exec "$1" "$2" "$3"')
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", setup,
                               str(olddev), sys.executable, str(listener), str(received)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    ns = ["nsenter", "-t", str(holder.pid), "-m", "--"]
    try:
        if holder.stdout.readline() != b"ready\n":
            holder.kill()
            holder.wait()
            pytest.skip("no private /dev: %s" % holder.stderr.read().decode(errors="replace"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUAWEICLOUD_SDK_")}
        env.update(CLOUD_SDK_AK=AK, CLOUD_SDK_SK=SK, HOME=str(tmp_path), TZ="UTC")
        r = subprocess.run(ns + [HCX_BIN, "-o", "endpoint=%s,projects=%s,cache_dir=%s,"
                                 "poll_interval=0.2,log_level=debug"
                                 % (emu.url, PROJECT, tmp_path / "cache"), mnt],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0, r.stderr
        exports = os.path.join(mnt, "projects", PROJECT, "exports")
        r = subprocess.run(ns + ["sh", "-c", 'echo "$1" > "$0/new" && cat "$0"/*/.wait && '
                                 'ls "$0"/*/ >/dev/null && '
                                 '{ echo "{\\"recent\\":1}" > "$0/new"; true; }', exports,
                                 json.dumps(FILTER)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert r.stdout == b"success\n", r
        job = [e["job_id"] for e in emu.jobs()][-1]
    finally:
        subprocess.run(ns + ["fusermount3", "-u", "-z", mnt], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while serving(mnt):
            assert time.monotonic() < deadline, "hcexportfs did not exit after the unmount"
            time.sleep(0.05)
        # The last lines may still be in the socket: let the listener drain it.
        deadline = time.monotonic() + 5
        while b"unmounted " not in received.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        holder.kill()
        holder.wait()
        holder.stdout.close()
        holder.stderr.close()
    lines = received.read_text().splitlines()
    # RFC 3164 as glibc sends it: <PRI>Mmm dd hh:mm:ss hcexportfs[PID]: message
    parsed = []
    for line in lines:
        m = re.match(r"^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d hcexportfs\[(\d+)\]: (.*)$", line)
        assert m, "not a syslog line from hcexportfs: %r" % line
        parsed.append((int(m.group(1)), m.group(3)))
    daemon = 3 << 3
    prio = {"error": daemon | 3, "warn": daemon | 4, "info": daemon | 6, "debug": daemon | 7}
    assert (prio["info"], "mounted on %s" % mnt) in parsed, parsed
    assert (prio["info"], "project %s: submitted job %s" % (PROJECT, job)) in parsed, parsed
    assert any(p == prio["debug"] and msg.startswith("job %s: GET download" % job)
               for p, msg in parsed), parsed
    assert any(p == prio["error"] and "filter refused" in msg for p, msg in parsed), parsed
    assert (prio["info"], "unmounted %s" % mnt) in parsed, parsed
