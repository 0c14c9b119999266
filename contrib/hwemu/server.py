# server.py -- owns the HTTP side: command line, config knobs, the
# ThreadingHTTPServer (HTTP/1.1 keep-alive, optional TLS), routing and handling
# of the cloud calls (WAF submit/async-job/event dump, pre-signed storage
# downloads, HSS export/export-task/download, IAM tokens), the WAF event-log
# list (seeded daily and foreign files), the admin API under /_emulator/, the
# request log, streaming downloads (Range, throttling, cut/corrupt faults),
# and the process lifetime (parent watch, max lifetime, SIGTERM/SIGINT).
import argparse
import datetime
import email.utils
import hashlib
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

from . import archive, auth, bulk, events, faults, filters, hss, state, storage

MAX_BODY = 4 * 1024 * 1024


def server_error_code(status, service):
    """error_code of an injected 5xx (knob every_nth)."""
    if status == 500:
        return {"hss": "HSS.0010", "iam": "IAM.0001"}.get(service, "WAF.00010001")
    return {502: "APIG.0201", 504: "APIG.0202"}.get(status, "APIG.0203")
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


# Config knobs: name -> (type, min, max or choices, default).  PATCH /_emulator/config,
# --config KEY=VALUE; documented in EMULATOR.md.
CONFIG_SPEC = {
    "job_delay": (float, 0, None, 2.0),
    "rows": (int, 0, None, 200),
    "files": (int, 1, 100000, 1),
    "folders": (int, 0, 100000, 0),
    "compresslevel": (int, 0, 9, 6),
    "waf_file_format": (str, None, ("csv", "zip", "gzip"), "csv"),
    "waf_file_link": (str, None, ("none", "id", "name"), "none"),
    "list_delay": (float, 0, None, 0.0),
    "url_ttl": (float, 1, None, 600.0),
    "daily_files": (int, 0, 100, 3),
    "daily_future": (int, 0, 100, 1),
    "foreign_files": (int, 0, 1000, 2),
    "foreign_after_submit": (int, 0, 100, 0),
    "foreign_offset_ms": (int, 0, None, 1),
    "foreign_recent": (str, None, (None,) + filters.RECENT, None),
    "require_project_header": (bool, None, None, False),
}
MAX_PAGESIZE = 100
DAILY_COLUMNS = ["id", "time", "sip", "host", "url", "attack", "rule", "action"]
FOREIGN_COLUMNS = ["id", "time", "attack", "host"]
WAF_NOT_FOUND = "WAF.00022002"
EXT = {"csv": "csv", "zip": "zip", "gzip": "csv.gz"}
CTYPE = {"csv": "text/csv; charset=utf-8", "zip": "application/zip", "csv.gz": "application/x-gzip"}
WAF_STATUS = {"running": "RUNNING", "success": "SUCCESS", "failure": "FAILED"}
WAF_MESSAGE = {"running": "Checking domain name configuration",
               "success": "Export succeeded",
               "failure": "Export failed: no protected domain matched the filter"}


def check_config(k, v):
    """Validated value of config knob k; raises ValueError."""
    if k not in CONFIG_SPEC:
        raise ValueError("unknown config key '%s'" % k)
    typ, lo, hi, _ = CONFIG_SPEC[k]
    if typ is bool:
        if not isinstance(v, bool):
            raise ValueError("bad value for '%s': must be a boolean" % k)
        return v
    if typ is str:
        if v not in hi:
            raise ValueError("bad value for '%s': must be one of %s" % (
                k, ", ".join("null" if c is None else c for c in hi)))
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or \
            (typ is int and int(v) != v) or v < lo or (hi is not None and v > hi):
        raise ValueError("bad value for '%s'" % k)
    return typ(v)


