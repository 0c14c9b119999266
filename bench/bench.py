#!/usr/bin/python3
"""bench.py -- the hcexportfs benchmark suite (issue 6, rows B1-B13, and B14).

Run it through bench/run (which installs the tools and builds the binary);
`bench/run --help` lists the options.  Standard library only.

Layout of the work dir (default /var/tmp/hcexportfs-bench):
  emu-state/        the emulator's --state-dir: jobs and their files (kept between runs)
  emu-b13-state/    the same for the B13 emulator (1,000,000-entry archive)
  datasets.json     which emulator job holds which data set (kept between runs)
  calibration.json  bytes per CSV row and deflate ratio of the generator (kept)
  data/             gzip wrappers of deflate entries for igzip (kept)
  cache-*/          hcexportfs cache_dirs (rebuilt every run: the binary may change)
  mnt-*/            mount points
  logs/             hcexportfs, peer and emulator logs of the last run
  results/          bench-<time>.json with every raw figure, and latest.json
Copies and extracted reference trees go to --shm-dir (tmpfs), removed at exit.
"""
import argparse
import atexit
import calendar
import hashlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "contrib"))
sys.path.insert(0, HERE)

import emuharness  # noqa: E402
from emuharness import AK, PROJECT, SK  # noqa: E402
import zip2gz  # noqa: E402

MiB = 1 << 20
# B14's reference inflater: ISA-L's igzip (bench/run installs it), else gzip
GUNZIP = "igzip" if shutil.which("igzip") else "gzip"
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
# All columns but host_id/policyid (two md5 hex strings): deflate level 6 gives 5.3:1,
# the ratio of the data ("deflate, about 5:1").
COLUMNS = ["id", "time", "sip", "host", "url", "attack", "rule", "action", "payload",
           "payload_location", "request_line", "status", "region", "process_time",
           "response_time", "response_size", "cookie", "request_body"]
FILTER = {"recent": "today", "dump_columns": COLUMNS}
TINY_FILTER = {"recent": "today", "dump_columns": ["id", "time", "attack"]}
LEVEL = 6
ALL_ROWS = ["B%d" % i for i in range(1, 15)]
# How the emulator's WAF files name their job.  The bench attaches its data sets
# (`mkdir exports/<job>`) after they succeeded: hcexportfs then has no submission time
# for them and finds their file in WAF's event-log list by id or name only (man page,
# "Finding a WAF job's file"), so the data-set files carry the job id in their name.
LINK = "name"
# The emulator seeds WAF's daily files and foreign jobs' files into each project's list
# at its first WAF call: none for the bench, whose lists then hold only its own files.
EMU_ARGS = ["--config", "daily_files=0", "--config", "daily_future=0",
            "--config", "foreign_files=0", "--config", "waf_file_link=" + LINK]
CONTROL = ("status", ".job.json", ".wait")

# size knobs: full run, --quick
FULL = dict(big_mib=512, small_files=10000, small_folders=100, small_rows_per_file=20,
            b8_mib=1024, b8_files=8, b9_mib=2048, b9_files=8, b9_readers=8,
            b10_mib=128, b10_files=4, b11_jobs=1000, b12_seconds=600, b12_jobs=100,
            b12_ended=10, b13_entries=1000000, b13_folders=100, b13_find=1, b14_mib=1024,
            reps=3, peer_timeout=120, preads=200)
QUICK = dict(big_mib=64, small_files=1000, small_folders=10, small_rows_per_file=20,
             b8_mib=64, b8_files=8, b9_mib=128, b9_files=8, b9_readers=8,
             b10_mib=16, b10_files=4, b11_jobs=100, b12_seconds=60, b12_jobs=100,
             b12_ended=10, b13_entries=50000, b13_folders=5, b13_find=1, b14_mib=64,
             reps=3, peer_timeout=30, preads=200)

T_START = time.monotonic()
LOGF = None


def say(msg):
    line = "[%7.1fs] %s" % (time.monotonic() - T_START, msg)
    print(line, file=sys.stderr, flush=True)
    if LOGF:
        LOGF.write(line + "\n")
        LOGF.flush()


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    pass


def now():
    return time.perf_counter()


def rmtree(p):
    if os.path.lexists(p):
        shutil.rmtree(p, ignore_errors=True)
        if os.path.lexists(p):
            subprocess.run(["rm", "-rf", p], stderr=subprocess.DEVNULL)


def fmt_s(v):
    if v is None:
        return "-"
    if v < 1:
        return "%.1f ms" % (v * 1000) if v >= 0.0001 else "%.3f ms" % (v * 1000)
    return "%.3f s" % v


def med(values, key=None):
    """Median of the values (dicts: of their `key`); None when any timed out."""
    vs = []
    for v in values:
        if v is None:
            return None
        vs.append(v[key] if key else v)
    vs = [v for v in vs if v is not None]
    return statistics.median(vs) if vs else None


def read_status(pid, key):
    """A /proc/PID/status figure in KiB (VmHWM, VmRSS), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def files_under(top):
    out = []
    for d, _, fs in os.walk(top):
        for f in fs:
            out.append(os.path.join(d, f))
    return out


def warm(paths):
    """Read the files (untimed) so that they are in the page cache."""
    for p in paths:
        try:
            with open(p, "rb", buffering=0) as f:
                while f.read(4 * MiB):
                    pass
        except OSError:
            pass


def evict(paths):
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fdatasync(fd)
        except OSError:
            pass
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def count_files(top, suffix=None):
    n = 0
    for _, _, fs in os.walk(top):
        n += sum(1 for f in fs if suffix is None or f.endswith(suffix))
    return n


# ---------------------------------------------------------------------------
# processes: hcexportfs mounts, peer mounts, timed commands

LIVE = set()  # objects with .stop(); stopped at exit


def unmount(mnt, lazy=False):
    for cmd in (["fusermount3", "-u"], ["fusermount", "-u"], ["umount"]):
        r = subprocess.run(cmd + (["-z"] if lazy and cmd[0] != "umount" else
                                  ["-l"] if lazy else []) + [mnt],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            return True
    return False


def wait_mounted(proc, mnt, timeout, what):
    """Poll until mnt is a mount point; returns False on timeout."""
    deadline = now() + timeout
    while not os.path.ismount(mnt):
        if proc.poll() is not None:
            raise BenchError("%s exited with %s before mounting %s" % (what, proc.returncode, mnt))
        if now() > deadline:
            return False
        time.sleep(0.0005)
    return True


class HcxMount:
    """One hcexportfs process (-f) on one mount point and cache_dir."""
    starts = 0

    def __init__(self, b, cache_dir, name, url=None, poll_interval=None, opts=None):
        self.b = b
        self.cache_dir = cache_dir
        self.mnt = os.path.join(b.workdir, "mnt-" + name)
        self.name = name
        self.url = url or b.emu.url
        self.poll_interval = poll_interval if poll_interval is not None else b.a.poll_interval
        self.opts = opts
        self.proc = None
        self.nstarts = 0
        os.makedirs(self.mnt, exist_ok=True)
        os.makedirs(cache_dir, exist_ok=True)

    def argv(self):
        o = ["endpoint=" + self.url, "projects=" + PROJECT, "cache_dir=" + self.cache_dir,
             "poll_interval=%s" % self.poll_interval, "log_level=" + self.b.a.log_level]
        if self.b.a.hcx_opts:
            o.append(self.b.a.hcx_opts)
        if self.opts:
            o.append(self.opts)
        return [self.b.bin, "-f", "-o", ",".join(o), self.mnt]

    def start(self, timeout=60):
        """Spawn and wait for the mount; returns seconds from spawn to mounted."""
        if os.path.ismount(self.mnt):
            unmount(self.mnt, lazy=True)
        self.nstarts += 1
        HcxMount.starts += 1
        log = open(os.path.join(self.b.logdir, "hcx-%s.log" % self.name), "ab")
        log.write(("--- start %d (%s): %s\n" % (HcxMount.starts, time.strftime("%H:%M:%S"),
                                                 " ".join(self.argv()))).encode())
        log.flush()
        t0 = now()
        self.proc = subprocess.Popen(self.argv(), env=self.b.hcx_env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        LIVE.add(self)
        if not wait_mounted(self.proc, self.mnt, timeout, "hcexportfs"):
            self.stop()
            raise BenchError("hcexportfs did not mount %s in %d s" % (self.mnt, timeout))
        return now() - t0

    @property
    def pid(self):
        return self.proc.pid

    def vm(self, key="VmHWM"):
        return read_status(self.proc.pid, key)

    def exports(self):
        return os.path.join(self.mnt, "projects", PROJECT, "exports")

    def job(self, jid, *parts):
        return os.path.join(self.exports(), jid, *parts)

    def died(self):
        """None while running, else how it ended (and the end of its log)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        rc = self.proc.returncode
        how = ("signal %d (%s)" % (-rc, signal.Signals(-rc).name) if rc < 0 else "exit %d" % rc)
        try:
            with open(os.path.join(self.b.logdir, "hcx-%s.log" % self.name), "rb") as f:
                tail = f.read()[-300:].decode(errors="replace").strip().split("\n")[-1]
        except OSError:
            tail = ""
        return "hcexportfs died: %s; log: %s" % (how, tail)

    def stop(self):
        if self.proc is None:
            return
        d = self.died()
        if d:
            say("note: " + d)
            self.b.crashes.append(d)
        if not unmount(self.mnt):
            unmount(self.mnt, lazy=True)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            say("hcexportfs %s did not exit 30 s after the unmount; killing it" % self.name)
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode is not None and self.proc.returncode < 0 and not d:
            self.b.crashes.append("hcexportfs %s died: signal %d (around its unmount)" % (
                self.name, -self.proc.returncode))
        if self.proc.returncode not in (0, None) and not d:
            say("note: hcexportfs %s exited with %s (log %s)" % (
                self.name, self.proc.returncode, os.path.join(self.b.logdir, "hcx-%s.log" % self.name)))
        self.proc = None
        LIVE.discard(self)
        if os.path.ismount(self.mnt):
            unmount(self.mnt, lazy=True)

    def attach(self, jid, tries=5):
        """mkdir exports/<jid>; a failure other than EEXIST is retried (setup, untimed) and
        noted as an anomaly of the binary under test."""
        for i in range(tries):
            try:
                os.mkdir(self.job(jid))
                return
            except FileExistsError:
                return
            except OSError as e:
                msg = "mkdir exports/%s (attach) failed: %s (try %d/%d)" % (jid, e, i + 1, tries)
                say("note: " + msg)
                self.b.anomalies.append(msg)
                if i == tries - 1:
                    raise BenchError(msg)
                time.sleep(0.2 * (i + 1))

    def wait_local(self, jid, expect, timeout=1800):
        """Wait until the job directory lists `expect` (its archive is local)."""
        deadline = now() + timeout
        d = self.job(jid)
        while True:
            try:
                if expect in os.listdir(d):
                    return
            except OSError:
                pass
            if now() > deadline:
                raise BenchError("job %s: %s not listed after %d s (see %s)" % (
                    jid, expect, timeout, os.path.join(self.b.logdir, "hcx-%s.log" % self.name)))
            if self.proc.poll() is not None:
                raise BenchError("hcexportfs died (%s) while waiting for job %s" % (
                    self.proc.returncode, jid))
            time.sleep(0.1)

    def wait_ready(self, jid, timeout=1800):
        """Wait until .job.json says the job's file is checked ("archive": "ready"), so that
        no later (timed) mount redoes the check; a binary without that key is not waited
        for."""
        deadline = now() + timeout
        last = None
        while True:
            try:
                with open(self.job(jid, ".job.json")) as f:
                    v = json.load(f)
                last = v.get("archive", "ready")
                if last == "ready":
                    return
                if last in ("failed", "evicted"):
                    raise BenchError("job %s: archive %s (error: %s)" % (jid, last, v.get("error")))
            except (OSError, ValueError):
                pass
            if now() > deadline:
                raise BenchError("job %s: archive %s, not ready after %d s" % (jid, last, timeout))
            if self.proc.poll() is not None:
                raise BenchError("hcexportfs died (%s) while waiting for job %s" % (
                    self.proc.returncode, jid))
            time.sleep(0.1)


