"""emuharness -- start/stop the hwcloud-emulator from Python tests and talk to it.

Usage::

    from emuharness import Emulator, call, PROJECT
    with Emulator(tmpdir) as emu:                 # waits for the "URL ..." line
        st, hdrs, body = call(emu, "POST", f"/v1/{PROJECT}/waf/event/job/export",
                              {"recent": "today", "dump_columns": ["id"]})
        emu.set_faults(every_nth=2, nth_status=429)
        emu.calls("submit")                        # request-log entries of one kind
        job = submit(emu, {"recent": "today", "dump_columns": ["id"]})   # WAF
        r = wait_job(emu, job)                     # async-job, then its file in the list
        data = download(emu, r["file_id"])         # the pre-signed storage URL
        task = submit_hss(emu, {"category": "host", "last_days": 7})
        data = download(emu, wait_job(emu, task)["file_id"])   # HSS download

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

    def reset(self):
        """Back to the state right after start-up: no jobs, tasks or files (the
        event-log list is seeded again on the next WAF call), fault knobs as given by
        --fault, config and clock as on the command line, no issued tokens, empty log."""
        self.admin("POST", "reset")

    def calls(self, kind):
        """Log entries of one generic kind: submit, query, list, download, token
        (also unknown, trap)."""
        return [e for e in self.log() if e["call"] == kind]

    def api_calls(self, api):
        """Log entries of one API: submit_waf, async_job, event_dump, storage,
        export_hss, task_hss, download_hss, token."""
        return [e for e in self.log() if e.get("api") == api]

    def storage_log(self):
        """Log entries of the storage downloads (each with the header names received)."""
        return [e for e in self.log() if e.get("service") == "storage"]

    def job(self, job_id):
        """The admin view of one record (WAF job, HSS task, foreign job)."""
        return self.admin("GET", "jobs/%s" % job_id)

    def files(self, project=None):
        """Every WAF event-log file the emulator holds (listed or not), newest first."""
        return self.admin("GET", "files" + ("?project=" + project if project else ""))["files"]

    def file_of(self, job_id):
        """The event-log file record made by a WAF job (None while it has none)."""
        v = self.job(job_id)
        return v.get("file")

    def add_file(self, **kw):
        """POST /_emulator/files: origin (foreign|daily), project, timestamp | after_job
        (+ offset_ms), recent, dump_columns, rows, format, link."""
        return self.admin("POST", "files", kw)

    def bulk_files(self, **kw):
        """POST /_emulator/files/bulk: count (required), project, origin, timestamp,
        step_ms, start, rows, format (csv, zip, gzip, empty), recent, name_prefix,
        name_suffix, clash_every, empty_every.  Returns {"project", "count", "files": [ids, newest first]}."""
        kw.setdefault("project", PROJECT)
        return self.admin("POST", "files/bulk", kw)

    def remove_file(self, file_id):
        return self.admin("DELETE", "files/%s" % file_id)

    def patch_file(self, file_id, **kw):
        return self.admin("PATCH", "files/%s" % file_id, kw)

    def file_url(self, file_id, method="GET"):
        """A fresh pre-signed URL for a file, signed for method (admin; not in the
        request log)."""
        return self.admin("GET", "files/%s/url?method=%s" % (file_id, method))["url"]

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
         ak=None, sk=None, date=None, content_type="application/json;charset=utf8",
         project_header=True):
    """One cloud call.  body: dict/list (sent as JSON), str or bytes.  auth: "aksk"
    (signs with ak/sk, default the emulator's), "token" (X-Auth-Token: token) or None.
    query: dict or list of pairs (a list repeats names).  project_header: with aksk,
    send and sign X-Project-Id (the project of a /v1/{p}/ or /v5/{p}/ path), as the
    SDKs do.  Returns (status, headers lower-cased dict, body bytes)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    if query:
        path = path + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    hdrs = {}
    if body is not None and content_type:
        hdrs["Content-Type"] = content_type
    segs = path.split("?")[0].split("/")
    if auth == "aksk" and project_header and len(segs) > 2 and segs[1] in ("v1", "v5"):
        hdrs["X-Project-Id"] = urllib.parse.unquote(segs[2])
    if auth == "aksk":
        hdrs = sign_headers(method, emu.url + path, body or b"", ak or emu.ak or AK,
                            sk or emu.sk or SK, date, hdrs)
    elif auth == "token":
        hdrs["X-Auth-Token"] = token
    hdrs.update(headers or {})
    return _request(emu.url, method, path, body, hdrs)


def submit(emu, flt, project=PROJECT, **kw):
    """Submit a WAF export job; returns the job id (asserts 200)."""
    st, _, data = call(emu, "POST", "/v1/%s/waf/event/job/export" % project, flt, **kw)
    assert st == 200, (st, data)
    return json.loads(data)["job_id"]


def submit_hss(emu, params, columns=None, project=PROJECT, **kw):
    """Create an HSS event export: params as a dict (lists repeat the name) or a list
    of pairs, sent as the query; columns ([[key, header], ...]) as the body.  Returns
    the task id (asserts 200)."""
    pairs = []
    for k, v in (params.items() if isinstance(params, dict) else params):
        for x in (v if isinstance(v, list) else [v]):
            pairs.append((k, str(x)))
    st, _, data = call(emu, "POST", "/v5/%s/event/export" % project, columns, query=pairs, **kw)
    assert st == 200, (st, data)
    return json.loads(data)["task_id"]


def waf_status(emu, job_id, project=PROJECT, **kw):
    """One WAF async-job call; returns the reply dict (asserts 200)."""
    st, _, data = call(emu, "GET", "/v1/%s/waf/async-job/%s" % (project, job_id), **kw)
    assert st == 200, (st, data)
    return json.loads(data)


def event_dump(emu, page=None, pagesize=None, project=PROJECT, **kw):
    """One WAF event-log list call; returns {"total", "items"} (asserts 200)."""
    q = {}
    if page is not None:
        q["page"] = page
    if pagesize is not None:
        q["pagesize"] = pagesize
    st, _, data = call(emu, "GET", "/v1/%s/waf/event/dump" % project, query=q or None, **kw)
    assert st == 200, (st, data)
    return json.loads(data)


def list_files(emu, project=PROJECT, **kw):
    """Every item of the WAF event-log list (all pages of 100)."""
    out, page = [], 1
    while True:
        r = event_dump(emu, page, 100, project, **kw)
        out += r["items"]
        if not r["items"] or len(out) >= r["total"]:
            return out
        page += 1


def storage_get(url, headers=None, method="GET"):
    """Fetch a pre-signed storage URL as it is (no credentials unless in headers).
    Returns (status, headers lower-cased dict, body bytes)."""
    u = urllib.parse.urlsplit(url)
    return _request("%s://%s" % (u.scheme, u.netloc), method,
                    u.path + ("?" + u.query if u.query else ""), None, headers or {})


def is_waf_job(emu, job_id):
    try:
        return emu.job(job_id).get("service") == "waf"
    except RuntimeError:
        return False


def wait_job(emu, job_id, project=PROJECT, timeout=30, **kw):
    """Poll until the job/task is no longer running; returns the reply dict.  For an
    HSS task: the export-task reply.  For a WAF job: the async-job reply plus
    task_status (running/success/failure) and, on success, the job's file from the
    event-log list (file_id, file_name and the list item as `item`), waiting for it
    to be listed."""
    deadline = time.monotonic() + timeout
    if not is_waf_job(emu, job_id):
        while True:
            st, _, data = call(emu, "GET", "/v5/%s/event/export-task/%s" % (project, job_id),
                               **kw)
            assert st == 200, (st, data)
            r = json.loads(data)
            if r["task_status"] != "running" or time.monotonic() > deadline:
                return r
            time.sleep(0.05)
    while True:
        r = waf_status(emu, job_id, project, **kw)
        r["task_status"] = {"SUCCESS": "success", "FAILED": "failure"}.get(r["status"], "running")
        if r["task_status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if r["task_status"] != "success":
        return r
    fid = emu.file_of(job_id)["id"]
    while True:
        for it in list_files(emu, project, **kw):
            if it["id"] == fid:
                r.update(file_id=fid, file_name=it["filename"], item=it)
                return r
        if time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def download(emu, file_id, project=PROJECT, **kw):
    """GET a file; returns its bytes (asserts 200).  An HSS file through the HSS
    download call; a WAF event-log file through a fresh pre-signed storage URL
    (from the admin API, so that no list call is logged)."""
    try:
        f = emu.admin("GET", "files/%s" % file_id)
    except RuntimeError:
        f = None
    if f is not None and f.get("id") == file_id:
        st, _, data = storage_get(emu.file_url(file_id))
        assert st == 200, (st, data[:200])
        return data
    st, _, data = call(emu, "GET", "/v5/%s/download/%s" % (project, file_id), **kw)
    assert st == 200, (st, data[:200])
    return data
