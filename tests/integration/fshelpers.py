# fshelpers -- shared helpers for the hcexportfs integration tests: running the
# filesystem (Mount), submitting through `new`, waiting for jobs, comparing a
# job directory with its zip archive.  Standard library only.
import calendar
import ctypes
import errno
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import emuharness  # noqa: E402
from emuharness import AK, PROJECT, SK  # noqa: E402,F401

HCX_BIN = os.environ.get("HCEXPORTFS_BIN") or os.path.join(REPO, "build", "src", "hcexportfs")
# HCEXPORTFS_VALGRIND=1 (tests/valgrind-run): every mount runs under valgrind memcheck;
# a memory error or a definite/indirect leak makes it exit 99 (a failed unmount) and
# its "==PID==" lines fail the test's log check.
VALGRIND = os.environ.get("HCEXPORTFS_VALGRIND") == "1"
VALGRIND_ARGV = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
                 "--errors-for-leak-kinds=definite,indirect", "--show-leak-kinds=definite,indirect",
                 "--num-callers=30"]
SLOW = 8 if VALGRIND else 1  # how much longer start and stop may take

# Extra credentials the shared emulator accepts (besides AK/SK).
STATIC_TOKEN = "hcx-static-token-7Yq2pLm9Xc4Rt8Vb"
USER, PASSWORD, DOMAIN = "alice", "pw-Zr8#kQ2!vN5", "acme"
OTHER_PROJECT = "f0e1d2c3b4a5968778695a4b3c2d1e0f"

FILTER = {"recent": "today", "dump_columns": ["id", "time", "attack"]}
CONTROL = ("status", ".job.json", ".wait")
JOB_RE = re.compile(r"^([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")  # WAF job, HSS task
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

SUSPICIOUS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "Segmentation",
              "ThreadSanitizer", "stack-buffer", "heap-use-after-free") + \
    (("Invalid read", "Invalid write", "uninitialised", "definitely lost",
      "indirectly lost", "Invalid free", "Mismatched free") if VALGRIND else ())


def filter_bytes(flt=None, newline=True):
    s = json.dumps(FILTER if flt is None else flt)
    return (s + ("\n" if newline else "")).encode()


def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies (a killed pytest
    must not leave mounts behind; hcexportfs unmounts on SIGTERM)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def describe_rc(rc):
    if rc is not None and rc < 0:
        try:
            return "signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return "exit code %s" % rc