class PeerMount:
    """archivemount or fuse-zip on a zip file (read-only, foreground)."""

    def __init__(self, b, kind, zip_path, name):
        self.b, self.kind, self.zip = b, kind, zip_path
        self.name = name
        self.mnt = os.path.join(b.workdir, "mnt-%s-%s" % (kind, name))
        os.makedirs(self.mnt, exist_ok=True)
        self.proc = None

    def argv(self):
        if self.kind == "fuse-zip":
            return ["fuse-zip", "-f", "-r", self.zip, self.mnt]
        return ["archivemount", self.zip, self.mnt, "-f", "-o", "readonly"]

    def start(self, timeout):
        """Seconds from spawn to mounted, or None on timeout."""
        if os.path.ismount(self.mnt):
            unmount(self.mnt, lazy=True)
        log = open(os.path.join(self.b.logdir, "peer-%s.log" % self.kind), "ab")
        t0 = now()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, start_new_session=True)
        log.close()
        LIVE.add(self)
        if not wait_mounted(self.proc, self.mnt, timeout, self.kind):
            return None
        return now() - t0

    def vm(self, key="VmHWM"):
        return read_status(self.proc.pid, key) if self.proc else None

    def stop(self):
        if self.proc is None:
            return
        if not unmount(self.mnt):
            unmount(self.mnt, lazy=True)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        LIVE.discard(self)
        if os.path.ismount(self.mnt):
            unmount(self.mnt, lazy=True)


CAND_TIMEOUT = 1800  # a command without its own timeout that runs longer has hung


def timed(argv, timeout=None, stdout=subprocess.DEVNULL, cwd=None, errlog=None):
    """Run argv; returns its wall time in seconds, or None if it ran over `timeout`
    (then its process group is killed).  Without a timeout, CAND_TIMEOUT applies and
    running over it raises BenchError, as does a non-zero exit."""
    hard = timeout is None
    if hard:
        timeout = CAND_TIMEOUT
    errf = open(errlog, "wb") if errlog else subprocess.DEVNULL
    t0 = now()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=errf, cwd=cwd,
                         start_new_session=True)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()
        if errlog:
            errf.close()
        if hard:
            raise BenchError("%s did not finish in %d s" % (" ".join(argv), timeout))
        return None
    except BaseException:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()
        raise
    dt = now() - t0
    if errlog:
        errf.close()
    if p.returncode != 0:
        tail = ""
        if errlog:
            with open(errlog, "rb") as f:
                tail = f.read()[-800:].decode(errors="replace")
        raise BenchError("%s exited with %d %s" % (" ".join(argv), p.returncode, tail))
    return dt


def timed_capture(argv, timeout=None, out_path=None):
    """Like timed(), stdout into out_path; returns (seconds or None, output bytes)."""
    with open(out_path, "wb") as f:
        dt = timed(argv, timeout=timeout, stdout=f)
    with open(out_path, "rb") as f:
        return dt, f.read()


# ---------------------------------------------------------------------------