class App:
    def __init__(self, a):
        self.stopping = threading.Event()
        self.clock = auth.Clock(a.clock_offset, parse_now(a.now) if a.now else None)
        self.config = {k: spec[3] for k, spec in CONFIG_SPEC.items()}
        self.config.update({"job_delay": a.job_delay, "rows": a.rows, "files": a.files,
                            "folders": a.folders, "compresslevel": a.compresslevel})
        for k, v in (("waf_file_format", a.waf_file_format), ("url_ttl", a.url_ttl),
                     ("list_delay", a.list_delay)):
            if v is not None:
                self.config[k] = v
        if a.require_project_header:
            self.config["require_project_header"] = True
        for kv in a.config or []:
            k, sep, v = kv.partition("=")
            if not sep:
                raise SystemExit("--config wants KEY=VALUE")
            try:
                v = json.loads(v)
            except ValueError:
                pass
            try:
                self.config[k] = check_config(k, v)
            except ValueError as e:
                raise SystemExit("--config: %s" % e)
        self.tmp_state = None
        if a.state_dir:
            sd = a.state_dir
        else:
            sd = self.tmp_state = tempfile.mkdtemp(prefix="hwemu-")
        self.store = state.Store(sd)
        self.storage_secret = self.store.storage_key()
        self.seed_lock = threading.Lock()
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
        self.initial = (dict(self.config), self.clock.offset, self.clock.fixed,
                        self.auth.token_ttl, init)
        self.reqlog = RequestLog()
        self.trap = Trap(self.reqlog)
        self.builder = archive.Builder(self.store, log)
        for job in self.store.all():  # resume builds interrupted by a restart
            if job.get("origin", "job") == "job" and state.status(job, True) != "failure":
                self.builder.ensure(job)

    def reset(self):
        """POST /_emulator/reset: back to the state right after start-up."""
        config, offset, fixed, ttl, init = self.initial
        self.faults.replace(init)
        self.config = dict(config)
        self.clock.offset, self.clock.fixed = offset, fixed
        self.auth.token_ttl = ttl
        with self.auth.lock:
            self.auth.tokens = {}
            self.auth._save_tokens()
        self.builder.quiesce()
        self.store.wipe()
        self.reqlog.clear()

    def project_ok(self, pid):
        if self.projects:
            return pid in self.projects
        return bool(PID_RE.match(pid))

    def now_ms(self):
        return int(self.clock.now() * 1000)

    def job_view(self, job):
        built = self.builder.is_built(job)
        v = dict(job)
        v["status"] = state.status(job, built)
        v["built"] = built
        v["archive_size"] = os.path.getsize(self.store.archive_path(job)) if built else None
        if job.get("file"):
            v["listed"] = self.listed(job)
            v["file"] = self.file_item(job, None)
            v["file"]["listed"] = v["listed"]
        return v

    # ---- WAF event-log files ------------------------------------------------
    def params_snapshot(self, **over):
        p = {k: self.config[k] for k in ("job_delay", "rows", "files", "folders",
                                         "compresslevel")}
        fs = self.faults.snapshot()
        p["hostile"], p["hostile_kind"] = fs["hostile"], fs["hostile_kind"]
        p.update(over)
        return p

    def new_waf_record(self, pid, flt, submit_ms, origin, job_id=None, file_ts=None,
                       link=None, fmt=None, **params):
        """A WAF record (a job of ours, a foreign job, or a daily file) with its file."""
        job_id = job_id or uuid.uuid4().hex
        p = self.params_snapshot(**params)
        fmt = fmt or self.config["waf_file_format"]
        ext = "zip" if (p["hostile"] or p["hostile_kind"]) else EXT[fmt]
        link = link or self.config["waf_file_link"]
        day = datetime.datetime.fromtimestamp(submit_ms / 1000.0, datetime.timezone.utc)
        tag = job_id if link == "name" else uuid.uuid4().hex[:8]
        if origin == "daily":
            fname = "waf-events-daily-%s-%s.%s" % (
                (day - datetime.timedelta(days=1)).strftime("%Y%m%d"), tag, ext)
        else:
            fname = "waf-events-%s-%s.%s" % (day.strftime("%Y%m%d"), tag, ext)
        file_id = job_id if link == "id" else uuid.uuid4().hex
        start, span = events.window(flt["recent"], submit_ms)
        rec = {"job_id": job_id, "service": "waf", "origin": origin, "project_id": pid,
               "filter": flt, "created": time.time(), "submit_ms": submit_ms, "params": p,
               "forced_status": None, "ext": ext, "file_id": file_id, "file_name": fname,
               "task_name": None, "enterprise_project_id": None, "file_ts": file_ts,
               "removed": False}
        if p["hostile"] or p["hostile_kind"]:
            total = 0
        else:
            total = archive.generator(rec).count()
        rec["file"] = {
            "id": file_id, "filename": fname,
            "obsname": "waf/%s/%s/%s" % (pid, day.strftime("%Y/%m/%d"), fname),
            "source": "daily_dump" if origin == "daily" else "export_job",
            "state": "finished",
            "description": ("daily attack event log" if origin == "daily" else
                            "attack events export (%s)" % flt["recent"]) +
                           (" job %s" % job_id if link == "name" else ""),
            "tenantid": hashlib.md5(("tenant:" + pid).encode()).hexdigest(),
            "start": start, "end": start + span - 1, "total": total}
        if origin != "job":
            rec["forced_status"] = "success"
            rec["forced_at"] = rec["created"]
        return rec

    def seed(self, pid):
        """First WAF call for a project: WAF's daily files and older foreign jobs."""
        with self.seed_lock:
            if self.store.seeded(pid):
                return
            now = self.now_ms()
            midnight = now - now % events.DAY_MS
            c = self.config
            for k in range(c["daily_files"]):
                ts = midnight - k * events.DAY_MS + 5 * 60000
                if ts > now:  # today's 00:05 is still ahead
                    ts -= events.DAY_MS * c["daily_files"]
                self.add_record(self.new_waf_record(
                    pid, {"recent": "yesterday", "dump_columns": DAILY_COLUMNS}, ts, "daily",
                    file_ts=ts, link="none", hostile=False, hostile_kind=""))
            for j in range(c["daily_future"]):
                ts = midnight + (j + 1) * events.DAY_MS + 5 * 60000
                self.add_record(self.new_waf_record(
                    pid, {"recent": "yesterday", "dump_columns": DAILY_COLUMNS}, ts, "daily",
                    file_ts=ts, link="none", hostile=False, hostile_kind=""))
            recents = ("today", "1week", "3days", "1month", "yesterday")
            for k in range(c["foreign_files"]):
                ts = now - (k + 1) * 7200 * 1000
                self.add_record(self.new_waf_record(
                    pid, {"recent": recents[k % len(recents)], "dump_columns": FOREIGN_COLUMNS},
                    ts - 60000, "foreign", file_ts=ts, link="none", hostile=False,
                    hostile_kind=""))
            self.store.seeded(pid, mark=True)

    def add_record(self, rec):
        self.store.add(rec)
        return rec

    def listed(self, job):
        """Whether a WAF record's file is in the event-log list now."""
        if job.get("service") != "waf" or not job.get("file") or job.get("removed"):
            return False
        if state.status(job, job.get("origin") != "job" or self.builder.is_built(job)) != "success":
            return False
        if job.get("file_ts") is not None and self.now_ms() < job["file_ts"]:
            return False
        return time.time() >= state.success_wall(job) + self.config["list_delay"]

    def file_item(self, job, base, method="GET"):
        it = dict(job["file"])
        it["timestamp"] = state.file_timestamp(job)
        if base is not None:
            now = self.clock.now()
            expires = int(now) + int(self.config["url_ttl"])
            it["url"] = storage.presign(base, self.storage_secret,
                                        storage.bucket_of(job["project_id"]),
                                        job["file"]["obsname"], expires, method)
            it["urltimestamp"] = int(now * 1000)
        return it

    def files_of(self, pid):
        out = [j for j in self.store.all() if j["project_id"] == pid and self.listed(j)]
        out.sort(key=lambda j: (state.file_timestamp(j), j["file_id"]), reverse=True)
        return out