class Mount:
    """One hcexportfs mount point; start() may be called again after stop() (remount).
    Every run's stderr goes to its own log file, which check_logs() scans."""

    def __init__(self, tmpdir, name, url, cache_dir, projects=PROJECT, poll_interval=0.2,
                 opts=None, env=None, ak=AK, sk=SK, secrets=(), endpoint=True, log_level="debug"):
        self.tmpdir = str(tmpdir)
        self.name = name
        self.url = url
        self.cache_dir = cache_dir
        self.projects = projects
        self.poll_interval = poll_interval
        self.opts = dict(opts or {})
        self.endpoint = endpoint
        self.log_level = log_level
        self.mountpoint = os.path.join(self.tmpdir, name + "-mnt")
        self.home = os.path.join(self.tmpdir, name + "-home")
        os.makedirs(self.mountpoint, exist_ok=True)
        os.makedirs(self.home, exist_ok=True)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("HUAWEICLOUD_SDK_", "CLOUD_SDK_", "XDG_CACHE_HOME"))}
        base["HOME"] = self.home
        base["TZ"] = "UTC"
        if ak is not None:
            base["CLOUD_SDK_AK"] = ak
        if sk is not None:
            base["CLOUD_SDK_SK"] = sk
        base.update(env or {})
        self.env = {k: v for k, v in base.items() if v is not None}
        self.secrets = [s for s in (SK, PASSWORD, STATIC_TOKEN) + tuple(secrets) if s]
        if sk:
            self.secrets.append(sk)
        self.proc = None
        self.logs = []
        self.runs = 0

    # ---- paths -----------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.mountpoint, *parts)

    def project(self, pid=PROJECT):
        return self.path("projects", pid)

    def exports(self, pid=PROJECT):
        return self.path("projects", pid, "exports")

    def new(self, pid=PROJECT):
        return self.path("projects", pid, "exports", "new")

    def job(self, job_id, pid=PROJECT):
        return self.path("projects", pid, "exports", job_id)

    def archive(self, job_id, pid=PROJECT):
        return self.path("projects", pid, "archives", job_id + ".zip")

    # ---- running -----------------------------------------------------------
    def argv(self):
        o = []
        if self.endpoint:
            o.append("endpoint=" + self.url)
        if self.projects:
            o.append("projects=" + self.projects)
        if self.cache_dir:
            o.append("cache_dir=" + self.cache_dir)
        if self.poll_interval is not None:
            o.append("poll_interval=%s" % self.poll_interval)
        if self.log_level:
            o.append("log_level=" + self.log_level)
        for k, v in self.opts.items():
            o.append(k if v is True else "%s=%s" % (k, v))
        return (VALGRIND_ARGV if VALGRIND else []) + [HCX_BIN, "-f", "-o", ",".join(o),
                                                      self.mountpoint]

    def start(self, timeout=10):
        timeout *= SLOW
        assert self.proc is None, "already running"
        self.runs += 1
        log = os.path.join(self.tmpdir, "%s-fs-%d.log" % (self.name, self.runs))
        self.logs.append(log)
        with open(log, "wb") as errf:
            self.proc = subprocess.Popen(self.argv(), env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=errf, stderr=errf, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise AssertionError("hcexportfs exited with %s before mounting; log:\n%s"
                                     % (rc, self.read_log()))
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("hcexportfs did not mount in %ss; log:\n%s"
                                     % (timeout, self.read_log()))
            time.sleep(0.02)
        return self

    def read_log(self, which=-1):
        try:
            with open(self.logs[which], "rb") as f:
                return f.read().decode(errors="replace")
        except (IndexError, OSError):
            return ""

    def all_logs(self):
        return "".join(self.read_log(i) for i in range(len(self.logs)))

    def unmount(self):
        subprocess.run(["fusermount3", "-u", "-z", self.mountpoint],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        """Unmount and wait for the process (killed after 10 s).  Returns its exit code."""
        if self.proc is None:
            if os.path.ismount(self.mountpoint):
                self.unmount()
            return None
        early = self.proc.poll()
        if early is not None:
            self.proc = None
            self.unmount()
            raise AssertionError("hcexportfs had died before the unmount (%s); log:\n%s"
                                 % (describe_rc(early), self.read_log()[-4000:]))
        self.unmount()
        try:
            rc = self.proc.wait(10 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            self.proc = None
            raise AssertionError("hcexportfs did not exit within %d s of fusermount3 -u -z"
                                 % (10 * SLOW))
        self.proc = None
        if rc != 0:
            raise AssertionError("hcexportfs exited with %s after fusermount3 -u; log:\n%s"
                                 % (describe_rc(rc), self.read_log()[-4000:]))
        return rc

    def kill(self, sig=signal.SIGKILL):
        """Kill the process (default SIGKILL), then clear the dead mount."""
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait()
            self.proc = None
        self.unmount()

    def remount(self):
        self.stop()
        return self.start()

    def check_logs(self):
        """-> list of problems found in every run's log."""
        problems = []
        for i, path in enumerate(self.logs):
            text = self.read_log(i)
            for bad in SUSPICIOUS:
                if bad in text:
                    problems.append("%s: log contains %r:\n%s" % (path, bad, text[-6000:]))
            for s in self.secrets:
                if s and s in text:
                    problems.append("%s: log contains a secret (%s...)" % (path, s[:3]))
        return problems

    def stop_and_check(self):
        """stop(), then check_logs() (also after a failed stop).  -> list of problems: the
        failed stop's, then the logs'."""
        problems = []
        try:
            self.stop()
        except AssertionError as e:
            problems.append(str(e))
        return problems + self.check_logs()


def stop_all(mounts):
    """Mount.stop_and_check() on every mount (each one, whatever the others found).
    -> list of all their problems."""
    return [p for m in mounts for p in m.stop_and_check()]


# ---- submitting ----------------------------------------------------------------
def write_chunks(mnt, chunks):
    """Writes chunks to one fresh descriptor of `new` until a write fails, then reads
    the reply line.  -> (errno of the failed write or None, bytes accepted, reply)"""
    fd = os.open(mnt.new(), os.O_RDWR)
    err, done = None, 0
    try:
        for c in chunks:
            try:
                n = os.write(fd, c)
            except OSError as e:
                err = e.errno
                break
            done += n
            if n < len(c):  # a short write: the rest failed
                try:
                    os.write(fd, c[n:])
                except OSError as e:
                    err = e.errno
                    break
        reply = os.read(fd, 4096).decode()
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return err, done, reply


def write_filter(mnt, data=None):
    """Writes a filter (default: FILTER) to a fresh descriptor of `new` and reads the
    reply line.  -> (errno of the write or None, reply line)"""
    err, _, reply = write_chunks(mnt, [filter_bytes() if data is None else data])
    return err, reply


def submit(mnt, flt=None, pid=PROJECT, raw=None):
    """Submit through a fresh descriptor of `new`; returns the job id read back."""
    data = raw if raw is not None else filter_bytes(flt)
    fd = os.open(mnt.new(pid), os.O_RDWR)
    try:
        n = os.write(fd, data)
        assert n == len(data)
        reply = os.read(fd, 4096).decode()
    finally:
        os.close(fd)
    assert reply.endswith("\n"), repr(reply)
    job = reply.strip()
    assert JOB_RE.match(job), repr(reply)
    return job


def _shell(shell, script, check=True, **kw):
    """Runs `shell -c script` (60 s unless timeout=), output captured; check: it must
    exit 0."""
    r = subprocess.run([shell, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=kw.pop("timeout", 60), **kw)
    if check:
        assert r.returncode == 0, (script, r.returncode, r.stdout, r.stderr)
    return r


def sh(cmd, check=True, **kw):
    return _shell("sh", cmd, check, **kw)


def bash(script, check=True, **kw):
    return _shell("bash", script, check, **kw)


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def job_info(mnt, job, pid=PROJECT):
    """The job's .job.json, parsed."""
    return json.loads(read(os.path.join(mnt.job(job, pid), ".job.json")))


def write_private(path, text, mode=0o600):
    """Writes text to path, then gives it `mode` (default 0600).  -> str(path)"""
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return str(path)


def wait_end(mnt, job, pid=PROJECT, timeout=30):
    """Read .wait in a thread-free way (blocking read) with a timeout guard; returns the line."""
    deadline = time.monotonic() + timeout
    path = os.path.join(mnt.job(job, pid), ".wait")
    r = subprocess.run(["timeout", str(timeout), "cat", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    assert r.returncode == 0 and time.monotonic() <= deadline + 1, \
        ("reading .wait failed", r.returncode, r.stderr)
    return r.stdout.decode()


def wait_for(pred, timeout=15, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def stat_read_agree(path, tries=50, stat=os.stat, readf=None, pause=0.05):
    """Checks that stat's size of a file whose content changes (status, .job.json)
    equals what a read returns; returns the bytes read.  A change of the content
    between the two calls is legitimate (a second read or stat differs from the
    first): tried again, a bounded number of times.  A stat that disagrees with
    content that did not change is a real disagreement: it fails once seen three
    times in a row (a moment is left for the kernel to drop a size just changed)."""
    readf = readf or (lambda p: read(p, "rb"))
    suspect = 0
    for _ in range(tries):
        st = stat(path).st_size
        data = readf(path)
        if st == len(data):
            return data
        again = readf(path)
        st2 = stat(path).st_size
        if again == data and st2 == st:
            suspect += 1
            if suspect >= 3:
                raise AssertionError("%s: stat says %d, read gives %d, and the content did not "
                                     "change: %r" % (path, st, len(data), data[:200]))
        else:
            suspect = 0
        time.sleep(pause)
    raise AssertionError("%s: stat and read never agreed in %d tries (the content kept "
                         "changing)" % (path, tries))


def wait_status(mnt, job, want, pid=PROJECT, timeout=15):
    path = os.path.join(mnt.job(job, pid), "status")
    return wait_for(lambda: read(path) == want + "\n", timeout, what="status %s of %s" % (want, job))


def run_job(mnt, flt=None, pid=PROJECT, want="success"):
    """Submit, wait for the end, return the job id (asserts the final state)."""
    job = submit(mnt, flt, pid)
    assert wait_end(mnt, job, pid) == want + "\n"
    return job


def submits(emu):
    return emu.calls("submit")


def queries(emu, job=None):
    return [e for e in emu.calls("query") if job is None or e.get("task_id") == job]


def emu_archive(emu, job, pid=PROJECT):
    """The job's zip as the emulator serves it (downloaded directly)."""
    r = emuharness.wait_job(emu, job, pid)
    assert r["task_status"] == "success", r
    return emuharness.download(emu, r["file_id"], pid)


def zip_entries(zbytes):
    """{name: (bytes, ZipInfo)} of the files in a zip (last duplicate wins)."""
    z = zipfile.ZipFile(io.BytesIO(zbytes))
    out = {}
    for zi in z.infolist():
        if zi.is_dir():
            continue
        out[zi.filename] = (z.read(zi), zi)
    return out


def zip_mtime(zi):
    """The entry's modification time as libarchive reads it with TZ=UTC."""
    return calendar.timegm(zi.date_time + (0, 0, 0))


def walk_files(top):
    """{relative path: bytes} of every regular file under top, control files excluded
    at the top level.  Walks like fuse-archive's tests (os.walk, no links followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for fn in filenames:
            rel = os.path.relpath(os.path.join(dirpath, fn), top)
            if rel in CONTROL:
                continue
            with open(os.path.join(dirpath, fn), "rb") as f:
                out[rel] = f.read()
    return out


def md5s(files):
    return {k: hashlib.md5(v).hexdigest() for k, v in files.items()}


def expect_errno(err, fn, *args, **kw):
    """Call fn; assert it raises OSError with errno `err` (a number or a tuple)."""
    errs = err if isinstance(err, tuple) else (err,)
    try:
        fn(*args, **kw)
    except OSError as e:
        assert e.errno in errs, "%s%r: errno %s (%s), expected %s" % (
            getattr(fn, "__name__", fn), args, e.errno, errno.errorcode.get(e.errno),
            "/".join(errno.errorcode[x] for x in errs))
        return e
    raise AssertionError("%s%r succeeded, expected %s" % (
        getattr(fn, "__name__", fn), args, "/".join(errno.errorcode[x] for x in errs)))


def files_under(top):
    for dirpath, _, filenames in os.walk(top):
        for fn in filenames:
            yield os.path.join(dirpath, fn)


def grep_tree(top, needle):
    """Paths of files under top containing needle (bytes or str)."""
    if isinstance(needle, str):
        needle = needle.encode()
    hits = []
    for p in files_under(top):
        try:
            with open(p, "rb") as f:
                if needle in f.read():
                    hits.append(p)
        except OSError:
            pass
    return hits
