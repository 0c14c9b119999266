# server.py -- owns the HTTP side: command line, the ThreadingHTTPServer
# (HTTP/1.1 keep-alive, optional TLS), routing of the cloud calls (WAF submit,
# HSS query/download, IAM tokens), the admin API under /_emulator/, the
# request log, streaming downloads (Range, throttling, cut/corrupt faults),
# and the process lifetime (parent watch, max lifetime, SIGTERM/SIGINT).
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import archive, auth, faults, filters, state

MAX_BODY = 4 * 1024 * 1024
PID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WAF_PID_RE = re.compile(r"^[A-Za-z0-9]{32}$")


def log(msg):
    sys.stderr.write("%s hwcloud-emulator: %s\n" % (
        datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3], msg))
    sys.stderr.flush()


def parse_now(v):
    """Admin/CLI 'now': null, epoch seconds, 'YYYYMMDDTHHMMSSZ' or ISO 8601 UTC."""
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        t = auth.parse_sdk_date(v)
        if t is not None:
            return t
        try:
            d = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            if d.tzinfo is None:
                d = d.replace(tzinfo=datetime.timezone.utc)
            return d.timestamp()
        except ValueError:
            pass
    raise ValueError("'now' must be null, epoch seconds, YYYYMMDDTHHMMSSZ or ISO 8601")


class RequestLog:
    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []
        self.seq = 0

    def start(self, **kw):
        with self.lock:
            self.seq += 1
            e = dict(seq=self.seq, time=auth.rfc3339(time.time()).replace(".000000Z", "Z"),
                     status=None, bytes_sent=0, **kw)
            self.entries.append(e)
            return e

    def get(self):
        with self.lock:
            return [dict(e) for e in self.entries]

    def clear(self):
        with self.lock:
            self.entries = []


class App:
    def __init__(self, a):
        self.stopping = threading.Event()
        self.clock = auth.Clock(a.clock_offset, parse_now(a.now) if a.now else None)
        self.config = {"job_delay": a.job_delay, "rows": a.rows, "files": a.files,
                       "folders": a.folders, "compresslevel": a.compresslevel}
        self.tmp_state = None
        if a.state_dir:
            sd = a.state_dir
        else:
            sd = self.tmp_state = tempfile.mkdtemp(prefix="hwemu-")
        self.store = state.Store(sd)
        keys = []
        for i, ak in enumerate(a.ak or []):
            sk = a.sk[i] if a.sk and i < len(a.sk) else None
            if sk is None:
                raise SystemExit("--ak without a matching --sk")
            st = a.security_token[i] if a.security_token and i < len(a.security_token) else None
            keys.append((ak, sk, st or None))
        users = []
        for i, u in enumerate(a.user or []):
            try:
                users.append((u, a.password[i], a.domain[i]))
            except (TypeError, IndexError):
                raise SystemExit("--user needs --password and --domain")
        self.auth = auth.Authenticator(self.clock, keys, a.token or [], users, a.token_ttl,
                                       self.store.token_file())
        self.projects = set(a.project or [])
        self.faults = faults.Faults()
        init = {}
        for kv in a.fault or []:
            k, sep, v = kv.partition("=")
            if not sep:
                raise SystemExit("--fault wants KEY=VALUE")
            try:
                init[k] = json.loads(v)
            except ValueError:
                init[k] = v
        try:
            self.faults.merge(init)
        except faults.FaultError as e:
            raise SystemExit("--fault: %s" % e)
        self.reqlog = RequestLog()
        self.trap = Trap(self.reqlog)
        self.builder = archive.Builder(self.store, log)
        for job in self.store.all():  # resume builds interrupted by a restart
            if state.status(job, True) != "failure" and not filters.is_failure(job["filter"]):
                self.builder.ensure(job)

    def project_ok(self, pid):
        if self.projects:
            return pid in self.projects
        return bool(PID_RE.match(pid))

    def job_view(self, job):
        built = self.builder.is_built(job["job_id"])
        v = dict(job)
        v["status"] = state.status(job, built)
        v["built"] = built
        v["archive_size"] = (os.path.getsize(self.store.archive_path(job["job_id"]))
                             if built else None)
        return v


class Reply(Exception):
    def __init__(self, status, obj, headers=None):
        self.status, self.obj, self.headers = status, obj, headers or {}