class Reply(Exception):
    def __init__(self, status, obj, headers=None):
        self.status, self.obj, self.headers = status, obj, headers or {}


def err(status, code, msg, headers=None):
    return Reply(status, {"error_code": code, "error_msg": msg}, headers)


# route table: (method, path regex) -> (kind, api, service)
ROUTES = [
    ("POST", re.compile(r"^/v1/([^/]+)/waf/event/job/export$"), "submit", "submit_waf", "waf"),
    ("GET", re.compile(r"^/v1/([^/]+)/waf/async-job/([^/]+)$"), "query", "async_job", "waf"),
    ("GET", re.compile(r"^/v1/([^/]+)/waf/event/dump$"), "list", "event_dump", "waf"),
    ("POST", re.compile(r"^/v5/([^/]+)/event/export$"), "submit", "export_hss", "hss"),
    ("GET", re.compile(r"^/v5/([^/]+)/event/export-task/([^/]+)$"), "query", "task_hss", "hss"),
    ("GET", re.compile(r"^/v5/([^/]+)/download/([^/]+)$"), "download", "download_hss", "hss"),
    ("POST", re.compile(r"^/v3/auth/tokens/?$"), "token", "token", "iam"),
]


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

    def date_time_string(self, timestamp=None):
        """The Date header follows the emulator clock, as file timestamps do (a
        client may measure the cloud's clock by it)."""
        return email.utils.formatdate(self.app.clock.now() if timestamp is None else timestamp,
                                      usegmt=True)

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
                    raise err(413, "APIG.0201", "request body too large")
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.close_connection = True
            raise err(413, "APIG.0201", "request body too large")
        return self.rfile.read(n) if n > 0 else b""

    def send_body(self, status, body, ctype, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        # the log entry is complete before the client can have the reply
        if self.entry is not None:
            self.entry["status"] = status
            self.entry["bytes_sent"] = len(body) if self.command != "HEAD" else 0
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

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

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = lambda self: self.dispatch()

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
                return self.admin(raw_path, body, qpairs)
            self.cloud(raw_path, raw_query, qpairs)
        except Reply as r:
            self.send_json(r.status, r.obj, r.headers)
        except storage.StorageError as e:
            if self.entry is not None:
                self.entry["storage_error"] = e.code
            self.send_body(e.status, storage.xml_error(e.code, e.msg, raw_path),
                           "application/xml", e.headers)
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
                log("#%d %s %s -> %s (%s/%s, auth=%s, %d bytes%s)" % (
                    e["seq"], self.command, self.path, e["status"], e["call"], e["api"],
                    e["auth"], e["bytes_sent"], ", fault=" + e["fault"] if e.get("fault") else ""))

    # ---- cloud calls -------------------------------------------------------
    def route(self, raw_path):
        """-> (kind, api, service, params)."""
        if raw_path.startswith(storage.PREFIX):
            return "download", "storage", "storage", {}
        for m, rx, kind, api, service in ROUTES:
            mm = rx.match(raw_path)
            if mm and self.command == m:
                g = [urllib.parse.unquote(x) for x in mm.groups()]
                params = {}
                if g:
                    params["project"] = g[0]
                if api in ("async_job", "task_hss"):
                    params["task_id"] = g[1]
                    if api == "async_job":
                        params["job_id"] = g[1]
                if api == "download_hss":
                    params["file_id"] = g[1]
                return kind, api, service, params
        return "unknown", "unknown", None, {}

    def cloud(self, raw_path, raw_query, qpairs):
        app = self.app
        kind, api, service, params = self.route(raw_path)
        h = {k.lower(): v for k, v in self.headers.items()}
        authkind = "token" if "x-auth-token" in h else ("aksk" if "authorization" in h else "none")
        self.entry = app.reqlog.start(method=self.command, path=raw_path, query=dict(qpairs),
                                      call=kind, api=api, service=service, auth=authkind,
                                      headers=sorted(h), **params)
        self.service = service
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
                        r = self.handle_submit(api, params["project"], qpairs, h, raw_path, body)
                    except Reply:
                        pass
                if service == "storage":
                    code = {429: "SlowDown", 500: "InternalError", 503: "ServiceUnavailable"}.get(
                        status, "InternalError")
                    raise storage.StorageError(status, code, "Injected storage failure (%d)"
                                               % status, hdrs)
                if status == 429:
                    raise err(429, "APIG.0308", "The throttling threshold has been reached", hdrs)
                raise err(status, server_error_code(status, service),
                          "Injected server failure (%d)" % status, hdrs)
        if service == "storage":
            return self.handle_storage(raw_path, qpairs, h)
        eps = dict(qpairs).get("enterprise_project_id", dict(qpairs).get("enterpriseProjectId"))
        if eps is not None:
            self.entry["enterprise_project_id"] = eps
        if "region" in h:
            self.entry["region"] = h["region"]
        if kind in ("submit", "query", "list", "download"):
            bad = fk.bad_reply_now(kind)
            if bad:
                self.check_auth(params["project"], qpairs, h, raw_path, body)
                self.entry["fault"] = "bad_reply"
                return self.bad_reply(bad, kind, raw_path, params)
        if kind == "unknown":
            raise err(404, "APIG.0101", "The API does not exist or has not been published "
                      "in the environment: %s %s" % (self.command, raw_path))
        if kind == "token":
            return self.handle_token(body)
        if kind == "submit":
            raise self.handle_submit(api, params["project"], qpairs, h, raw_path, body)
        pid = self.check_auth(params["project"], qpairs, h, raw_path, body)
        if api == "async_job":
            return self.handle_async_job(pid, params["job_id"], qpairs)
        if api == "event_dump":
            return self.handle_event_dump(pid, qpairs, h)
        if api == "task_hss":
            return self.handle_task_hss(pid, params["task_id"], qpairs)
        return self.handle_download_hss(pid, params["file_id"], qpairs)

    def check_auth(self, pid, qpairs, h, raw_path, body):
        app = self.app
        try:
            app.auth.verify(self.command, raw_path, qpairs, h, body, pid,
                            app.config["require_project_header"])
        except auth.AuthError as e:
            raise err(e.status, e.code, e.msg)
        if not app.project_ok(pid):
            raise err(403, "APIG.0302",
                      "The IAM or enterprise project authorization is invalid: unknown project '%s'" % pid)
        if self.service == "waf":
            if not WAF_PID_RE.match(pid):
                raise err(400, "WAF.00014001", "invalid project_id: must be 32 letters and digits")
            app.seed(pid)
        return pid

    def only_params(self, qpairs, allowed, code):
        seen = set()
        for k, v in qpairs:
            if k not in allowed:
                raise err(400, code, "unknown query parameter '%s'" % k)
            if k in seen:
                raise err(400, code, "query parameter '%s' given more than once" % k)
            seen.add(k)
            if k in ("enterprise_project_id", "enterpriseProjectId") and not 1 <= len(v) <= 256:
                raise err(400, code, "%s must be 1 to 256 characters" % k)
        return dict(qpairs)

    # ---- WAF ---------------------------------------------------------------
    def handle_submit(self, api, pid, qpairs, h, raw_path, body):
        """Returns (does not raise) the success Reply; raises error Replies."""
        if api == "export_hss":
            return self.handle_export_hss(pid, qpairs, h, raw_path, body)
        app = self.app
        self.check_auth(pid, qpairs, h, raw_path, body)
        self.only_params(qpairs, (), filters.BAD_PARAM)
        ctype = (h.get("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise err(400, filters.BAD_BODY, "Content-Type must be application/json, got '%s'"
                      % h.get("content-type", ""))
        try:
            flt = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise err(400, filters.BAD_BODY, "invalid JSON body: %s" % e)
        try:
            filters.validate(flt)
        except filters.FilterError as e:
            raise err(400, e.code, str(e))
        submit_ms = app.now_ms()
        job = app.new_waf_record(pid, flt, submit_ms, "job")
        app.add_record(job)
        self.entry["task_id"] = self.entry["job_id"] = job["job_id"]
        if not filters.is_failure(flt):
            app.builder.ensure(job)
        c = app.config
        for i in range(c["foreign_after_submit"]):
            f = dict(flt)
            f["recent"] = c["foreign_recent"] or flt["recent"]
            f["dump_columns"] = FOREIGN_COLUMNS
            f.pop("hosts", None)
            ts = submit_ms + c["foreign_offset_ms"] + i
            app.add_record(app.new_waf_record(pid, f, submit_ms + 1 + i, "foreign", file_ts=ts,
                                              link="none", hostile=False, hostile_kind=""))
        log("WAF job %s submitted for %s: %s" % (job["job_id"], pid, json.dumps(flt)))
        return Reply(200, {"status": "RUNNING", "message": WAF_MESSAGE["running"],
                           "job_id": job["job_id"]})

    def handle_async_job(self, pid, job_id, qpairs):
        app = self.app
        self.only_params(qpairs, ("enterpriseProjectId",), filters.BAD_PARAM)
        job = app.store.get(job_id)
        if job is None or job["project_id"] != pid or job.get("service") != "waf" or \
                job.get("origin") == "daily":
            raise err(404, WAF_NOT_FOUND, "Resource not found: job '%s'" % job_id)
        st = state.status(job, job.get("origin") != "job" or app.builder.is_built(job))
        raise Reply(200, {"status": WAF_STATUS[st], "message": WAF_MESSAGE[st], "job_id": job_id})

    def handle_event_dump(self, pid, qpairs, h):
        app = self.app
        q = self.only_params(qpairs, ("page", "pagesize"), filters.BAD_PARAM)
        vals = {}
        for k, dflt, hi in (("page", 1, None), ("pagesize", 10, MAX_PAGESIZE)):
            v = q.get(k)
            if v is None:
                vals[k] = dflt
                continue
            if not re.fullmatch(r"[0-9]{1,9}", v) or int(v) < 1 or (hi is not None and int(v) > hi):
                raise err(400, filters.BAD_PARAM, "query parameter '%s' must be an integer from 1%s"
                          % (k, " to %d" % hi if hi else ""))
            vals[k] = int(v)
        files = app.files_of(pid)
        host = h.get("host") or "127.0.0.1:%d" % self.server.server_address[1]
        base = "%s://%s" % ("https" if self.server.ssl_ctx is not None else "http", host)
        lo = (vals["page"] - 1) * vals["pagesize"]
        items = [app.file_item(j, base) for j in files[lo:lo + vals["pagesize"]]]
        self.entry["items"] = [i["id"] for i in items]
        raise Reply(200, {"total": len(files), "items": items})

    def handle_storage(self, raw_path, qpairs, h):
        app = self.app
        e = self.entry
        e["auth"] = "none"
        for name in storage.CREDENTIAL_HEADERS:
            if name in h:
                e["refused_header"] = name
                raise storage.StorageError(
                    400, "InvalidArgument",
                    "Only one auth mechanism allowed; header %s is not allowed with a "
                    "pre-signed URL" % name)
        bo = storage.split_path(raw_path)
        if bo is None:
            raise storage.StorageError(404, "NoSuchKey", "The specified key does not exist.")
        bucket, obj = bo
        e["bucket"], e["object"] = bucket, obj
        if "range" in h:
            e["range"] = h["range"][:200]
        head_mode = app.faults.snapshot()["storage_head"]
        if self.command not in ("GET", "HEAD") or (self.command == "HEAD" and
                                                     head_mode == "refuse"):
            raise storage.StorageError(405, "MethodNotAllowed",
                                       "The specified method is not allowed against this resource.")
        sf = app.faults.storage_fault_now()
        if sf:
            e["fault"] = "storage_" + sf
            if sf == "expired":
                raise storage.StorageError(403, "AccessDenied", "Request has expired")
            if sf == "denied":
                raise storage.StorageError(403, "AccessDenied", "Access Denied")
            raise storage.StorageError(int(sf), "InternalError" if sf == "500" else
                                       "ServiceUnavailable", "Injected storage failure (%s)" % sf)
        try:
            storage.verify(app.storage_secret, self.command, bucket, obj, qpairs, app.clock.now())
        except storage.StorageError as se:
            # storage_head "any": a URL signed for GET also answers HEAD.
            if not (self.command == "HEAD" and head_mode == "any" and
                    se.code == "SignatureDoesNotMatch"):
                raise
            storage.verify(app.storage_secret, "GET", bucket, obj, qpairs, app.clock.now())
        job = None
        pid = obj.split("/")[1] if obj.startswith("waf/") and obj.count("/") >= 2 else None
        cand = app.store.by_object(pid, obj) if pid else None
        if cand is not None and storage.bucket_of(cand["project_id"]) == bucket:
            job = cand
        else:  # an object name of another shape: look through every record
            for j in app.store.all():
                if j.get("file") and j["file"]["obsname"] == obj and \
                        storage.bucket_of(j["project_id"]) == bucket:
                    job = j
                    break
        if job is None or job.get("removed") or \
                state.status(job, job.get("origin") != "job" or app.builder.is_built(job)) != "success":
            raise storage.StorageError(404, "NoSuchKey", "The specified key does not exist.")
        e["project"], e["file_id"] = job["project_id"], job["file_id"]
        if job.get("origin") == "job":
            e["task_id"] = e["job_id"] = job["job_id"]
        bad = app.faults.bad_reply_now("download")
        if bad:
            e["fault"] = "bad_reply"
            return self.bad_reply(bad, "download", raw_path, {})
        self.serve_file(job, lambda st, code, msg, hd: storage.StorageError(st, code, msg, hd),
                        CTYPE[job.get("ext") or "zip"])

    # ---- HSS ---------------------------------------------------------------
    def handle_export_hss(self, pid, qpairs, h, raw_path, body):
        app = self.app
        self.check_auth(pid, qpairs, h, raw_path, body)
        try:
            flt = hss.validate_params(qpairs)
            ctype = (h.get("content-type") or "").split(";")[0].strip().lower()
            cols = hss.validate_columns(body, ctype)
        except hss.ParamError as e:
            raise err(400, e.code, str(e))
        submit_ms = app.now_ms()
        task_id = str(uuid.uuid4())
        p = app.params_snapshot()
        job = {"job_id": task_id, "service": "hss", "origin": "job", "project_id": pid,
               "filter": flt, "columns": cols, "created": time.time(), "submit_ms": submit_ms,
               "params": p, "forced_status": None, "ext": "zip",
               "file_id": str(uuid.uuid4()),
               "file_name": "hss-event-%s-%d.zip" % (flt["category"], submit_ms // 1000),
               "task_name": "event_%s_%d_export_task" % (flt["category"], submit_ms),
               "enterprise_project_id": flt.get("enterprise_project_id"),
               "record_total_num": hss.count(flt, int(p["rows"]))}
        app.add_record(job)
        self.entry["task_id"] = task_id
        if not hss.is_failure(flt):
            app.builder.ensure(job)
        log("HSS task %s submitted for %s: %s %s" % (task_id, pid, json.dumps(flt), json.dumps(cols)))
        return Reply(200, {"task_id": task_id, "record_total_num": job["record_total_num"]})

    def handle_task_hss(self, pid, task_id, qpairs):
        app = self.app
        self.only_params(qpairs, ("enterprise_project_id",), hss.BAD)
        if not 1 <= len(task_id) <= 64:
            raise err(400, "HSS.0004", "task_id must be 1 to 64 characters")
        job = app.store.get(task_id)
        if job is None or job["project_id"] != pid or job.get("service") != "hss":
            raise err(404, "HSS.1001", "task not found")
        st = state.status(job, app.builder.is_built(job))
        out = {"task_id": task_id, "task_name": job["task_name"], "task_status": st}
        if st == "success":
            out["file_id"] = job["file_id"]
            out["file_name"] = job["file_name"]
        raise Reply(200, out)

    def handle_download_hss(self, pid, file_id, qpairs):
        app = self.app
        self.only_params(qpairs, ("enterprise_project_id",), hss.BAD)
        if self.headers.get("Range") is not None:
            self.entry["range"] = self.headers["Range"][:200]
        job = app.store.by_file_id(file_id)
        if job is None or job["project_id"] != pid or job.get("service") != "hss" or \
                state.status(job, True) != "success":
            raise err(404, "HSS.1002", "file not found")
        self.entry["task_id"] = job["job_id"]
        self.serve_file(job, lambda st, code, msg, hd: err(st, code, msg, hd),
                        "application/octet-stream")

    # ---- file bodies -------------------------------------------------------
    def serve_file(self, job, mkerr, ctype):
        app = self.app
        ev = app.builder.ensure(job)
        while not ev.wait(0.5):
            if app.stopping.is_set():
                return self.reset()
        path = app.store.archive_path(job)
        if not os.path.exists(path):
            app.builder.forget(job["job_id"])
            raise mkerr(500, "InternalError" if job["service"] == "waf" else "HSS.0500",
                        "archive generation failed: %s" %
                        app.builder.errors.get(job["job_id"], "unknown"), {})
        self.stream(path, job, mkerr, ctype)

    def stream(self, path, job, mkerr, ctype):
        size = os.path.getsize(path)
        if self.command == "HEAD":  # sends no body: uses up no cut/corrupt fault
            cut, corrupt, bps, range_ok = False, False, 0, self.app.faults.snapshot()["range"]
        else:
            cut, corrupt, bps, range_ok = self.app.faults.take_download()
        start, end, status = 0, size - 1, 200
        headers = {"Content-Disposition": 'attachment; filename="%s"' % job["file_name"]}
        if job.get("service") == "waf":
            headers["ETag"] = '"%s"' % hashlib.md5(job["file_id"].encode()).hexdigest()
            headers["Last-Modified"] = email.utils.formatdate(
                state.file_timestamp(job) / 1000.0, usegmt=True)
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
                    if self.app.faults.snapshot()["range_416_content_range"]:
                        headers["Content-Range"] = "bytes */%d" % size
                    raise mkerr(416, "InvalidRange" if job["service"] == "waf" else "HSS.0416",
                                "requested range not satisfiable", headers)
                status = 206
                headers["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
        length = end - start + 1 if size else 0
        if cut:
            self.entry["fault"] = "cut"
        if corrupt:
            self.entry["fault"] = "corrupt"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for k, v in headers.items():
            self.send_header(k, v)
        self.entry["status"] = status
        if length == 0 or self.command == "HEAD":
            self.end_headers()
            return
        self.end_headers()
        if self.command == "HEAD":
            return
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
                sent += len(buf)
                self.entry["bytes_sent"] = sent  # before the client can have it
                self.wfile.write(buf)
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
        waf = self.service == "waf"
        if bad == "not_json":
            return self.send_body(200, b"<html><body>502 Bad Gateway (proxy)</body></html>\n",
                                  "text/html")
        if bad == "wrong_types":
            if kind == "query":
                obj = ({"status": ["SUCCESS"], "message": 7, "job_id": {"id": 1}} if waf else
                       {"task_id": 7, "task_name": None, "task_status": ["success"],
                        "file_id": {"id": 1}, "file_name": 3})
            elif kind == "submit":
                obj = ({"status": 200, "message": ["x"], "job_id": 12345} if waf else
                       {"task_id": 12345, "record_total_num": "many"})
            elif kind == "list":
                obj = {"total": "3", "items": {"id": 1, "url": 5}}
            else:
                obj = [1, 2, 3]
            return self.send_json(200, obj)
        if bad == "missing_fields":
            return self.send_json(200, {"message": "ok"})
        if bad == "unknown_status":
            if kind == "query":
                if waf:
                    return self.send_json(200, {"status": "EXPLODED", "message": "?",
                                                "job_id": params.get("job_id")})
                return self.send_json(200, {"task_id": params.get("task_id"),
                                            "task_name": "event_host_0_export_task",
                                            "task_status": "exploded"})
            if kind == "list":
                return self.send_json(200, {"total": 1, "items": [{
                    "id": "../../x/../..", "filename": "../../etc/passwd\n.csv",
                    "obsname": "/../../evil", "state": "EXPLODED", "start": -1, "end": "x",
                    "timestamp": 2 ** 62, "total": -5,
                    "url": "http://127.0.0.1:%d/evil" % self.app.trap.port}]})
            if waf or kind != "submit":
                return self.send_json(200, {"status": "EXPLODED", "message": "?",
                                            "job_id": "not a job id/../.."})
            return self.send_json(200, {"task_id": "not a task id/../..", "record_total_num": -1})
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
                                  b'{"error_code":"APIG.0302","error_msg":"moved"}\n',
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
    def admin(self, raw_path, body, qpairs=()):
        app = self.app
        host = self.client_address[0]
        if not (host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")):
            raise err(403, "EMU.0403", "admin API is loopback only")
        try:
            req = json.loads(body.decode("utf-8")) if body.strip() else {}
        except ValueError as e:
            raise err(400, "EMU.0400", "invalid JSON: %s" % e)
        p, m = raw_path.rstrip("/"), self.command
        q = dict(qpairs)
        if p == "/_emulator/health" and m == "GET":
            raise Reply(200, {"ok": True})
        if p == "/_emulator/reset" and m == "POST":
            app.reset()
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
            c["server_time_ms"] = app.now_ms()
            c["token_ttl"] = app.auth.token_ttl
            c["state_dir"] = app.store.dir
            c["storage_access_key"] = storage.ACCESS_KEY
            raise Reply(200, c)
        if p == "/_emulator/jobs" and m == "GET":
            raise Reply(200, {"jobs": [app.job_view(j) for j in app.store.all()
                                       if j.get("origin", "job") == "job"]})
        mm = re.match(r"^/_emulator/jobs/([^/]+)(/finish)?$", p)
        if mm and m == "GET" and not mm.group(2):
            job = app.store.get(mm.group(1))
            if job is None:
                raise err(404, "EMU.0404", "no such job")
            raise Reply(200, app.job_view(job))
        if mm and m == "POST" and mm.group(2):
            st = self._obj(req).get("status", "success")
            if st not in ("success", "failure"):
                raise err(400, "EMU.0400", "status must be success or failure")
            job = app.store.get(mm.group(1))
            if job is None or job.get("origin") == "daily":
                raise err(404, "EMU.0404", "no such job")
            job = app.store.finish(mm.group(1), st)
            if st == "success":
                app.builder.ensure(job)
            raise Reply(200, app.job_view(job))
        if p == "/_emulator/files":
            if m == "GET":
                pid = q.get("project")
                if pid:
                    app.seed(pid)
                recs = [j for j in app.store.all() if j.get("file") and
                        (not pid or j["project_id"] == pid)]
                recs.sort(key=lambda j: (state.file_timestamp(j), j["file_id"]), reverse=True)
                raise Reply(200, {"files": [self.admin_file(j) for j in recs]})
            if m == "POST":
                raise Reply(200, self.admin_add_file(self._obj(req)))
        if p == "/_emulator/files/bulk" and m == "POST":
            try:
                raise Reply(200, bulk.seed(app, self._obj(req), WAF_PID_RE.match))
            except bulk.BulkError as e:
                raise err(400, "EMU.0400", str(e))
        mm = re.match(r"^/_emulator/files/([^/]+)(/url)?$", p)
        if mm:
            job = app.store.by_file_id(mm.group(1))
            if job is None or not job.get("file"):
                raise err(404, "EMU.0404", "no such file")
            if m == "GET" and mm.group(2):
                base = q.get("base") or "%s://127.0.0.1:%d" % (
                    "https" if self.server.ssl_ctx is not None else "http",
                    self.server.server_address[1])
                method = q.get("method", "GET")
                if method not in ("GET", "HEAD"):
                    raise err(400, "EMU.0400", "method must be GET or HEAD")
                raise Reply(200, {"url": app.file_item(job, base, method)["url"]})
            if m == "GET":
                raise Reply(200, self.admin_file(job))
            if m == "DELETE":
                job = app.store.update(job["job_id"], removed=True)
                raise Reply(200, self.admin_file(job))
            if m == "PATCH":
                o = self._obj(req)
                upd = {}
                for k, v in o.items():
                    if k == "removed" and isinstance(v, bool):
                        upd["removed"] = v
                    elif k == "timestamp" and (v is None or (isinstance(v, int) and
                                                             not isinstance(v, bool))):
                        upd["file_ts"] = v
                    else:
                        raise err(400, "EMU.0400", "PATCH a file with 'removed' (bool) "
                                  "or 'timestamp' (ms or null)")
                raise Reply(200, self.admin_file(app.store.update(job["job_id"], **upd)))
        raise err(404, "EMU.0404", "unknown admin call %s %s" % (m, p))

    def admin_file(self, job):
        v = self.app.file_item(job, None)
        v.update({"job_id": job["job_id"] if job.get("origin") != "daily" else None,
                  "origin": job.get("origin", "job"), "project_id": job["project_id"],
                  "listed": self.app.listed(job), "removed": bool(job.get("removed")),
                  "format": job.get("ext"), "recent": job["filter"]["recent"],
                  "size": os.path.getsize(self.app.store.archive_path(job))
                  if self.app.builder.is_built(job) else None})
        return v

    def admin_add_file(self, o):
        """POST /_emulator/files: add a daily or foreign file now."""
        app = self.app
        allowed = ("project", "origin", "timestamp", "after_job", "offset_ms", "recent",
                   "dump_columns", "rows", "format", "link")
        for k in o:
            if k not in allowed:
                raise err(400, "EMU.0400", "unknown key '%s' (allowed: %s)" % (k, ", ".join(allowed)))
        origin = o.get("origin", "foreign")
        if origin not in ("foreign", "daily"):
            raise err(400, "EMU.0400", "origin must be foreign or daily")
        pid = o.get("project")
        after = None
        if o.get("after_job") is not None:
            after = app.store.get(o["after_job"])
            if after is None:
                raise err(404, "EMU.0404", "no such job")
            pid = pid or after["project_id"]
        if not pid and len(app.projects) == 1:
            pid = next(iter(app.projects))
        if not isinstance(pid, str) or not WAF_PID_RE.match(pid):
            raise err(400, "EMU.0400", "'project' (32 letters/digits) is required")
        app.seed(pid)
        if after is not None:
            off = o.get("offset_ms", 1)
            if isinstance(off, bool) or not isinstance(off, int):
                raise err(400, "EMU.0400", "'offset_ms' must be an integer")
            ts = after["submit_ms"] + off
        else:
            ts = o.get("timestamp", app.now_ms())
            if isinstance(ts, bool) or not isinstance(ts, int):
                raise err(400, "EMU.0400", "'timestamp' must be an integer (ms)")
        recent = o.get("recent") or (after["filter"]["recent"] if after is not None and
                                     after.get("service") == "waf" else
                                     ("yesterday" if origin == "daily" else "today"))
        cols = o.get("dump_columns") or (DAILY_COLUMNS if origin == "daily" else FOREIGN_COLUMNS)
        flt = {"recent": recent, "dump_columns": cols}
        try:
            filters.validate(flt)
        except filters.FilterError as e:
            raise err(400, "EMU.0400", str(e))
        fmt = o.get("format")
        if fmt is not None and fmt not in EXT:
            raise err(400, "EMU.0400", "format must be csv, zip or gzip")
        link = o.get("link", "none")
        if link not in ("none", "name", "id"):
            raise err(400, "EMU.0400", "link must be none, name or id")
        over = {"hostile": False, "hostile_kind": ""}
        if o.get("rows") is not None:
            if isinstance(o["rows"], bool) or not isinstance(o["rows"], int) or o["rows"] < 0:
                raise err(400, "EMU.0400", "'rows' must be a non-negative integer")
            over["rows"] = o["rows"]
        submit = ts - 1 if after is None else after["submit_ms"] + 1
        rec = app.new_waf_record(pid, flt, submit, origin, file_ts=ts, link=link, fmt=fmt, **over)
        app.add_record(rec)
        return self.admin_file(rec)

    @staticmethod
    def _obj(req):
        if not isinstance(req, dict):
            raise err(400, "EMU.0400", "body must be a JSON object")
        return req

    def patch_config(self, req):
        app = self.app
        new = {}
        for k, v in req.items():
            if k in CONFIG_SPEC:
                try:
                    new[k] = check_config(k, v)
                except ValueError as e:
                    raise err(400, "EMU.0400", str(e))
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
    ap.add_argument("--config", action="append", help="set a config knob KEY=VALUE (JSON)")
    ap.add_argument("--waf-file-format", choices=("csv", "zip", "gzip"))
    ap.add_argument("--url-ttl", type=float)
    ap.add_argument("--list-delay", type=float)
    ap.add_argument("--require-project-header", action="store_true")
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
