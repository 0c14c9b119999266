"""emuharness -- start/stop the hwcloud-emulator from Python tests and talk to it.

Usage::

    from emuharness import Emulator, call, PROJECT
    with Emulator(tmpdir) as emu:                 # waits for the "URL ..." line
        st, hdrs, body = call(emu, "POST", f"/v1/{PROJECT}/waf/event/job/export",
                              {"recent": "today", "dump_columns": ["id"]})
        emu.set_faults(every_nth=2, nth_status=429)
        emu.calls("submit")                        # request-log entries of one kind

The emulator always stops in stop()/__exit__ (and by itself when this process
dies or after --max-lifetime).  Its stderr goes to <tmpdir>/emulator-<n>.log.
Standard library only.
"""
import datetime
import hashlib
import hmac
import http.client
import json
import os
import select
import ssl
import subprocess
import sys
import time
import urllib.parse

EMULATOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "contrib", "hwcloud-emulator")
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "QTWAOYTTINDUT2QVKYUC", "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"


class Emulator:
    """A running emulator process (context manager).  Attributes: url, port, state_dir,
    proc, stderr_path."""

    def __init__(self, tmpdir, *extra_args, job_delay=0.5, projects=(PROJECT,), ak=AK, sk=SK,
                 state_dir=""):
        """state_dir: "" -> <tmpdir>/emu-state (kept across restart()); None -> the
        emulator's private temp dir (lost on restart)."""
        self.tmpdir = str(tmpdir)
        self.state_dir = os.path.join(self.tmpdir, "emu-state") if state_dir == "" else state_dir
        self.extra_args = list(extra_args)
        self.job_delay, self.projects, self.ak, self.sk = job_delay, projects, ak, sk
        self.proc = None
        self.url = None
        self.port = 0
        self.n_starts = 0

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _argv(self, port):
        argv = [sys.executable, EMULATOR]
        if "--listen" not in self.extra_args:
            argv += ["--listen", "127.0.0.1:%d" % port]
        if "--state-dir" not in self.extra_args and self.state_dir:
            argv += ["--state-dir", self.state_dir]
        argv += ["--job-delay", str(self.job_delay)]
        for p in self.projects or ():
            argv += ["--project", p]
        if self.ak:
            argv += ["--ak", self.ak, "--sk", self.sk]
        return argv + self.extra_args

    def start(self, port=0):
        self.n_starts += 1
        self.stderr_path = os.path.join(self.tmpdir, "emulator-%d.log" % self.n_starts)
        with open(self.stderr_path, "wb") as errf:
            self.proc = subprocess.Popen(self._argv(port), stdout=subprocess.PIPE,
                                         stderr=errf, stdin=subprocess.DEVNULL)
        fd = self.proc.stdout.fileno()
        buf, deadline = b"", time.monotonic() + 10
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            r, _, _ = select.select([fd], [], [], max(0, left))
            chunk = os.read(fd, 4096) if r else b""
            if not chunk:
                self.proc.kill()
                self.proc.wait()
                with open(self.stderr_path, "rb") as f:
                    err = f.read().decode(errors="replace")
                raise RuntimeError("hwcloud-emulator did not print its URL line in 10 s "
                                   "(exit %s); stderr:\n%s" % (self.proc.returncode, err))
            buf += chunk
        line = buf.split(b"\n")[0].decode()
        if not line.startswith("URL "):
            self.stop()
            raise RuntimeError("unexpected first line from emulator: %r" % line)
        self.url = line[4:].strip()
        self.port = urllib.parse.urlsplit(self.url).port
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    def restart(self):
        """Same state dir, new process; same port if possible, else a new url."""
        port = self.port
        self.stop()
        try:
            return self.start(port)
        except RuntimeError:
            return self.start(0)

    @property
    def pid(self):
        return self.proc.pid

    # ---- admin API ----------------------------------------------------------
    def admin(self, method, path, obj=None):
        body = json.dumps(obj).encode() if obj is not None else None
        st, _, data = _request(self.url, method, "/_emulator/" + path, body,
                               {"Content-Type": "application/json"} if body else {})
        if st >= 300:
            raise RuntimeError("admin %s %s -> %d %s" % (method, path, st, data[:300]))
        return json.loads(data)

    def health(self):
        return self.admin("GET", "health")

    def log(self):
        return self.admin("GET", "log")["requests"]

    def clear_log(self):
        self.admin("DELETE", "log")

    def calls(self, kind):
        return [e for e in self.log() if e["call"] == kind]

    def set_faults(self, **knobs):
        """Replace all fault knobs (absent ones back to defaults)."""
        return self.admin("PUT", "faults", knobs)

    def patch_faults(self, **knobs):
        return self.admin("PATCH", "faults", knobs)

    def faults(self):
        return self.admin("GET", "faults")

    def config(self, **knobs):
        """PATCH the config (job_delay, rows, files, folders, compresslevel, clock_offset,
        now, token_ttl) and return it; with no knobs just returns it."""
        if knobs:
            return self.admin("PATCH", "config", knobs)
        return self.admin("GET", "config")

    def jobs(self):
        return self.admin("GET", "jobs")["jobs"]

    def finish(self, job_id, status="success"):
        return self.admin("POST", "jobs/%s/finish" % job_id, {"status": status})