def err(status, code, msg, headers=None):
    return Reply(status, {"error_code": code, "error_msg": msg}, headers)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle on, the body waits for the
    # ACK of the headers, which the client delays by 40 ms (every call took 44 ms).
    disable_nagle_algorithm = True
    server_version = "hwcloud-emulator"
    sys_version = ""
    timeout = 300

    def log_message(self, fmt, *args):
        pass

    def version_string(self):
        return self.server_version

    @property
    def app(self):
        return self.server.app

    # ---- plumbing ------------------------------------------------------
    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(n)
                self.rfile.readline(16)
                if len(out) > MAX_BODY:
                    raise err(413, "APIGW.0201", "request body too large")
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.close_connection = True
            raise err(413, "APIGW.0201", "request body too large")
        return self.rfile.read(n) if n > 0 else b""

    def send_body(self, status, body, ctype, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        if self.entry is not None:
            self.entry["status"] = status
            self.entry["bytes_sent"] = len(body)

    def send_json(self, status, obj, headers=None):
        self.send_body(status, (json.dumps(obj) + "\n").encode(),
                       "application/json;charset=UTF-8", headers)

    def reset(self):
        """Close the connection with an RST and no response."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self.dispatch()

    def dispatch(self):
        self.entry = None
        raw_path, _, raw_query = self.path.partition("?")
        try:
            qpairs = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        except ValueError:
            qpairs = []
        try:
            if raw_path.startswith("/_emulator/") or raw_path == "/_emulator":
                body = self.read_body()
                return self.admin(raw_path, body)
            self.cloud(raw_path, raw_query, qpairs)
        except Reply as r:
            self.send_json(r.status, r.obj, r.headers)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # pragma: no cover - report, keep serving
            log("internal error on %s %s: %r" % (self.command, self.path, e))
            import traceback
            traceback.print_exc()
            try:
                self.send_json(500, {"error_code": "EMU.0500", "error_msg": "emulator bug: %r" % e})
            except OSError:
                self.close_connection = True
        finally:
            if self.entry is not None:
                e = self.entry
                log("#%d %s %s -> %s (%s, auth=%s, %d bytes%s)" % (
                    e["seq"], self.command, self.path, e["status"], e["call"], e["auth"],
                    e["bytes_sent"], ", fault=" + e["fault"] if e.get("fault") else ""))

    # ---- cloud calls -------------------------------------------------------
    def route(self, raw_path):
        segs = [urllib.parse.unquote(s) for s in raw_path.split("/")]
        m, n = self.command, len(segs)
        if m == "POST" and n == 7 and segs[0] == "" and segs[1] == "v1" and \
                segs[3:] == ["waf", "event", "job", "export"]:
            return "submit", {"project": segs[2]}
        if m == "GET" and n == 6 and segs[1] == "v5" and segs[3:5] == ["event", "export-task"]:
            return "query", {"project": segs[2], "task_id": segs[5]}
        if m == "GET" and n == 5 and segs[1] == "v5" and segs[3] == "download":
            return "download", {"project": segs[2], "file_id": segs[4]}
        if m == "POST" and raw_path.rstrip("/") == "/v3/auth/tokens":
            return "token", {}
        return "unknown", {}

    def cloud(self, raw_path, raw_query, qpairs):
        app = self.app
        kind, params = self.route(raw_path)
        h = {k.lower(): v for k, v in self.headers.items()}
        authkind = "token" if "x-auth-token" in h else ("aksk" if "authorization" in h else "none")
        self.entry = app.reqlog.start(method=self.command, path=raw_path, query=dict(qpairs),
                                      call=kind, auth=authkind, **params)
        body = self.read_body()
        fk = app.faults
        if kind != "unknown":
            if fk.wait_hang(kind, app.stopping):
                self.entry["fault"] = "hang"
                if app.stopping.is_set():
                    return self.reset()
            lat = fk.snapshot()["latency_ms"]
            if lat:
                time.sleep(lat / 1000.0)
            if fk.reset_now(kind):
                self.entry["fault"] = "reset"
                return self.reset()
            nth = fk.nth_now(kind)
            if nth:
                status, retry_after, commit = nth
                self.entry["fault"] = "nth"
                hdrs = {"Retry-After": str(int(retry_after) if float(retry_after).is_integer()
                                           else retry_after)} if retry_after is not None else {}
                if commit and kind == "submit":
                    try:
                        self.handle_submit(params["project"], qpairs, h, raw_path, body)
                    except Reply:
                        pass
                if status == 429:
                    raise err(429, "APIGW.0308", "The throttling threshold has been reached", hdrs)
                raise err(status, "APIGW.0%d" % status if status != 500 else "WAF.00010001",
                          "Injected server failure (%d)" % status, hdrs)
        eps = dict(qpairs).get("enterprise_project_id")
        if eps is not None:
            self.entry["enterprise_project_id"] = eps
        if kind in ("submit", "query", "download"):
            bad = fk.bad_reply_now(kind)
            if bad:
                self.check_auth(params["project"], qpairs, h, raw_path, body)
                self.entry["fault"] = "bad_reply"
                return self.bad_reply(bad, kind, raw_path, params)
        if kind == "unknown":
            raise err(404, "APIGW.0001", "API not found: %s %s" % (self.command, raw_path))
        if kind == "token":
            return self.handle_token(body)
        if eps is not None and not 1 <= len(eps) <= 256:
            raise err(400, "WAF.00014002", "enterprise_project_id must be 1 to 256 characters")
        if kind == "submit":
            r = self.handle_submit(params["project"], qpairs, h, raw_path, body)
            raise r
        pid = self.check_auth(params["project"], qpairs, h, raw_path, body)
        if kind == "query":
            return self.handle_query(pid, params["task_id"])
        return self.handle_download(pid, params["file_id"])

    def check_auth(self, pid, qpairs, h, raw_path, body):
        app = self.app
        try:
            app.auth.verify(self.command, raw_path, qpairs, h, body, pid)
        except auth.AuthError as e:
            raise err(e.status, e.code, e.msg)
        if not app.project_ok(pid):
            raise err(403, "APIGW.0302",
                      "The IAM or enterprise project authorization is invalid: unknown project '%s'" % pid)
        return pid

    def handle_submit(self, pid, qpairs, h, raw_path, body):
        """Returns (does not raise) the success Reply; raises error Replies."""
        app = self.app
        self.check_auth(pid, qpairs, h, raw_path, body)
        if not WAF_PID_RE.match(pid):
            raise err(400, "WAF.00014001", "invalid project_id: must be 32 letters and digits")
        ctype = (h.get("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise err(400, "WAF.00014002", "Content-Type must be application/json, got '%s'"
                      % h.get("content-type", ""))
        try:
            flt = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise err(400, "WAF.00014002", "invalid JSON body: %s" % e)
        try:
            filters.validate(flt)
        except filters.FilterError as e:
            raise err(400, "WAF.00014002", str(e))
        job_id = uuid.uuid4().hex
        submit_ms = int(app.clock.now() * 1000)
        params = dict(app.config)
        fsnap = app.faults.snapshot()
        params["hostile"] = fsnap["hostile"]
        params["hostile_kind"] = fsnap["hostile_kind"]
        job = {"job_id": job_id, "project_id": pid, "filter": flt, "created": time.time(),
               "submit_ms": submit_ms, "params": params, "forced_status": None,
               "file_id": str(uuid.uuid4()), "file_name": "waf-event-%s.zip" % job_id[:8],
               "task_name": "event_waf_%d_export_task" % submit_ms,
               "enterprise_project_id": dict(qpairs).get("enterprise_project_id")}
        app.store.add(job)
        self.entry["task_id"] = job_id
        if not filters.is_failure(flt):
            app.builder.ensure(job)
        log("job %s submitted for %s: %s" % (job_id, pid, json.dumps(flt)))
        return Reply(200, {"status": "RUNNING", "message": "Checking domain name configuration",
                           "job_id": job_id})

    def handle_query(self, pid, task_id):
        app = self.app
        if not 1 <= len(task_id) <= 64:
            raise err(400, "HSS.0004", "task_id must be 1 to 64 characters")
        job = app.store.get(task_id)
        if job is None or job["project_id"] != pid:
            raise err(404, "HSS.1001", "task not found")
        st = state.status(job, app.builder.is_built(task_id))
        out = {"task_id": task_id, "task_name": job["task_name"], "task_status": st}
        if st == "success":
            out["file_id"] = job["file_id"]
            out["file_name"] = job["file_name"]
        raise Reply(200, out)

    def handle_download(self, pid, file_id):
        app = self.app
        self.entry["file_id"] = file_id
        job = app.store.by_file_id(file_id)
        if job is None or job["project_id"] != pid or \
                state.status(job, True) != "success":
            raise err(404, "HSS.1002", "file not found")
        self.entry["task_id"] = job["job_id"]
        ev = app.builder.ensure(job)
        while not ev.wait(0.5):
            if app.stopping.is_set():
                return self.reset()
        path = app.store.archive_path(job["job_id"])
        if not os.path.exists(path):
            app.builder.forget(job["job_id"])
            raise err(500, "HSS.0500", "archive generation failed: %s" %
                      app.builder.errors.get(job["job_id"], "unknown"))
        self.stream(path, job)

    def stream(self, path, job):
        size = os.path.getsize(path)
        cut, corrupt, bps, range_ok = self.app.faults.take_download()
        start, end, status = 0, size - 1, 200
        headers = {"Content-Disposition": 'attachment; filename="%s"' % job["file_name"]}
        rng = self.headers.get("Range")
        if range_ok:
            headers["Accept-Ranges"] = "bytes"
            m = re.match(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", rng or "")
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:
                    start, end = max(0, size - int(m.group(2))), size - 1
                if start >= size or start > end:
                    headers["Content-Range"] = "bytes */%d" % size
                    raise err(416, "HSS.0416", "requested range not satisfiable", headers)
                status = 206
                headers["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
        length = end - start + 1 if size else 0
        if cut:
            self.entry["fault"] = "cut"
        if corrupt:
            self.entry["fault"] = "corrupt"
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.entry["status"] = status
        limit = length // 2 if cut else length
        mid_lo, mid_hi = size // 2, size // 2 + 16
        chunk = 256 * 1024
        if bps:
            chunk = max(1, min(chunk, int(bps) // 10 or 1))
        t0 = time.monotonic()
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            while sent < limit:
                buf = f.read(min(chunk, limit - sent))
                if not buf:
                    break
                pos = start + sent
                if corrupt and pos < mid_hi and pos + len(buf) > mid_lo:
                    b = bytearray(buf)
                    for i in range(max(mid_lo, pos), min(mid_hi, pos + len(buf))):
                        b[i - pos] ^= 0xFF
                    buf = bytes(b)
                self.wfile.write(buf)
                sent += len(buf)
                self.entry["bytes_sent"] = sent
                if bps:
                    ahead = sent / float(bps) - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                if self.app.stopping.is_set():
                    break
        if cut or sent < limit:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def bad_reply(self, bad, kind, raw_path, params):
        """Answers a cloud call with a malformed response (knob bad_reply)."""
        if bad == "not_json":
            return self.send_body(200, b"<html><body>502 Bad Gateway (proxy)</body></html>\n",
                                  "text/html")
        if bad == "wrong_types":
            obj = {"submit": {"status": 200, "message": ["x"], "job_id": 12345},
                   "query": {"task_id": 7, "task_name": None, "task_status": ["success"],
                             "file_id": {"id": 1}, "file_name": 3},
                   "download": [1, 2, 3]}[kind]
            return self.send_json(200, obj)
        if bad == "missing_fields":
            return self.send_json(200, {"message": "ok"})
        if bad == "unknown_status":
            if kind == "query":
                return self.send_json(200, {"task_id": params.get("task_id"),
                                            "task_name": "event_waf_0_export_task",
                                            "task_status": "exploded"})
            return self.send_json(200, {"status": "EXPLODED", "message": "?",
                                        "job_id": "not a job id/../.."})
        if bad == "giant_body":
            # 100 MiB of valid JSON, streamed: a client must stop reading early.
            size = 100 << 20
            head, tail = b'{"task_status":"running","pad":"', b'"}\n'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.entry["status"] = 200
            self.close_connection = True
            chunk = b"x" * (1 << 20)
            left = size - len(head) - len(tail)
            try:
                self.wfile.write(head)
                sent = len(head)
                while left > 0:
                    n = min(left, len(chunk))
                    self.wfile.write(chunk[:n])
                    left -= n
                    sent += n
                    self.entry["bytes_sent"] = sent
                self.wfile.write(tail)
            except OSError:
                pass
            return None
        if bad == "giant_header":
            return self.send_body(200, b'{"task_status":"running"}\n', "application/json",
                                  {"X-Pad": "p" * (1 << 20)})
        if bad == "redirect":
            loc = "http://127.0.0.1:%d%s" % (self.app.trap.port, self.path)
            self.entry["redirect"] = loc
            return self.send_body(302 if kind != "submit" else 307,
                                  b'{"error_code":"APIGW.0302","error_msg":"moved"}\n',
                                  "application/json", {"Location": loc})
        raise AssertionError(bad)

    def handle_token(self, body):
        app = self.app
        try:
            req = json.loads(body.decode("utf-8"))
            ident = req["auth"]["identity"]
            if "password" not in ident.get("methods", []):
                raise KeyError("methods")
            user = ident["password"]["user"]
            name, password, domain = user["name"], user["password"], user["domain"]["name"]
            project = req["auth"]["scope"]["project"]["id"]
            if not all(isinstance(x, str) for x in (name, password, domain, project)):
                raise TypeError("strings expected")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise err(400, "IAM.0011", "Request parameter error: malformed auth body (%r)" % e)
        try:
            tok, rec = app.auth.login(name, password, domain, project)
        except auth.AuthError as e:
            raise err(e.status, e.code, e.msg)
        if not app.project_ok(project):
            raise err(400, "IAM.0003", "project '%s' not found" % project)
        self.entry["project"] = project
        out = {"token": {"expires_at": auth.rfc3339(rec["expires"]),
                         "issued_at": auth.rfc3339(rec["issued"]),
                         "methods": ["password"],
                         "project": {"id": project, "name": "cn-north-4"},
                         "user": {"name": name, "domain": {"name": domain}},
                         "catalog": []}}
        raise Reply(201, out, {"X-Subject-Token": tok})

    # ---- admin -------------------------------------------------------------
    def admin(self, raw_path, body):
        app = self.app
        host = self.client_address[0]
        if not (host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")):
            raise err(403, "EMU.0403", "admin API is loopback only")
        try:
            req = json.loads(body.decode("utf-8")) if body.strip() else {}
        except ValueError as e:
            raise err(400, "EMU.0400", "invalid JSON: %s" % e)
        p, m = raw_path.rstrip("/"), self.command
        if p == "/_emulator/health" and m == "GET":
            raise Reply(200, {"ok": True})
        if p == "/_emulator/log":
            if m == "GET":
                raise Reply(200, {"requests": app.reqlog.get()})
            if m == "DELETE":
                app.reqlog.clear()
                raise Reply(200, {"ok": True})
        if p == "/_emulator/faults":
            try:
                if m == "PUT":
                    app.faults.replace(self._obj(req))
                elif m == "PATCH":
                    app.faults.merge(self._obj(req))
                elif m != "GET":
                    raise err(405, "EMU.0405", "method not allowed")
            except faults.FaultError as e:
                raise err(400, "EMU.0400", str(e))
            raise Reply(200, app.faults.snapshot())
        if p == "/_emulator/config":
            if m == "PATCH":
                self.patch_config(self._obj(req))
            elif m != "GET":
                raise err(405, "EMU.0405", "method not allowed")
            c = dict(app.config)
            c["clock_offset"] = app.clock.offset
            c["now"] = auth.sdk_date(app.clock.fixed) if app.clock.fixed is not None else None
            c["server_time"] = auth.sdk_date(app.clock.now())
            c["token_ttl"] = app.auth.token_ttl
            c["state_dir"] = app.store.dir
            raise Reply(200, c)
        if p == "/_emulator/jobs" and m == "GET":
            raise Reply(200, {"jobs": [app.job_view(j) for j in app.store.all()]})
        mm = re.match(r"^/_emulator/jobs/([^/]+)/finish$", p)
        if mm and m == "POST":
            st = self._obj(req).get("status", "success")
            if st not in ("success", "failure"):
                raise err(400, "EMU.0400", "status must be success or failure")
            if app.store.get(mm.group(1)) is None:
                raise err(404, "EMU.0404", "no such job")
            job = app.store.finish(mm.group(1), st)
            if st == "success":
                app.builder.ensure(job)
            raise Reply(200, app.job_view(job))
        raise err(404, "EMU.0404", "unknown admin call %s %s" % (m, p))

    @staticmethod
    def _obj(req):
        if not isinstance(req, dict):
            raise err(400, "EMU.0400", "body must be a JSON object")
        return req

    def patch_config(self, req):
        app = self.app
        spec = {"job_delay": (float, 0, None), "rows": (int, 0, None), "files": (int, 1, 100000),
                "folders": (int, 0, 100000), "compresslevel": (int, 0, 9)}
        new = {}
        for k, v in req.items():
            if k in spec:
                typ, lo, hi = spec[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                        (typ is int and int(v) != v) or v < lo or (hi is not None and v > hi):
                    raise err(400, "EMU.0400", "bad value for '%s'" % k)
                new[k] = typ(v)
            elif k == "clock_offset":
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise err(400, "EMU.0400", "bad value for 'clock_offset'")
            elif k == "now":
                try:
                    parse_now(v)
                except ValueError as e:
                    raise err(400, "EMU.0400", str(e))
            elif k == "token_ttl":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    raise err(400, "EMU.0400", "bad value for 'token_ttl'")
            else:
                raise err(400, "EMU.0400", "unknown config key '%s'" % k)
        app.config.update(new)
        if "clock_offset" in req:
            app.clock.offset = float(req["clock_offset"])
        if "now" in req:
            app.clock.fixed = parse_now(req["now"])
        if "token_ttl" in req:
            app.auth.token_ttl = float(req["token_ttl"])


class Trap:
    """A second listener on another port, the target of the `redirect` bad
    reply: it records every request that arrives (method, path, whether it
    carried credentials) in the request log as call "trap" and answers 404."""

    def __init__(self, reqlog, host="127.0.0.1"):
        self.reqlog = reqlog
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="trap").start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                b = conn.recv(4096)
                if not b:
                    break
                data += b
            head = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
            method, _, rest = head[0].partition(" ")
            hdrs = {l.partition(":")[0].strip().lower() for l in head[1:]}
            e = self.reqlog.start(method=method, path=rest.rpartition(" ")[0], query={},
                                  call="trap", project=None,
                                  auth="token" if "x-auth-token" in hdrs else
                                  ("aksk" if "authorization" in hdrs else "none"))
            body = b'{"error_code":"TRAP.0404","error_msg":"redirect followed"}\n'
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            e["status"] = 404
            log("trap: %s %s (auth=%s)" % (method, e["path"], e["auth"]))
        except OSError:
            pass
        finally:
            conn.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    ssl_ctx = None

    def finish_request(self, request, client_address):
        if self.ssl_ctx is not None:
            try:
                request.settimeout(30)
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError) as e:
                log("TLS handshake with %s failed: %s" % (client_address[0], e))
                return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address):
        log("connection error from %s: %r" % (client_address[0], sys.exc_info()[1]))


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="hwcloud-emulator",
                                 description="Huawei Cloud WAF/HSS/IAM export API emulator")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--ak", action="append")
    ap.add_argument("--sk", action="append")
    ap.add_argument("--security-token", action="append")
    ap.add_argument("--token", action="append")
    ap.add_argument("--user", action="append")
    ap.add_argument("--password", action="append")
    ap.add_argument("--domain", action="append")
    ap.add_argument("--token-ttl", type=float, default=86400)
    ap.add_argument("--project", action="append")
    ap.add_argument("--state-dir")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--job-delay", type=float, default=2.0)
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--files", type=int, default=1)
    ap.add_argument("--folders", type=int, default=0)
    ap.add_argument("--compresslevel", type=int, default=6, choices=range(0, 10))
    ap.add_argument("--fault", action="append")
    ap.add_argument("--clock-offset", type=float, default=0.0)
    ap.add_argument("--now", help="fixed clock (YYYYMMDDTHHMMSSZ)")
    ap.add_argument("--max-lifetime", type=float, default=3600)
    a = ap.parse_args(argv)
    if a.files < 1 or a.rows < 0 or a.folders < 0:
        ap.error("--rows >= 0, --files >= 1, --folders >= 0")
    return a


def main(argv=None, ppid=None):
    ppid = os.getppid() if ppid is None else ppid
    a = parse_args(sys.argv[1:] if argv is None else argv)
    app = App(a)
    host, _, port = a.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = Server((host, int(port)), Handler)
    srv.app = app
    scheme = "http"
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        srv.ssl_ctx = ctx
        scheme = "https"
    def stop(why):
        if not app.stopping.is_set():
            log("stopping: %s" % why)
            app.stopping.set()
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, lambda *_: stop("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: stop("SIGINT"))
    t_end = time.monotonic() + a.max_lifetime
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = "[%s]" % shown
    sys.stdout.write("URL %s://%s:%d\n" % (scheme, shown, srv.server_address[1]))
    sys.stdout.flush()
    log("listening on %s://%s:%d, state in %s" % (scheme, shown, srv.server_address[1],
                                                  app.store.dir))


    def watchdog():
        while not app.stopping.wait(1.0):
            if os.getppid() != ppid:
                stop("parent process died")
            elif time.monotonic() > t_end:
                stop("max lifetime reached")
    threading.Thread(target=watchdog, daemon=True).start()
    try:
        srv.serve_forever(poll_interval=0.05)
    finally:
        app.stopping.set()
        with app.faults.cond:
            app.faults.cond.notify_all()
        try:
            srv.server_close()
        except OSError:
            pass
        if app.tmp_state:
            shutil.rmtree(app.tmp_state, ignore_errors=True)
        sys.stderr.flush()
        os._exit(0)