class Bench:
    def __init__(self, a):
        self.a = a
        self.workdir = os.path.abspath(a.workdir)
        self.shm = os.path.abspath(a.shm_dir)
        self.logdir = os.path.join(self.workdir, "logs")
        self.bin = os.path.abspath(a.bin)
        self.rows = []       # table rows
        self.crashes = []    # how hcexportfs processes died, if any
        self.anomalies = []  # setup steps of the binary under test that needed a retry
        self.row_deadline = None
        self.row_name = None
        self.raw = {}        # every raw figure, per benchmark
        self.emu = None
        self.emu13 = None
        self.datasets = {}
        self.cal = None
        self.main_cache = None
        self.selected = a.only
        for d in (self.workdir, self.logdir, os.path.join(self.workdir, "data"),
                  os.path.join(self.workdir, "results"), self.shm):
            os.makedirs(d, exist_ok=True)
        home = os.path.join(self.workdir, "home")
        os.makedirs(home, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HUAWEICLOUD_SDK_", "CLOUD_SDK_", "XDG_CACHE_HOME"))}
        env.update(HOME=home, TZ="UTC", CLOUD_SDK_AK=AK, CLOUD_SDK_SK=SK)
        self.hcx_env = env
        self.dsfile = os.path.join(self.workdir, "datasets.json")
        try:
            with open(self.dsfile) as f:
                self.datasets = json.load(f)
        except (OSError, ValueError):
            self.datasets = {}

    # ---- input state before a timing -----------------------------------
    def prep_inputs(self, paths):
        """Inputs of a timing: warm (default: re-read right before, as the machine drops idle
        page cache after a minute) or evicted (--cold-disk)."""
        if self.a.cold_disk:
            evict(paths)
        else:
            warm(paths)

    def cache_files(self, cache_dir, jids):
        """The files of cache_dir that belong to the jobs (archive, index, journal record),
        plus every small file (journal, project records)."""
        out = []
        for p in files_under(cache_dir):
            try:
                small = os.path.getsize(p) < MiB
            except OSError:
                continue
            if small or any(j in p for j in jids):
                out.append(p)
        return out

    def record(self, name, data):
        self.raw[name] = data

    def add_row(self, row, workload, kind, cand, ref, ratio, target, met, note="",
                cand_raw=None, ref_raw=None, ratio_raw=None):
        self.rows.append(dict(row=row, workload=workload, kind=kind, candidate=cand,
                              reference=ref, ratio=ratio, target=target, met=met, note=note,
                              candidate_value=cand_raw, reference_value=ref_raw,
                              ratio_value=ratio_raw))
        say("RESULT %-5s %-44s cand %-12s ref %-12s ratio %-8s target %-18s %s%s" % (
            row, workload, cand, ref, ratio, target,
            {True: "MET", False: "NOT MET", None: "-"}[met], ("  (" + note + ")") if note else ""))

    def want(self, *rows):
        return any(r in self.selected for r in rows)

    # ---- emulator and data sets --------------------------------------------
    def start_emulators(self):
        self.emu = emuharness.Emulator(self.logdir, "--max-lifetime", "604800", *EMU_ARGS,
                                       job_delay=0,
                                       state_dir=os.path.join(self.workdir, "emu-state"))
        self.emu.start()
        LIVE.add(self.emu)
        say("emulator at %s, state %s" % (self.emu.url, self.emu.state_dir))

    def start_emu13(self):
        a = self.a
        self.emu13 = emuharness.Emulator(
            self.logdir, "--max-lifetime", "604800", "--files", str(a.b13_entries),
            "--folders", str(a.b13_folders), "--rows", str(a.b13_entries),
            "--waf-file-format", "zip", *EMU_ARGS,
            job_delay=0, state_dir=os.path.join(self.workdir, "emu-b13-state"))
        self.emu13.start()
        LIVE.add(self.emu13)
        say("B13 emulator at %s" % self.emu13.url)

    def calibrate(self):
        """Bytes per CSV row and deflate ratio (level 6) of the emulator's generator for
        FILTER, measured on 100,000 rows; cached in the work dir."""
        import zlib
        from hwemu import events
        with open(events.__file__, "rb") as f:
            key = hashlib.sha1(f.read() + json.dumps([COLUMNS, LEVEL]).encode()).hexdigest()
        path = os.path.join(self.workdir, "calibration.json")
        try:
            with open(path) as f:
                c = json.load(f)
            if c.get("key") == key:
                self.cal = c
                return
        except (OSError, ValueError):
            pass
        n = 100000
        g = events.Generator("0" * 32, PROJECT, FILTER, 1700000000000, 10 * n)
        data = "".join(g.chunks(0, n)).encode()
        co = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
        z = co.compress(data) + co.flush()
        self.cal = {"key": key, "bytes_per_row": len(data) / n, "deflate_ratio": len(data) / len(z)}
        with open(path, "w") as f:
            json.dump(self.cal, f)
        say("calibration: %.1f bytes/row, deflate %.2f:1" % (
            self.cal["bytes_per_row"], self.cal["deflate_ratio"]))

    def specs(self):
        """Data set name -> emulator knobs, for the selected rows."""
        a, bpr, cr = self.a, self.cal["bytes_per_row"], self.cal["deflate_ratio"]
        s = {}
        if self.want("B1", "B2", "B5", "B6", "B7"):
            s["big"] = dict(rows=math.ceil(a.big_mib * MiB / bpr), files=1, folders=0)
        if self.want("B3", "B4", "B7"):
            s["small"] = dict(rows=a.small_files * a.small_rows_per_file, files=a.small_files,
                              folders=a.small_folders)
        if self.want("B7", "B10"):
            s["four"] = dict(rows=math.ceil(a.b10_mib * a.b10_files * MiB / bpr),
                             files=a.b10_files, folders=0)
        if self.want("B8"):
            s["b8"] = dict(rows=math.ceil(a.b8_mib * MiB * cr / bpr), files=a.b8_files, folders=0)
        if self.want("B9"):
            s["b9"] = dict(rows=math.ceil(a.b9_mib * MiB * cr / bpr), files=a.b9_files, folders=0)
        for v in s.values():
            v["waf_file_format"] = "zip"
        if self.want("B14"):
            # one CSV of ~b14_mib MiB (uncompressed), gzipped: WAF's .csv.gz export
            s["gz"] = dict(rows=math.ceil(a.b14_mib * MiB / bpr), files=1, folders=0,
                           waf_file_format="gzip")
        for v in s.values():
            v["compresslevel"] = LEVEL
            v["waf_file_link"] = LINK
        return s

    def save_datasets(self):
        tmp = self.dsfile + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.datasets, f, indent=1, sort_keys=True)
        os.replace(tmp, self.dsfile)

    def ensure_datasets(self, emu, specs, ns, flt=FILTER):
        """Make sure the emulator (state dir namespace `ns`) holds one built job per spec;
        submits the missing ones, waits for their archives, returns name -> info."""
        known = {j["job_id"]: j for j in emu.jobs()}
        store = self.datasets.setdefault(ns, {})
        out, pending = {}, {}
        for name, spec in specs.items():
            key = json.dumps(dict(spec, filter=flt), sort_keys=True)
            info = store.get(key)
            if info and info["job_id"] in known and known[info["job_id"]]["built"] and \
                    os.path.exists(info.get("path") or info["zip"]):
                out[name] = info
                continue
            if info and info["job_id"] in known and not known[info["job_id"]]["built"] and \
                    known[info["job_id"]]["status"] != "failure":
                pending[name] = (key, info["job_id"])   # still building (an earlier run)
                continue
            if "files" in spec and spec["files"] > 100000:
                pass  # the B13 emulator got its knobs on the command line
            else:
                emu.config(job_delay=0, **spec)
            # knobs are snapshotted at the submit: format, link, sizes
            jid = emuharness.submit(emu, flt)
            say("data set %s: submitted job %s (%s); the emulator builds it" % (
                name, jid, ", ".join("%s=%s" % kv for kv in sorted(spec.items()))))
            pending[name] = (key, jid)
        t0 = now()
        last = 0
        while pending:
            jobs = {j["job_id"]: j for j in emu.jobs()}
            for name, (key, jid) in list(pending.items()):
                j = jobs.get(jid)
                if j and j["status"] == "failure":
                    raise BenchError("the emulator's job %s (data set %s) failed" % (jid, name))
                if j and j["built"]:
                    info = self.describe(emu, j)
                    store[key] = info
                    self.save_datasets()
                    out[name] = info
                    del pending[name]
                    say("data set %s ready: job %s, %s %.1f MiB, %d entries, %.1f MiB uncompressed" % (
                        name, jid, info["ext"], info["size"] / MiB, info["n_entries"],
                        info["total_size"] / MiB))
            if pending and now() - last > 30:
                last = now()
                say("waiting for the emulator to build %s (%.0f s)" % (", ".join(pending), now() - t0))
            if pending:
                if now() - t0 > 4 * 3600:
                    raise BenchError("the emulator did not build %s in 4 h" % ", ".join(pending))
                time.sleep(0.5)
        return out

    def describe(self, emu, job):
        """A built WAF job's file as the bench uses it: path in the emulator's state dir,
        format, sizes, and the CSV files the mount shows in the job directory (zip: its
        entries; csv.gz and csv: one file named by the listed name without .gz)."""
        ext = job.get("ext") or "zip"
        path = os.path.join(emu.state_dir, "archives", "%s.%s" % (job["job_id"], ext))
        info = {"job_id": job["job_id"], "file_id": job["file_id"], "file_name": job["file_name"],
                "ext": ext, "path": path, "size": os.path.getsize(path), "params": job["params"]}
        if ext == "zip":
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
            files = [zi for zi in infos if not zi.is_dir()]
            info.update({"zip": path, "zip_size": info["size"], "n_entries": len(infos),
                         "n_files": len(files), "total_size": sum(zi.file_size for zi in files),
                         "csv": [[zi.filename, zi.file_size, zi.compress_size] for zi in files
                                 if zi.filename.endswith(".csv")][:20000],
                         "n_csv": sum(1 for zi in files if zi.filename.endswith(".csv"))})
        else:
            name = job["file_name"][:-3] if ext == "csv.gz" else job["file_name"]
            if ext == "csv.gz":
                with open(path, "rb") as f:  # ISIZE: the size modulo 2^32
                    f.seek(-4, os.SEEK_END)
                    usize = int.from_bytes(f.read(4), "little")
                est = job["params"]["rows"] * self.cal["bytes_per_row"]  # past 4 GiB
                usize += round((est - usize) / (1 << 32)) * (1 << 32)
            else:
                usize = info["size"]
            info.update({"zip": None, "n_entries": 1, "n_files": 1, "total_size": usize,
                         "csv": [[name, usize, info["size"]]], "n_csv": 1})
        return info

    def tiny_jobs(self, n):
        """n ended (success) tiny jobs in the main emulator, created once and kept."""
        # WAF's default format (one plain CSV), named by the job (see LINK)
        knobs = dict(job_delay=0, rows=10, files=1, folders=0, compresslevel=LEVEL,
                     waf_file_format="csv", waf_file_link=LINK)
        store = self.datasets.setdefault("tiny", {})
        if store.get("knobs") != knobs:
            store.clear()
            store["knobs"] = knobs
        ids = store.get("jobs", [])
        known = {j["job_id"]: j for j in self.emu.jobs()}
        ids = [j for j in ids if j in known and known[j]["status"] == "success"]
        if len(ids) < n:
            self.emu.config(**knobs)
            say("creating %d tiny jobs in the emulator" % (n - len(ids)))
            while len(ids) < n:
                ids.append(emuharness.submit(self.emu, TINY_FILTER))
            store["jobs"] = ids
            self.save_datasets()
            deadline = now() + 600
            while True:
                st = {j["job_id"]: j["status"] for j in self.emu.jobs()}
                if all(st.get(j) == "success" for j in ids[:n]):
                    break
                if any(st.get(j) == "failure" for j in ids[:n]):
                    raise BenchError("a tiny job failed in the emulator")
                if now() > deadline:
                    raise BenchError("tiny jobs did not succeed in 600 s")
                time.sleep(0.5)
        return ids[:n]

    def file_names(self, emu, ids):
        """job id -> the name of its one file in the job directory (a csv export: the
        listed file name; csv.gz: without .gz)."""
        want = set(ids)
        out = {}
        for j in emu.jobs():
            if j["job_id"] in want:
                fn = j["file_name"]
                out[j["job_id"]] = fn[:-3] if fn.endswith(".csv.gz") else fn
        missing = want - set(out)
        if missing:
            raise BenchError("the emulator does not know job(s) %s" % ", ".join(sorted(missing)[:3]))
        return out

    def make_gz(self, info, entry):
        gz = os.path.join(self.workdir, "data", "%s-%s.gz" % (info["job_id"], entry.replace("/", "_")))
        if not os.path.exists(gz):
            c, u = zip2gz.zip_entry_to_gz(info["zip"], entry, gz)
            out = subprocess.run("igzip -dc '%s' | wc -c" % gz, shell=True, capture_output=True,
                                 text=True)
            if out.stdout.strip() != str(u):
                os.unlink(gz)
                raise BenchError("igzip -dc of %s gave %s bytes, expected %d" % (gz, out.stdout, u))
            say("gzip wrapper of %s: %s (%d deflate bytes -> %d)" % (entry, gz, c, u))
        return gz

    def prep_main_cache(self, ds):
        """A fresh cache_dir in which every data set of ds is downloaded."""
        self.main_cache = os.path.join(self.workdir, "cache-main")
        rmtree(self.main_cache)
        m = HcxMount(self, self.main_cache, "main")
        t0 = now()
        m.start()
        try:
            for info in ds.values():
                m.attach(info["job_id"])
            for name, info in ds.items():
                m.wait_local(info["job_id"], info["csv"][0][0].split("/")[0])
            # the check after download (every entry inflated, checkpoints saved) must end
            # here, not in the first timed mount
            for name, info in ds.items():
                m.wait_ready(info["job_id"])
        finally:
            m.stop()
        say("main cache ready (%s: %s) in %.1f s" % (self.main_cache, ", ".join(ds), now() - t0))

    def main_mount(self):
        return HcxMount(self, self.main_cache, "main")

    def cat_on_fresh_mount(self, jid, entry):
        """Mounts the main cache (jid's files prepared as inputs), then cat of the job's
        entry.  -> {"total_s": mount and cat, "mount_s", "cat_s", "hwm_kib"}"""
        self.prep_inputs(self.cache_files(self.main_cache, [jid]))
        m = self.main_mount()
        t0 = now()
        mt = m.start()
        try:
            dt = timed(["cat", m.job(jid, entry)])
            total = now() - t0
            return {"total_s": total, "mount_s": mt, "cat_s": dt, "hwm_kib": m.vm()}
        finally:
            m.stop()

    def preads_on_fresh_mount(self, jid, entry, ext):
        """Mounts the main cache (jid's files prepared as inputs), then preads.py twice on
        the job's entry, checked against ext.  -> {"cold", "warm", "hwm_kib"}"""
        self.prep_inputs(self.cache_files(self.main_cache, [jid]))
        m = self.main_mount()
        m.start()
        try:
            cold = self.preads(m.job(jid, entry), ext)
            warm_ = self.preads(m.job(jid, entry), ext)
            hwm = m.vm()
        finally:
            m.stop()
        return {"cold": cold, "warm": warm_, "hwm_kib": hwm}

    def shm_extract(self, info, name):
        """The archive extracted once (untimed) under the shm dir; returns the dir."""
        d = os.path.join(self.shm, "ref-" + name)
        if not os.path.isdir(d):
            rmtree(d + ".tmp")
            if info["ext"] == "zip":
                subprocess.run(["unzip", "-q", "-o", "-d", d + ".tmp", info["zip"]], check=True)
            else:
                os.makedirs(d + ".tmp")
                out = os.path.join(d + ".tmp", info["csv"][0][0])
                with open(out, "wb") as f:
                    if info["ext"] == "csv.gz":
                        subprocess.run([GUNZIP, "-dc", info["path"]], stdout=f, check=True)
                    else:
                        subprocess.run(["cat", info["path"]], stdout=f, check=True)
                if os.path.getsize(out) != info["total_size"]:
                    raise BenchError("%s -dc of %s gave %d bytes, expected %d" % (
                        GUNZIP, info["path"], os.path.getsize(out), info["total_size"]))
            os.rename(d + ".tmp", d)
        return d

    # ---- interleaving ------------------------------------------------------
    def interleave(self, reps, items):
        """items: [(label, fn(rep))]; every rep runs each once, the order rotating from rep
        to rep.  fn returns a figure (or dict), or None for a timeout: a label that timed
        out once is not run again (its median is then reported as > timeout)."""
        out = {label: [] for label, _ in items}
        dead = set()
        for r in range(reps):
            k = r % len(items)
            for label, fn in items[k:] + items[:k]:
                if label in dead:
                    continue
                v = fn(r)
                out[label].append(v)
                if v is None:
                    dead.add(label)
                    say("  %s rep %d: timed out (not repeated)" % (label, r + 1))
                else:
                    say("  %s rep %d: %s" % (label, r + 1, short(v)))
        return out

    def peers(self):
        return [] if self.a.no_peers else ["fuse-zip", "archivemount"]

    def peer_run(self, kind, zip_path, name, body):
        """Mount a peer on zip_path (prepared inputs), run body(peer, time_left) -> figure or
        None; the whole (mount + body) within --peer-timeout."""
        self.prep_inputs([zip_path])
        p = PeerMount(self, kind, zip_path, name)
        t0 = now()
        try:
            mt = p.start(self.a.peer_timeout)
            if mt is None:
                return None
            left = self.a.peer_timeout - (now() - t0)
            if left <= 0:
                return None
            v = body(p, left)
            if isinstance(v, dict):
                v["mount_s"] = mt
                v["peer_hwm_kib"] = p.vm()
            return v
        finally:
            p.stop()

    def peer_rows(self, row, workload, kind, cand_med, res, key=None, fmt=fmt_s):
        for peer in self.peers():
            vals = res.get(peer)
            if vals is None:
                continue
            ref = med(vals, key)
            if ref is None:
                ref_s = "> %d s" % self.a.peer_timeout
                ratio = cand_med / self.a.peer_timeout if cand_med is not None else None
                ratio_s = "< %.2fx" % ratio if ratio is not None else "-"
                met = cand_med is not None and cand_med < self.a.peer_timeout
            else:
                ref_s = fmt(ref)
                ratio = cand_med / ref if cand_med is not None and ref else None
                ratio_s = "%.2fx" % ratio if ratio is not None else "-"
                met = ratio is not None and ratio < 1
            self.add_row(row, "%s vs %s" % (workload, peer), kind, fmt(cand_med), ref_s, ratio_s,
                         "< 1x (ahead)", met, cand_raw=cand_med, ref_raw=ref, ratio_raw=ratio)

    # ======================================================================
    # B1 / B2: cat of the big entry
    def b1(self, big):
        a = self.a
        entry = "events.csv"
        zpath = big["zip"]
        gz = self.make_gz(big, entry)
        jid = big["job_id"]
        size = [c for c in big["csv"] if c[0] == entry][0][1]

        def cand(r):
            return self.cat_on_fresh_mount(jid, entry)

        def igzip(r):
            self.prep_inputs([gz])
            return timed(["igzip", "-dc", gz])

        def unzip(r):
            self.prep_inputs([zpath])
            return timed(["unzip", "-p", zpath, entry])

        def peer(kind):
            def run(r):
                def body(p, left):
                    dt = timed(["cat", os.path.join(p.mnt, entry)], timeout=left)
                    return None if dt is None else {"cat_s": dt}
                v = self.peer_run(kind, zpath, "big", body)
                if v is None:
                    return None
                v["total_s"] = v["mount_s"] + v["cat_s"]  # mount included, like the candidate
                return v
            return run

        items = [("hcexportfs", cand), ("igzip", igzip), ("unzip", unzip)]
        items += [(k, peer(k)) for k in self.peers()]
        res = self.interleave(a.reps, items)
        self.record("B1", {"entry_size": size, "zip_size": big["zip_size"], **res})
        c = med(res["hcexportfs"], "total_s")
        g = med(res["igzip"])
        u = med(res["unzip"])
        w = "cat %d MiB entry, mount incl." % round(size / MiB)
        self.add_row("B1", w + " vs igzip -dc", "cold", fmt_s(c), fmt_s(g), "%.2fx" % (c / g),
                     "<= 1.2x", c / g <= 1.2, cand_raw=c, ref_raw=g, ratio_raw=c / g,
                     note="%.0f MB/s" % (size / c / 1e6))
        self.add_row("B1", w + " vs unzip -p", "cold", fmt_s(c), fmt_s(u), "%.2fx" % (c / u),
                     "< 1x (ahead)", c / u < 1, cand_raw=c, ref_raw=u, ratio_raw=c / u)
        # peers: their figure includes their mount too
        self.peer_rows("B1", "cat entry, mount incl.", "cold", c, res, key="total_s")

    def b2(self, big):
        entry = "events.csv"
        jid = big["job_id"]
        ext = os.path.join(self.shm_extract(big, "big"), entry)

        def cand(r):
            self.prep_inputs(self.cache_files(self.main_cache, [jid]))
            m = self.main_mount()
            m.start()
            try:
                # first read, untimed; cmp also checks every byte against unzip's output
                r1 = subprocess.run(["cmp", m.job(jid, entry), ext], capture_output=True)
                if r1.returncode != 0:
                    raise BenchError("B2: %s differs from the unzip -p output: %s" % (
                        m.job(jid, entry), r1.stdout.decode()[:200]))
                dt = timed(["cat", m.job(jid, entry)])
                return dt
            finally:
                m.stop()

        def ref(r):
            warm([ext])
            return timed(["cat", ext])

        res = self.interleave(self.a.reps, [("hcexportfs", cand), ("cat-extracted", ref)])
        self.record("B2", res)
        c, r = med(res["hcexportfs"]), med(res["cat-extracted"])
        self.add_row("B2", "re-read of the entry vs cat of extracted file", "warm", fmt_s(c),
                     fmt_s(r), "%.2fx" % (c / r), "<= 2x", c / r <= 2, cand_raw=c, ref_raw=r,
                     ratio_raw=c / r, note="content checked with cmp")

    # ======================================================================
    # B3 / B4: the 10,000-file job
    def b3(self, small):
        jid, zpath = small["job_id"], small["zip"]
        n_csv = small["n_csv"]

        def check(dest, label):
            n = count_files(dest, ".csv")
            if n != n_csv:
                raise BenchError("B3 %s: %d CSV files copied, expected %d" % (label, n, n_csv))

        def cand(r):
            dest = os.path.join(self.shm, "b3-cand")
            rmtree(dest)
            self.prep_inputs(self.cache_files(self.main_cache, [jid]))
            m = self.main_mount()
            mt = m.start()
            try:
                dt = timed(["cp", "-r", m.job(jid), dest])
            finally:
                m.stop()
            check(dest, "hcexportfs")
            rmtree(dest)
            return {"cp_s": dt, "mount_s": mt}

        def ref(r):
            dest = os.path.join(self.shm, "b3-ref")
            rmtree(dest)
            self.prep_inputs([zpath])
            dt = timed(["unzip", "-q", "-d", dest, zpath])
            check(dest, "unzip")
            rmtree(dest)
            return dt

        def peer(kind):
            def run(r):
                dest = os.path.join(self.shm, "b3-" + kind)
                rmtree(dest)

                def body(p, left):
                    dt = timed(["cp", "-r", p.mnt, dest], timeout=left)
                    if dt is not None:
                        check(dest, kind)
                    return None if dt is None else {"cp_s": dt}
                try:
                    return self.peer_run(kind, zpath, "small", body)
                finally:
                    rmtree(dest)
            return run

        items = [("hcexportfs", cand), ("unzip", ref)] + [(k, peer(k)) for k in self.peers()]
        res = self.interleave(self.a.reps, items)
        self.record("B3", res)
        c, u = med(res["hcexportfs"], "cp_s"), med(res["unzip"])
        w = "cp -r job of %d files to tmpfs" % n_csv
        self.add_row("B3", w + " vs unzip -d", "cold", fmt_s(c), fmt_s(u), "%.2fx" % (c / u),
                     "<= 1.3x", c / u <= 1.3, cand_raw=c, ref_raw=u, ratio_raw=c / u,
                     note="fresh mount, mount not timed; counts checked")
        self.peer_rows("B3", "cp -r", "cold", c, res, key="cp_s")

    def b4(self, small):
        jid, zpath = small["job_id"], small["zip"]
        n_files = small["n_files"]
        ext = self.shm_extract(small, "small")
        out = os.path.join(self.shm, "b4-out.txt")

        def ls_count(data):
            return sum(1 for line in data.split(b"\n") if line.startswith(b"-"))

        def measure(root, remount):
            """ls -lR then (after remount) find -type f | wc -l of root."""
            t_ls, data = timed_capture(["ls", "-lR", root], out_path=out)
            if t_ls is None:
                return None
            n_ls = ls_count(data)
            remount()
            t_find, data = timed_capture(["sh", "-c", 'find "$0" -type f | wc -l', root],
                                         out_path=out)
            if t_find is None:
                return None
            return {"ls_s": t_ls, "find_s": t_find, "ls_files": n_ls, "find_files": int(data)}

        def cand(r):
            self.prep_inputs(self.cache_files(self.main_cache, [jid]))
            m = self.main_mount()
            m.start()

            def remount():
                m.stop()
                self.prep_inputs(self.cache_files(self.main_cache, [jid]))
                m.start()
            try:
                v = measure(m.job(jid), remount)
                names = os.listdir(m.job(jid))
            finally:
                m.stop()
            ctrl = [c for c in CONTROL if c in names]
            v["expect_find"] = n_files + len(ctrl)
            v["expect_ls"] = n_files + len([c for c in ctrl if not c.startswith(".")])
            return v

        def ref(r):
            v = measure(ext, lambda: None)
            v["expect_find"] = v["expect_ls"] = n_files
            return v

        def peer(kind):
            def run(r):
                holder = {}

                def body(p, left):
                    holder["p"] = p
                    deadline = now() + left

                    def remount():
                        p.stop()
                        self.prep_inputs([zpath])
                        if p.start(max(1, deadline - now())) is None:
                            raise TimeoutError
                    try:
                        v = measure(p.mnt, remount)
                    except TimeoutError:
                        return None
                    if v is not None:
                        v["expect_find"] = v["expect_ls"] = n_files
                    return v
                return self.peer_run(kind, zpath, "small", body)
            return run

        items = [("hcexportfs", cand), ("extracted", ref)] + [(k, peer(k)) for k in self.peers()]
        res = self.interleave(self.a.reps, items)
        self.record("B4", res)

        def exact(vals):
            return all(v is None or (v["ls_files"] == v["expect_ls"] and
                                     v["find_files"] == v["expect_find"]) for v in vals)
        ok = exact(res["hcexportfs"])
        cnt = res["hcexportfs"][0]
        note = "counts %s (find %d, expected %d)" % ("exact" if ok else "WRONG",
                                                     cnt["find_files"], cnt["expect_find"])
        for key, what in (("ls_s", "ls -lR"), ("find_s", "find -type f | wc -l")):
            c, r = med(res["hcexportfs"], key), med(res["extracted"], key)
            self.add_row("B4", "%s of the job, fresh mount vs extracted" % what, "cold", fmt_s(c),
                         fmt_s(r), "%.2fx" % (c / r), "<= 2x, counts exact",
                         c / r <= 2 and ok, cand_raw=c, ref_raw=r, ratio_raw=c / r, note=note)
            self.peer_rows("B4", what, "cold", c, res, key=key)

    # ======================================================================
    # B5 / B6: random preads
    def preads(self, path, verify, timeout=None):
        cmd = [PY, os.path.join(HERE, "preads.py"), path, "--count", str(self.a.preads),
               "--seed", "6", "--verify", verify]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True,
                               timeout=timeout if timeout is not None else CAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            if timeout is None:
                raise BenchError("preads.py on %s did not finish in %d s" % (path, CAND_TIMEOUT))
            return None
        if r.returncode != 0:
            raise BenchError("preads.py failed: %s" % r.stderr[-800:])
        v = json.loads(r.stdout)
        if not v.get("verified"):
            raise BenchError("preads of %s returned wrong bytes" % path)
        return v

    def b5(self, big):
        entry = "events.csv"
        jid, zpath = big["job_id"], big["zip"]
        ext = os.path.join(self.shm_extract(big, "big"), entry)

        def cand(r):
            v = self.preads_on_fresh_mount(jid, entry, ext)
            return {"cold": v["cold"], "warm": v["warm"]}

        def ref(r):
            warm([ext])
            return self.preads(ext, ext)

        def peer(kind):
            def run(r):
                def body(p, left):
                    v = self.preads(os.path.join(p.mnt, entry), ext, timeout=left)
                    return None if v is None else {"cold": v}
                return self.peer_run(kind, zpath, "big", body)
            return run

        items = [("hcexportfs", cand), ("extracted", ref)]
        if self.want("B5"):
            items += [(k, peer(k)) for k in self.peers()]
        res = self.interleave(self.a.reps, items)
        self.record("B5-B6", res)
        n = self.a.preads
        rt, rw = med(res["extracted"], "total_s"), med(res["extracted"], "worst_s")
        if self.want("B5"):
            cold = [v["cold"] for v in res["hcexportfs"]]
            t, w = med(cold, "total_s"), med(cold, "worst_s")
            wmax = max(v["worst_s"] for v in cold)
            self.add_row("B5", "%d random 4 KiB preads, first access (total)" % n, "cold",
                         fmt_s(t), fmt_s(rt), "-", "<= 50 ms total", t <= 0.05, cand_raw=t,
                         ref_raw=rt, note="ref = extracted file in page cache; bytes verified")
            self.add_row("B5", "  same, worst single read", "cold", fmt_s(w), fmt_s(rw), "-",
                         "<= 5 ms each", wmax <= 0.005, cand_raw=w, ref_raw=rw,
                         note="max over reps %s" % fmt_s(wmax))
            pres = {k: [None if v is None else v["cold"] for v in res[k]]
                    for k in self.peers() if k in res}
            self.peer_rows("B5", "%d random preads (total)" % n, "cold", t, pres, key="total_s")
        if self.want("B6"):
            wl = [v["warm"] for v in res["hcexportfs"]]
            t, w = med(wl, "total_s"), med(wl, "worst_s")
            self.add_row("B6", "the same %d preads again, same mount" % n, "warm", fmt_s(t),
                         fmt_s(rt), "-", "<= 10 ms total", t <= 0.01, cand_raw=t, ref_raw=rt,
                         note="worst read %s" % fmt_s(w))

    # ======================================================================
    # B7: time to first byte
    def b7(self, ds):
        targets = []
        for name in ("big", "small", "four", "b9"):
            info = ds.get(name)
            if not info:
                continue
            csv = info["csv"]
            picks = [csv[0]]
            if name == "big":
                picks.append(["manifest.json", 0, 0])
            if name == "small":
                picks.append(csv[-1])
            for e in picks:
                targets.append((name, info["job_id"], e[0], e[1]))
        jids = sorted({t[1] for t in targets})

        def cand(r):
            self.prep_inputs(self.cache_files(self.main_cache, jids))
            m = self.main_mount()
            m.start()
            out = {}
            try:
                for name, jid, entry, size in targets:
                    p = m.job(jid, entry)
                    t0 = now()
                    fd = os.open(p, os.O_RDONLY)
                    b = os.read(fd, 4096)
                    dt = now() - t0
                    os.close(fd)
                    if not b:
                        raise BenchError("B7: %s read no byte" % p)
                    out["%s:%s" % (name, entry)] = dt
            finally:
                m.stop()
            return out

        res = self.interleave(self.a.reps, [("hcexportfs", cand)])
        self.record("B7", {"targets": targets, **res})
        per = {k: med(res["hcexportfs"], k) for k in res["hcexportfs"][0]}
        worst_key = max(per, key=per.get)
        w = per[worst_key]
        sizes = {"%s:%s" % (t[0], t[2]): t[3] for t in targets}
        self.add_row("B7", "first byte of %d entries (0-%d MiB), fresh mount" % (
            len(per), round(max(sizes.values()) / MiB)), "cold", fmt_s(w), "-", "-",
            "<= 5 ms each", w <= 0.005, cand_raw=w,
            note="worst %s; " % worst_key + ", ".join("%s %s" % (k.split(":")[1], fmt_s(v))
                                                      for k, v in sorted(per.items())))

    # ======================================================================
    # B8: download
    def b8(self, info):
        jid, fid, size = info["job_id"], info["file_id"], info["zip_size"]
        expect = {c[0].split("/")[0] for c in info["csv"]}
        src = info["zip"]
        cache = os.path.join(self.workdir, "cache-b8")
        curl_out = os.path.join(self.workdir, "data", "curl-download.zip")

        def cand(r):
            rmtree(cache)
            m = HcxMount(self, cache, "b8")
            m.start()
            st = {}
            done = threading.Event()

            def poll_log():
                while not done.is_set():
                    try:
                        log = self.emu.log()
                    except Exception:
                        time.sleep(0.01)
                        continue
                    t = now()
                    dl = [e for e in log if e["call"] == "download" and e.get("file_id") == fid]
                    if dl and "t_req" not in st:
                        st["t_req"] = t
                    sent = sum(e["bytes_sent"] or 0 for e in dl if e["status"] in (200, 206))
                    if sent >= size and "t_last" not in st:
                        st["t_last"] = t
                        st["requests"] = len(dl)
                        return
                    time.sleep(0.01)
            try:
                self.prep_inputs([src])
                self.emu.clear_log()
                th = threading.Thread(target=poll_log, daemon=True)
                th.start()
                t_attach = now()
                m.attach(jid)
                deadline = now() + 900
                while True:
                    try:
                        if expect <= set(os.listdir(m.job(jid))):
                            t_browse = now()
                            break
                    except OSError:
                        pass
                    if now() > deadline:
                        raise BenchError("B8: job not browsable after 900 s")
                    time.sleep(0.005)
                th.join(60)
                done.set()
                if "t_last" not in st:
                    raise BenchError("B8: the emulator log never showed the whole download")
                return {"download_s": st["t_last"] - st["t_req"], "attach_to_request_s":
                        st["t_req"] - t_attach, "browsable_after_last_byte_s": t_browse - st["t_last"],
                        "attach_to_browsable_s": t_browse - t_attach, "requests": st["requests"]}
            finally:
                done.set()
                m.stop()
                rmtree(cache)

        def curl(r):
            self.prep_inputs([src])
            if os.path.exists(curl_out):
                os.unlink(curl_out)
            # a WAF file comes from object storage through a pre-signed URL, no credential
            # headers (fresh from the admin API, which logs no list call)
            url = self.emu.file_url(fid)
            wout = os.path.join(self.logdir, "curl-w.txt")
            argv = ["curl", "-sS", "--fail", "-o", curl_out, "-w",
                    "%{time_pretransfer} %{time_starttransfer} %{time_total}", url]
            with open(wout, "wb") as f:
                wall = timed(argv, errlog=os.path.join(self.logdir, "curl.err"), stdout=f)
            with open(wout) as f:
                pre, start, total = (float(x) for x in f.read().split())
            got = os.path.getsize(curl_out)
            os.unlink(curl_out)
            if got != size:
                raise BenchError("curl got %d bytes, expected %d" % (got, size))
            # curl's own time from sending the request to the last byte (no exec, no close)
            return {"transfer_s": total - pre, "time_total_s": total, "wall_s": wall}

        res = self.interleave(self.a.reps, [("hcexportfs", cand), ("curl", curl)])
        self.record("B8", {"zip_size": size, **res})
        c, u = med(res["hcexportfs"], "download_s"), med(res["curl"], "transfer_s")
        ratio = u / c
        self.add_row("B8", "download %d MiB archive vs curl -o" % round(size / MiB), "-",
                     fmt_s(c), fmt_s(u), "%.2fx thr" % ratio, ">= 0.9x curl thr", ratio >= 0.9,
                     cand_raw=c, ref_raw=u, ratio_raw=ratio,
                     note="%.0f vs %.0f MB/s; hcexportfs: request to last byte sent (emulator log); "
                          "curl (pre-signed URL): its time_total - time_pretransfer (wall incl. exec %s)" % (
                         size / c / 1e6, size / u / 1e6, fmt_s(med(res["curl"], "wall_s"))))
        b = med(res["hcexportfs"], "browsable_after_last_byte_s")
        self.add_row("B8", "  contents listed after the last byte", "-", fmt_s(b), "-", "-",
                     "<= 0.5 s", b <= 0.5, cand_raw=b,
                     note="attach to listing %s" % fmt_s(med(res["hcexportfs"], "attach_to_browsable_s")))

    # ======================================================================
    # B9: peak RSS with 8 readers
    def b9(self, info):
        jid = info["job_id"]
        entries = [c[0] for c in info["csv"]][:self.a.b9_readers]
        total = sum(c[1] for c in info["csv"] if c[0] in entries)

        def cand(r):
            self.prep_inputs(self.cache_files(self.main_cache, [jid]))
            m = self.main_mount()
            m.start()
            samples = []
            try:
                t0 = now()
                procs = [subprocess.Popen(["cat", m.job(jid, e)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, start_new_session=True)
                         for e in entries]
                while any(p.poll() is None for p in procs):
                    samples.append(m.vm("VmRSS"))
                    time.sleep(0.02)
                dt = now() - t0
                errs = [p.stderr.read().decode(errors="replace").strip() for p in procs
                        if p.returncode]
                for p in procs:
                    p.stderr.close()
                if errs:
                    raise BenchError("B9: %d of %d readers failed (%s)%s" % (
                        len(errs), len(procs), errs[0].rsplit(": ", 1)[-1][:120],
                        "; " + m.died() if m.died() else ""))
                hwm = m.vm("VmHWM")
            finally:
                m.stop()
            return {"hwm_kib": hwm, "rss_max_sampled_kib": max([s for s in samples if s] or [0]),
                    "wall_s": dt, "mb_s": total / dt / 1e6}

        res = self.interleave(self.a.reps, [("hcexportfs", cand)])
        self.record("B9", {"entries": entries, "bytes": total, **res})
        h = max(v["hwm_kib"] for v in res["hcexportfs"]) / 1024
        self.add_row("B9", "peak RSS, %d readers of a %d MiB archive" % (
            len(entries), round(info["zip_size"] / MiB)), "cold", "%.1f MiB" % h, "-", "-",
            "<= 64 MiB", h <= 64, cand_raw=h,
            note="VmHWM, max over reps; %.0f MB/s aggregate" % med(res["hcexportfs"], "mb_s"))

    # ======================================================================
    # B10: concurrent readers
    def b10(self, info):
        jid = info["job_id"]
        entries = [c[0] for c in info["csv"]][:4]

        def run(concurrent):
            def f(r):
                self.prep_inputs(self.cache_files(self.main_cache, [jid]))
                m = self.main_mount()
                m.start()
                try:
                    t0 = now()
                    if concurrent:
                        procs = [subprocess.Popen(["cat", m.job(jid, e)], stdout=subprocess.DEVNULL)
                                 for e in entries]
                        if any(p.wait() != 0 for p in procs):
                            raise BenchError("B10: a concurrent cat failed%s" % (
                                "; " + m.died() if m.died() else ""))
                    else:
                        for e in entries:
                            timed(["cat", m.job(jid, e)])
                    return now() - t0
                finally:
                    m.stop()
            return f

        res = self.interleave(self.a.reps, [("concurrent", run(True)), ("sequential", run(False))])
        self.record("B10", res)
        c, s = med(res["concurrent"]), med(res["sequential"])
        self.add_row("B10", "%d concurrent cats of %d MiB entries vs sequential" % (
            len(entries), round(info["csv"][0][1] / MiB)), "cold", fmt_s(c), fmt_s(s),
            "%.2fx" % (s / c), ">= 1.7x speed-up", s / c >= 1.7, cand_raw=c, ref_raw=s,
            ratio_raw=s / c, note="ratio = sequential / concurrent; fresh mount each")

    # ======================================================================
    # B11: 1,000 known jobs
    def b11(self):
        n = self.a.b11_jobs
        ids = self.tiny_jobs(n)
        cache = os.path.join(self.workdir, "cache-b11")
        rmtree(cache)
        names = self.file_names(self.emu, ids)
        m = HcxMount(self, cache, "b11")
        m.start()
        t0 = now()
        try:
            for jid in ids:
                m.attach(jid)
            for jid in ids:
                m.wait_local(jid, names[jid], timeout=600)
        finally:
            m.stop()
        say("B11: %d jobs attached and downloaded in %.1f s" % (n, now() - t0))
        out = os.path.join(self.shm, "b11-ls.txt")

        def cand(r):
            self.prep_inputs(files_under(cache))
            m = HcxMount(self, cache, "b11")
            try:
                mt = m.start()
                t0 = now()
                os.stat(m.exports())
                tree = mt + now() - t0
                dt, data = timed_capture(["ls", m.exports()], out_path=out)
                names = data.decode().split()
                hwm = m.vm()
            finally:
                m.stop()
            return {"mount_s": mt, "tree_s": tree, "ls_s": dt,
                    "jobs_listed": sum(1 for x in names if len(x) == 32), "hwm_kib": hwm}

        res = self.interleave(self.a.reps, [("hcexportfs", cand)])
        self.record("B11", {"jobs": n, **res})
        mt, lt = med(res["hcexportfs"], "tree_s"), med(res["hcexportfs"], "ls_s")
        ok = all(v["jobs_listed"] == n for v in res["hcexportfs"])
        self.add_row("B11", "mount with %d known jobs (spawn to tree)" % n, "cold", fmt_s(mt), "-",
                     "-", "<= 200 ms", mt <= 0.2, cand_raw=mt)
        self.add_row("B11", "  ls exports/ right after the mount", "cold", fmt_s(lt), "-", "-",
                     "<= 50 ms", lt <= 0.05 and ok, cand_raw=lt,
                     note="%d jobs listed%s" % (res["hcexportfs"][0]["jobs_listed"],
                                                "" if ok else " (WRONG COUNT)"))

    # ======================================================================
    # B12: polling discipline
    def b12(self):
        a = self.a
        P = a.b12_poll_interval
        ended = self.tiny_jobs(max(a.b12_ended, 1))[:a.b12_ended]
        cache = os.path.join(self.workdir, "cache-b12")
        rmtree(cache)
        m = HcxMount(self, cache, "b12", poll_interval=P)
        m.start()
        running = []
        stop = threading.Event()
        reads = {"n": 0, "errors": 0}
        try:
            for jid in ended:
                m.attach(jid)
            deadline = now() + 300
            for jid in ended:
                while True:
                    try:
                        with open(m.job(jid, "status")) as f:
                            if f.read().strip() == "success":
                                break
                    except OSError:
                        pass
                    if now() > deadline:
                        raise BenchError("B12: ended jobs not shown as success")
                    time.sleep(0.05)
            self.emu.config(job_delay=10 ** 7, rows=10, files=1, folders=0)
            self.emu.clear_log()
            t_begin = time.time()
            submit_t = {}
            for i in range(a.b12_jobs):
                fd = os.open(os.path.join(m.exports(), "new"), os.O_RDWR)
                try:
                    os.write(fd, json.dumps(TINY_FILTER).encode() + b"\n")
                    line = os.read(fd, 256).decode().strip()
                finally:
                    os.close(fd)
                if len(line) != 32:
                    raise BenchError("B12: submit through exports/new answered %r" % line)
                running.append(line)
                submit_t[line] = time.time()
            self.emu.config(job_delay=0)
            say("B12: %d running jobs submitted through exports/new, %d ended jobs; reading "
                "every status 10x/s for %d s (poll_interval=%s)" % (
                    len(running), len(ended), a.b12_seconds, P))
            paths = [m.job(j, "status") for j in running + ended]

            def reader():
                while not stop.is_set():
                    t = now()
                    for p in paths:
                        try:
                            with open(p, "rb") as f:
                                f.read()
                            reads["n"] += 1
                        except OSError:
                            reads["errors"] += 1
                    stop.wait(max(0, 0.1 - (now() - t)))
            th = threading.Thread(target=reader, daemon=True)
            th.start()
            t_end = t_begin + a.b12_seconds
            while time.time() < t_end:
                time.sleep(min(5, max(0.01, t_end - time.time())))
                if m.proc.poll() is not None:
                    raise BenchError("hcexportfs died during B12")
            stop.set()
            th.join(10)
            log = self.emu.log()
            t_stop = time.time()
        finally:
            stop.set()
            m.stop()
            try:
                self.emu.config(job_delay=0)
                for jid in running:
                    self.emu.finish(jid, "failure")
            except Exception as e:
                say("B12 cleanup: %r" % e)
            rmtree(cache)
        q = {}
        qt = {}
        for e in log:
            if e["call"] == "query" and e.get("task_id"):
                q[e["task_id"]] = q.get(e["task_id"], 0) + 1
                ts = calendar.timegm(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S"))
                qt.setdefault(e["task_id"], []).append(ts)
        per = [q.get(j, 0) for j in running]
        bound = {j: (t_stop - submit_t[j]) / P + 1 for j in running}
        worst_ratio = max(q.get(j, 0) / bound[j] for j in running)
        mid = t_begin + a.b12_seconds / 2
        first = sum(1 for j in running for t in qt.get(j, []) if t < mid)
        second = sum(1 for j in running for t in qt.get(j, []) if t >= mid)
        ended_q = sum(q.get(j, 0) for j in ended)
        sched = schedule_count(a.b12_seconds, P)
        calls = {}
        for e in log:
            calls[e["call"]] = calls.get(e["call"], 0) + 1
        self.record("B12", {"poll_interval": P, "seconds": a.b12_seconds, "running": len(running),
                            "ended": len(ended), "queries_per_running_job": per,
                            "queries_ended_jobs": ended_q, "first_half": first,
                            "second_half": second, "calls": calls, "status_reads": reads,
                            "documented_schedule_count": sched, "t_log": t_stop - t_begin})
        mx, md = max(per), statistics.median(per)
        self.add_row("B12", "queries/running job in %d s, poll_interval %s" % (a.b12_seconds, P),
                     "-", "%d max, %g med" % (mx, md), "<= %d" % int(a.b12_seconds / P + 1),
                     "%.2f" % worst_ratio, "<= 1/job/interval, backoff", worst_ratio <= 1 and
                     mx <= sched + 2, cand_raw=mx, ref_raw=a.b12_seconds / P + 1,
                     ratio_raw=worst_ratio,
                     note="backoff: at most the documented schedule's %d per job (x2 every 10 "
                          "polls up to 8x poll_interval); queries in the 1st half %d, 2nd half "
                          "%d; %d status reads" % (sched, first, second, reads["n"]))
        self.add_row("B12", "  queries for %d ended jobs" % len(ended), "-", "%d" % ended_q, "-",
                     "-", "0", ended_q == 0, cand_raw=ended_q,
                     note="all calls: %s" % ", ".join("%s %d" % kv for kv in sorted(calls.items())))

    # ======================================================================
    # B13: 1,000,000 entries
    def b13(self):
        a = self.a
        self.start_emu13()
        spec = {"rows": a.b13_entries, "files": a.b13_entries, "folders": a.b13_folders,
                "compresslevel": LEVEL}
        ds = self.ensure_datasets(self.emu13, {"b13": spec}, "b13")
        info = ds["b13"]
        jid, zpath = info["job_id"], info["zip"]
        per_folder = a.b13_entries // max(1, a.b13_folders)
        folder = "part-001" if a.b13_folders else None
        cache = os.path.join(self.workdir, "cache-b13")
        rmtree(cache)
        m = HcxMount(self, cache, "b13", url=self.emu13.url)
        t0 = now()
        m.start()
        try:
            m.attach(jid)
            m.wait_local(jid, folder or "manifest.json", timeout=3600)
        finally:
            m.stop()
        say("B13: archive downloaded and listed in %.1f s" % (now() - t0))
        # baseline: the same binary on an empty cache dir
        base_cache = os.path.join(self.workdir, "cache-b13-base")
        rmtree(base_cache)
        mb = HcxMount(self, base_cache, "b13-base", url=self.emu13.url)
        mb.start()
        try:
            os.listdir(mb.exports())
            base_hwm = mb.vm()
        finally:
            mb.stop()
            rmtree(base_cache)
        out = os.path.join(self.shm, "b13-out.txt")

        def cand(r):
            self.prep_inputs(self.cache_files(cache, [jid]))
            m = HcxMount(self, cache, "b13", url=self.emu13.url)
            t0 = now()
            mt = m.start()
            v = {"mount_s": mt}
            try:
                deadline = now() + 3600
                while True:
                    try:
                        names = os.listdir(m.job(jid))
                        if (folder or "manifest.json") in names:
                            break
                    except OSError:
                        pass
                    if now() > deadline:
                        raise BenchError("B13: job not listed in 3600 s")
                    time.sleep(0.001)
                v["ready_s"] = now() - t0
                if folder:
                    dt, data = timed_capture(["ls", m.job(jid, folder)], out_path=out)
                    v["ls_folder_s"] = dt
                    v["ls_folder_n"] = len(data.split(b"\n")) - 1
                v["hwm_ready_kib"] = m.vm()
                if a.b13_find:
                    dt, data = timed_capture(["sh", "-c", 'find "$0" -type f | wc -l', m.job(jid)],
                                             out_path=out, timeout=1800)
                    v["find_s"] = dt
                    v["find_files"] = int(data) if dt is not None else None
                    v["hwm_find_kib"] = m.vm()
            finally:
                m.stop()
            return v

        def ref(r):
            self.prep_inputs([zpath])
            return timed(["unzip", "-l", zpath])

        res = self.interleave(a.reps, [("hcexportfs", cand), ("unzip-l", ref)])
        self.record("B13", {"entries": info["n_entries"], "zip_size": info["zip_size"],
                            "base_hwm_kib": base_hwm, **res})
        c, u = med(res["hcexportfs"], "ready_s"), med(res["unzip-l"])
        n = info["n_entries"]
        self.add_row("B13", "%d entries: spawn to job listed vs unzip -l" % n, "cold", fmt_s(c),
                     fmt_s(u), "%.2fx" % (c / u), "<= 1x", c / u <= 1, cand_raw=c, ref_raw=u,
                     ratio_raw=c / u, note="after download, remounted")
        hwm = max(v["hwm_ready_kib"] for v in res["hcexportfs"])
        bpe = (hwm - base_hwm) * 1024 / n
        self.add_row("B13", "  memory per entry (VmHWM delta)", "cold", "%.0f B" % bpe, "-", "-",
                     "<= 200 B", bpe <= 200, cand_raw=bpe,
                     note="VmHWM %.1f MiB vs %.1f MiB empty" % (hwm / 1024, base_hwm / 1024))
        if folder:
            lf = med(res["hcexportfs"], "ls_folder_s")
            okn = all(v["ls_folder_n"] == per_folder for v in res["hcexportfs"])
            self.add_row("B13", "  ls of a %d-entry folder" % per_folder, "cold", fmt_s(lf), "-",
                         "-", "<= 50 ms", lf <= 0.05 and okn, cand_raw=lf,
                         note="%d names%s" % (res["hcexportfs"][0]["ls_folder_n"],
                                              "" if okn else " (WRONG COUNT)"))
        if a.b13_find:
            fv = res["hcexportfs"]
            f = med(fv, "find_s")
            hf = max((v.get("hwm_find_kib") or 0) for v in fv)
            self.add_row("B13", "  (info) find -type f | wc -l of the job", "cold", fmt_s(f), "-",
                         "-", "-", None, cand_raw=f,
                         note="%s files; VmHWM after it %.1f MiB = %.0f B/entry" % (
                             fv[0].get("find_files"), hf / 1024, (hf - base_hwm) * 1024 / n))
        self.emu13.stop()
        LIVE.discard(self.emu13)

    # ======================================================================
    # B14: a gzipped CSV export (WAF's .csv.gz), shown decompressed as one file
    def b14(self, gz):
        a = self.a
        jid, path = gz["job_id"], gz["path"]
        entry, size = gz["csv"][0][0], gz["csv"][0][1]
        ext = os.path.join(self.shm_extract(gz, "gz"), entry)
        # untimed: the mount shows the file under its name, with every byte right
        self.prep_inputs(self.cache_files(self.main_cache, [jid]))
        m = self.main_mount()
        m.start()
        try:
            names = os.listdir(m.job(jid))
            if entry not in names:
                raise BenchError("B14: %s not in the job directory (%s)" % (entry, names))
            st = os.stat(m.job(jid, entry))
            if st.st_size != size:
                raise BenchError("B14: %s has size %d, the decompressed file %d" % (
                    entry, st.st_size, size))
            r1 = subprocess.run(["cmp", m.job(jid, entry), ext], capture_output=True)
            if r1.returncode != 0:
                raise BenchError("B14: %s differs from %s -dc: %s" % (
                    entry, GUNZIP, (r1.stdout + r1.stderr).decode()[:200]))
        finally:
            m.stop()

        def cat(r):
            return self.cat_on_fresh_mount(jid, entry)

        def gunzip(r):
            self.prep_inputs([path])
            return timed([GUNZIP, "-dc", path])

        def preads(r):
            return self.preads_on_fresh_mount(jid, entry, ext)

        def preads_ref(r):
            warm([ext])
            return self.preads(ext, ext)

        res = self.interleave(a.reps, [("hcexportfs", cat), (GUNZIP, gunzip),
                                       ("hcexportfs-preads", preads), ("extracted", preads_ref)])
        self.record("B14", {"file": gz["file_name"], "gz_size": gz["size"], "csv_size": size,
                            "inflater": GUNZIP, **res})
        c, g = med(res["hcexportfs"], "total_s"), med(res[GUNZIP])
        hwm = max(v["hwm_kib"] or 0 for v in res["hcexportfs"] + res["hcexportfs-preads"])
        self.add_row("B14", "cat %d MiB .csv.gz export, mount incl. vs %s -dc" % (
            round(size / MiB), GUNZIP), "cold", fmt_s(c), fmt_s(g), "%.2fx" % (c / g), "<= 1.2x",
            c / g <= 1.2, cand_raw=c, ref_raw=g, ratio_raw=c / g,
            note="%.0f MB/s; gzip %.1f MiB (%.1f:1); content checked with cmp; VmHWM max %.1f MiB"
                 % (size / c / 1e6, gz["size"] / MiB, size / gz["size"], hwm / 1024))
        n = a.preads
        cold = [v["cold"] for v in res["hcexportfs-preads"]]
        t, w = med(cold, "total_s"), med(cold, "worst_s")
        wmax = max(v["worst_s"] for v in cold)
        rt, rw = med(res["extracted"], "total_s"), med(res["extracted"], "worst_s")
        wl = [v["warm"] for v in res["hcexportfs-preads"]]
        self.add_row("B14", "  %d random 4 KiB preads, fresh mount (total)" % n, "cold", fmt_s(t),
                     fmt_s(rt), "%.1fx" % (t / rt), "<= 50 ms total", t <= 0.05, cand_raw=t,
                     ref_raw=rt, ratio_raw=t / rt,
                     note="ref = extracted copy in page cache; bytes verified; same reads "
                          "again (warm) %s" % fmt_s(med(wl, "total_s")))
        self.add_row("B14", "  same, worst single read", "cold", fmt_s(w), fmt_s(rw), "-",
                     "<= 5 ms each", wmax <= 0.005, cand_raw=w, ref_raw=rw,
                     note="max over reps %s" % fmt_s(wmax))

    # ======================================================================
    def run(self):
        a = self.a
        self.start_emulators()
        self.calibrate()
        ds = self.ensure_datasets(self.emu, self.specs(), "main")
        main_ds = {k: v for k, v in ds.items() if k in ("big", "small", "four", "b9", "gz")}
        if main_ds:
            self.prep_main_cache(main_ds)
        steps = [("B1", lambda: self.b1(ds["big"])), ("B2", lambda: self.b2(ds["big"])),
                 ("B3", lambda: self.b3(ds["small"])), ("B4", lambda: self.b4(ds["small"])),
                 ("B5", lambda: self.b5(ds["big"])),
                 ("B6", lambda: None if "B5" in self.selected else self.b5(ds["big"])),
                 ("B7", lambda: self.b7(main_ds)), ("B8", lambda: self.b8(ds["b8"])),
                 ("B9", lambda: self.b9(ds["b9"])), ("B10", lambda: self.b10(ds["four"])),
                 ("B11", self.b11), ("B12", self.b12), ("B13", self.b13),
                 ("B14", lambda: self.b14(ds["gz"]))]
        for row, fn in steps:
            if row not in self.selected or (row == "B6" and "B5" in self.selected):
                continue
            load, busy = loadavg(), cpu_busy()
            say("==== %s (CPU busy %.0f%% over the last second, load average %.2f)" % (
                row, busy * 100, load))
            if busy > 0.2:
                say("warning: other processes keep the CPUs %.0f%% busy: figures will be skewed"
                    % (busy * 100))
            self.raw.setdefault("loadavg_before", {})[row] = load
            self.raw.setdefault("cpu_busy_before", {})[row] = busy
            n_crash = len(self.crashes)
            self.row_deadline = time.monotonic() + a.row_timeout + (
                a.b12_seconds if row == "B12" else 0)
            self.row_name = row
            try:
                fn()
            except Exception as e:  # one row's failure does not stop the others
                import traceback
                if LOGF:
                    traceback.print_exc(file=LOGF)
                if len(self.crashes) > n_crash and self.crashes[-1] not in str(e):
                    e = BenchError("%s; %s" % (e, self.crashes[-1]))
                say("%s FAILED: %s" % (row, e))
                self.add_row(row, "(failed: %s)" % str(e)[:60], "-", "-", "-", "-", "-", False,
                             note=str(e)[:300])
                self.raw.setdefault("errors", {})[row] = str(e)
                for x in list(LIVE):
                    if isinstance(x, (HcxMount, PeerMount)):
                        x.stop()
            self.row_deadline = None
            if len(self.crashes) > n_crash:
                self.raw.setdefault("crashes", {})[row] = self.crashes[n_crash:]

    def watchdog(self):
        """A row running over --row-timeout is stuck (most likely in a FUSE call of this
        very process): SIGKILL the hcexportfs processes, which aborts their connections."""
        while True:
            time.sleep(5)
            d = self.row_deadline
            if d is not None and time.monotonic() > d:
                say("watchdog: %s ran over --row-timeout; killing hcexportfs" % self.row_name)
                self.crashes.append("%s stuck: killed by the watchdog" % self.row_name)
                for x in list(LIVE):
                    if isinstance(x, (HcxMount, PeerMount)) and x.proc is not None:
                        try:
                            x.proc.kill()
                        except OSError:
                            pass
                self.row_deadline = time.monotonic() + 120

    def report(self):
        hdr = ["row", "workload", "kind", "candidate", "reference", "ratio", "target", "met?"]
        lines = [[r["row"], r["workload"], r["kind"], r["candidate"], r["reference"], r["ratio"],
                  r["target"], {True: "yes", False: "NO", None: "-"}[r["met"]]] for r in self.rows]
        w = [max(len(str(x[i])) for x in [hdr] + lines) for i in range(len(hdr))]
        out = []
        out.append("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
        out.append("  ".join("-" * w[i] for i in range(len(hdr))))
        for x in lines:
            out.append("  ".join(str(v).ljust(w[i]) for i, v in enumerate(x)))
        notes = ["%s %s: %s" % (r["row"], r["workload"].strip(), r["note"]) for r in self.rows
                 if r["note"]]
        return "\n".join(out), notes


def schedule_count(seconds, P):
    """Polls of one job in `seconds` under the documented schedule (man page, POLLING):
    every P, doubling after every ten polls, up to eight times P (three doublings)."""
    t, n, iv, k = 0.0, 0, P, 0
    while True:
        t += iv
        if t > seconds:
            return n
        n += 1
        if n % 10 == 0 and k < 3:
            iv *= 2
            k += 1


def short(v):
    if isinstance(v, dict) and "count" in v and "total_s" in v:  # a preads.py result
        return "total %s worst %s" % (fmt_s(v["total_s"]), fmt_s(v["worst_s"]))
    if isinstance(v, dict):
        return ", ".join("%s=%s" % (k, ("%.4g" % x) if isinstance(x, float) else
                                    (short(x) if isinstance(x, dict) else x))
                         for k, x in v.items() if not isinstance(x, (list,)))[:300]
    if isinstance(v, float):
        return fmt_s(v)
    return str(v)


def cpu_busy(seconds=1.0):
    """Fraction of CPU time not idle over `seconds` (nothing of the suite runs then)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
        return 1 - (i1 - i0) / max(1, t1 - t0)
    except (OSError, ValueError):
        return -1.0


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return -1.0


def machine_info():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["ncpu"] = os.cpu_count()
    info["kernel"] = os.uname().release
    try:
        info["loadavg"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    try:
        info["git"] = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                                     capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return info


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: smoke test in minutes")
    ap.add_argument("--only", help="comma-separated rows, e.g. B1,B3 (default: all)")
    ap.add_argument("--workdir", default=os.environ.get("HCX_BENCH_WORKDIR",
                                                         "/var/tmp/hcexportfs-bench"))
    ap.add_argument("--shm-dir", default="/dev/shm/hcexportfs-bench",
                    help="tmpfs dir for copies and extracted references")
    ap.add_argument("--bin", default=os.path.join(REPO, "build-bench", "src", "hcexportfs"))
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument("--poll-interval", type=float, default=0.2)
    ap.add_argument("--b12-poll-interval", type=float, default=None,
                    help="poll_interval of the B12 mount (default --poll-interval)")
    ap.add_argument("--log-level", default="warn", help="hcexportfs log_level")
    ap.add_argument("--hcx-opts", default="", help="extra -o options for hcexportfs")
    ap.add_argument("--no-peers", action="store_true", help="skip archivemount and fuse-zip")
    ap.add_argument("--row-timeout", type=float, default=3600,
                    help="a row running longer is stuck: its hcexportfs is killed (B12: + its duration)")
    ap.add_argument("--cold-disk", action="store_true",
                    help="evict inputs (archives, .gz) from the page cache before each timing "
                         "instead of warming them")
    for k, v in FULL.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=None,
                        help="default %s (quick %s)" % (v, QUICK[k]))
    a = ap.parse_args(argv)
    base = QUICK if a.quick else FULL
    for k, v in base.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.b12_poll_interval is None:
        a.b12_poll_interval = a.poll_interval
    if a.reps < 1:
        ap.error("--reps must be >= 1")
    rows = ALL_ROWS if not a.only else [r.strip().upper() for r in a.only.split(",") if r.strip()]
    bad = [r for r in rows if r not in ALL_ROWS]
    if bad:
        ap.error("unknown rows %s (B1..B14)" % ",".join(bad))
    a.only = rows
    return a


def cleanup_all(b):
    for x in list(LIVE):
        try:
            x.stop()
        except Exception as e:  # keep cleaning
            say("cleanup: %r" % e)
        LIVE.discard(x)
    # anything still mounted under the work dir
    try:
        with open("/proc/self/mounts") as f:
            mnts = [line.split()[1] for line in f]
    except OSError:
        mnts = []
    for mp in mnts:
        mp = mp.replace("\\040", " ")
        if b and mp.startswith(b.workdir + "/"):
            unmount(mp, lazy=True)
    if b:
        rmtree(b.shm)


def main():
    global LOGF
    a = parse_args(sys.argv[1:])
    b = Bench(a)
    LOGF = open(os.path.join(b.logdir, "bench.log"), "w")
    if not os.access(b.bin, os.X_OK):
        sys.exit("no hcexportfs binary at %s (build it, or pass --bin)" % b.bin)
    # measure a private copy: a rebuild of the source tree's binary during the run (others
    # work in the same tree) must neither change nor break the binary under test
    os.makedirs(os.path.join(b.workdir, "bin"), exist_ok=True)
    snap = os.path.join(b.workdir, "bin", "hcexportfs")
    shutil.copy2(b.bin, snap + ".tmp")
    os.replace(snap + ".tmp", snap)
    with open(snap, "rb") as f:
        b.bin_sha256 = hashlib.sha256(f.read()).hexdigest()
    b.bin_source, b.bin = b.bin, snap

    def on_signal(signum, frame):
        raise Interrupted("signal %d" % signum)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_signal)
    atexit.register(cleanup_all, b)
    info = machine_info()
    say("hcexportfs benchmark: rows %s, %s mode, binary %s (copy of %s, sha256 %s), work dir %s" % (
        ",".join(a.only), "quick" if a.quick else "full", b.bin, b.bin_source, b.bin_sha256[:16],
        b.workdir))
    say("machine: %s" % info)
    started = time.time()
    status = 0
    threading.Thread(target=b.watchdog, daemon=True).start()
    try:
        b.run()
    except Interrupted as e:
        say("interrupted (%s): cleaning up" % e)
        status = 130
    except BenchError as e:
        say("FAILED: %s" % e)
        status = 1
    finally:
        cleanup_all(b)
    table, notes = b.report()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
              "seconds": time.time() - started, "mode": "quick" if a.quick else "full",
              "args": {k: v for k, v in vars(a).items()}, "machine": info, "binary": b.bin_source,
              "binary_sha256": b.bin_sha256,
              "calibration": b.cal, "rows": b.rows, "raw": b.raw, "crashes": b.crashes,
              "anomalies": b.anomalies}
    paths = [os.path.join(b.workdir, "results", "bench-%s.json" % stamp),
             os.path.join(b.workdir, "results", "latest.json")]
    if a.json:
        paths.append(a.json)
    for p in paths:
        with open(p, "w") as f:
            json.dump(result, f, indent=1, default=str)
    print()
    print("hcexportfs benchmarks (%s mode, medians of %d; cold = fresh mount after download, "
          "archive bytes in page cache%s; warm = second read on the same mount)" % (
              "quick" if a.quick else "full", a.reps, " evicted" if a.cold_disk else ""))
    print(table)
    if notes:
        print()
        for n in notes:
            print("  " + n)
    for c in b.crashes:
        print("  CRASH: " + c)
    for x in b.anomalies:
        print("  anomaly: " + x)
    print()
    print("raw figures: %s" % paths[0])
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