def _enc(s):
    return urllib.parse.quote(s, safe="-_.~")


def sign_headers(method, url, body=b"", ak=AK, sk=SK, date=None, extra_headers=None):
    """SDK-HMAC-SHA256 headers for a request to `url` (full URL, query included).
    Signs host, x-sdk-date and every header in extra_headers (e.g. Content-Type).
    `date`: 'YYYYMMDDTHHMMSSZ', a datetime, epoch seconds, or None for now.
    Returns a dict with Host, X-Sdk-Date, Authorization and extra_headers."""
    if isinstance(body, str):
        body = body.encode()
    u = urllib.parse.urlsplit(url)
    if date is None:
        date = time.time()
    if isinstance(date, (int, float)):
        date = datetime.datetime.fromtimestamp(date, datetime.timezone.utc)
    if isinstance(date, datetime.datetime):
        date = date.strftime("%Y%m%dT%H%M%SZ")
    headers = {"Host": u.netloc, "X-Sdk-Date": date}
    headers.update(extra_headers or {})
    low = {k.lower(): str(v).strip() for k, v in headers.items()}
    signed = sorted(low)
    path = urllib.parse.unquote(u.path or "/")
    curi = "/".join(_enc(s) for s in path.split("/"))
    if not curi.endswith("/"):
        curi += "/"
    q = sorted((_enc(k), _enc(v)) for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    creq = "\n".join([method.upper(), curi, "&".join("%s=%s" % kv for kv in q),
                      "".join("%s:%s\n" % (h, low[h]) for h in signed), ";".join(signed),
                      hashlib.sha256(body).hexdigest()])
    sts = "SDK-HMAC-SHA256\n%s\n%s" % (date, hashlib.sha256(creq.encode()).hexdigest())
    sig = hmac.new(sk.encode(), sts.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = "SDK-HMAC-SHA256 Access=%s, SignedHeaders=%s, Signature=%s" % (
        ak, ";".join(signed), sig)
    return headers


def _request(base, method, path, body=None, headers=None, timeout=30):
    u = urllib.parse.urlsplit(base)
    if u.scheme == "https":
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        conn.putrequest(method, path, skip_host="Host" in hdrs, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def call(emu, method, path, body=None, auth="aksk", token=None, query=None, headers=None,
         ak=None, sk=None, date=None, content_type="application/json;charset=utf8"):
    """One cloud call.  body: dict/list (sent as JSON), str or bytes.  auth: "aksk"
    (signs with ak/sk, default the emulator's), "token" (X-Auth-Token: token) or None.
    query: dict or list of pairs.  Returns (status, headers lower-cased dict, body bytes)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    if query:
        path = path + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    hdrs = {}
    if body is not None and content_type:
        hdrs["Content-Type"] = content_type
    if auth == "aksk":
        hdrs = sign_headers(method, emu.url + path, body or b"", ak or emu.ak or AK,
                            sk or emu.sk or SK, date, hdrs)
    elif auth == "token":
        hdrs["X-Auth-Token"] = token
    hdrs.update(headers or {})
    return _request(emu.url, method, path, body, hdrs)


def submit(emu, flt, project=PROJECT, **kw):
    """Submit a filter; returns the job id (asserts 200)."""
    st, _, data = call(emu, "POST", "/v1/%s/waf/event/job/export" % project, flt, **kw)
    assert st == 200, (st, data)
    return json.loads(data)["job_id"]


def wait_job(emu, job_id, project=PROJECT, timeout=30, **kw):
    """Poll until the task is no longer running; returns the query reply dict."""
    deadline = time.monotonic() + timeout
    while True:
        st, _, data = call(emu, "GET", "/v5/%s/event/export-task/%s" % (project, job_id), **kw)
        assert st == 200, (st, data)
        r = json.loads(data)
        if r["task_status"] != "running" or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def download(emu, file_id, project=PROJECT, **kw):
    """GET the file; returns its bytes (asserts 200)."""
    st, _, data = call(emu, "GET", "/v5/%s/download/%s" % (project, file_id), **kw)
    assert st == 200, (st, data[:200])
    return data
