# WAF job lifecycle (submit, async-job, event-log list, storage download), file
# contents honouring filters, Range, state-dir persistence, determinism, the
# request log and the admin API.
import csv
import gzip
import io
import json
import os
import re
import time
import zipfile

import urllib.parse

import pytest

import emuharness as h
from hwemu import archive, events, filters
from conftest import OTHER_PROJECT

ALL = list(filters.COLUMNS)
SUBMIT = "/v1/%s/waf/event/job/export" % h.PROJECT


def q(emu, jid, project=h.PROJECT, **kw):
    st, _, data = h.call(emu, "GET", "/v1/%s/waf/async-job/%s" % (project, jid), **kw)
    return st, json.loads(data)


def dl(emu, fid, headers=None):
    """GET a WAF file through a fresh pre-signed URL."""
    return h.storage_get(emu.file_url(fid), headers)


def run_job(emu, flt, **kw):
    jid = h.submit(emu, flt, **kw)
    r = h.wait_job(emu, jid, **kw)
    assert r["task_status"] == "success", r
    return jid, r, h.download(emu, r["file_id"])


def csv_text(data, name="events.csv"):
    if data[:2] == b"PK":
        return zipfile.ZipFile(io.BytesIO(data)).read(name).decode()
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data).decode()
    return data.decode()


def read_csv(data, name="events.csv"):
    return list(csv.reader(io.StringIO(csv_text(data, name), newline="")))


def test_lifecycle(emu):
    emu.config(job_delay=3600)
    jid = h.submit(emu, {"recent": "today", "dump_columns": ["id", "time", "attack"]})
    st, r = q(emu, jid)
    assert st == 200 and r == {"status": "RUNNING", "message": r["message"], "job_id": jid}
    assert jid not in [i["id"] for i in h.list_files(emu)]
    emu.finish(jid)
    st, r = q(emu, jid)
    assert r["status"] == "SUCCESS" and r["job_id"] == jid
    r = h.wait_job(emu, jid)
    it = r["item"]
    assert it["id"] != jid and re.fullmatch(r"[0-9a-f]{32}", it["id"])
    for k in ("filename", "obsname", "description"):
        assert jid not in it[k], k
    assert re.fullmatch(r"waf-events-\d{8}-[0-9a-f]{8}\.csv", it["filename"])
    assert set(it) == {"id", "filename", "obsname", "source", "state", "description",
                       "tenantid", "start", "end", "total", "timestamp", "url",
                       "urltimestamp"}
    assert it["total"] == 200
    st, hdrs, data = h.storage_get(it["url"])
    assert st == 200 and hdrs["content-type"].startswith("text/csv")
    assert int(hdrs["content-length"]) == len(data)
    rows = read_csv(data)
    assert rows[0] == ["id", "time", "attack"] and len(rows) == 201
    assert data.startswith(b"id,time,attack\n")
    assert len({r[0] for r in rows[1:]}) == 200
    sub = job_record(emu, jid)["submit_ms"]
    assert it["start"] == sub - sub % 86400000 and it["end"] == sub
    assert it["timestamp"] >= sub


def test_zip_format(emu):
    emu.config(waf_file_format="zip")
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ["id", "time", "attack"]})
    assert r["file_name"].endswith(".zip")
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.testzip() is None
    assert sorted(z.namelist()) == ["events.csv", "manifest.json"]
    m = json.loads(z.read("manifest.json"))
    assert m["job_id"] == jid and m["project_id"] == h.PROJECT and m["rows"] == 200
    assert m["generated_by"] == "hwcloud-emulator" and m["columns"] == ["id", "time", "attack"]
    st, hdrs, _ = h.storage_get(r["item"]["url"])
    assert hdrs["content-type"] == "application/zip"


def test_gzip_format(emu):
    emu.config(waf_file_format="gzip")
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ["id", "attack"]})
    assert r["file_name"].endswith(".csv.gz") and data[:2] == b"\x1f\x8b"
    rows = read_csv(data)
    assert rows[0] == ["id", "attack"] and len(rows) == 201
    emu.config(waf_file_format="csv")
    jid2, r2, plain = run_job(emu, {"recent": "today", "dump_columns": ["id", "attack"]})
    assert plain[:3] == b"id,"


def test_all_columns_and_quoting(emu):
    emu.config(rows=3000)
    jid, r, data = run_job(emu, {"recent": "3days", "dump_columns": ALL})
    rows = read_csv(data)
    assert rows[0] == ALL
    assert all(len(x) == 20 for x in rows)
    assert len(rows) == 3001
    body = data
    assert b'"' in body  # some fields needed RFC 4180 quoting
    assert any("," in x[ALL.index("payload")] for x in rows[1:])
    assert any("\n" in x[ALL.index("request_body")] for x in rows[1:])
    for x in rows[1:]:
        d = dict(zip(ALL, x))
        assert d["attack"] in events.ATTACKS and d["action"] in events.ACTIONS
        assert re.fullmatch(r"\d{6}", d["rule"]) and re.fullmatch(r"\d{3}", d["status"])
        assert d["host_id"] == events.host_id(d["host"])
        assert d["request_line"].endswith(" " + d["url"])


def job_record(emu, jid):
    return [j for j in emu.jobs() if j["job_id"] == jid][0]


def check_window(emu, jid, recent, times):
    sub = job_record(emu, jid)["submit_ms"]
    start, span = events.window(recent, sub)
    for t in times:
        assert start <= t < start + span
    day = 86400000
    if recent == "today":
        assert start == sub - sub % day
    if recent == "yesterday":
        assert start + span == sub - sub % day


@pytest.mark.parametrize("recent", filters.RECENT)
def test_time_window(emu, recent):
    jid, r, data = run_job(emu, {"recent": recent, "dump_columns": ["time"]})
    check_window(emu, jid, recent, [int(x[0]) for x in read_csv(data)[1:]])


def test_filter_every_field_honoured(emu):
    emu.config(rows=2000)
    prefix = events.id_prefix(h.PROJECT)
    excluded = prefix + "%012x" % 5
    flt = {"recent": "1week", "dump_columns": ALL,
           "nids": [excluded, "whatever"],
           "attacks": ["sqli", "xss", "cmdi"], "nattacks": ["cmdi"],
           "rules": ["041001", "041002", "999999"], "nrules": ["999999"],
           "sips": ["203.0.113.7", "203.0.113.8", "198.51.100.1"], "nsips": ["198.51.100.1"],
           "sip": "203.0.113",
           "urls": ["/login", "/api/v1/items?id=1,2", "/admin"], "nurls": ["/admin"], "url": "/",
           "actions": ["block", "log"], "nactions": ["log"],
           "hosts": ["www.example.com", "api.example.com", "shop.example.com", "x.example.org"],
           "instances": ["waf-inst-1"]}
    jid, r, data = run_job(emu, flt)
    rows = read_csv(data)
    assert rows[0] == ALL and len(rows) == 2000  # header + 1999 rows: one id excluded
    assert r["item"]["total"] == 1999
    ids = set()
    for x in rows[1:]:
        d = dict(zip(ALL, x))
        assert d["id"] != excluded
        ids.add(d["id"])
        assert d["attack"] in ("sqli", "xss")
        assert d["rule"] in ("041001", "041002")
        assert d["sip"] in ("203.0.113.7", "203.0.113.8") and "203.0.113" in d["sip"]
        assert d["url"] in ("/login", "/api/v1/items?id=1,2")
        assert d["action"] == "block"
        assert d["host"] in ("www.example.com", "shop.example.com", "x.example.org")
        assert events.instance_of(d["host"]) == "waf-inst-1"
    assert len(ids) == 1999
    check_window(emu, jid, "1week", [int(x[1]) for x in rows[1:]])


def test_ids_filter(emu):
    ids = ["id-a", "id-b", 'id,"c"', "id-d"]
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ["id", "attack"],
                                 "ids": ids, "nids": ["id-b"]})
    rows = read_csv(data)
    assert sorted(x[0] for x in rows[1:]) == sorted(["id-a", 'id,"c"', "id-d"])


def test_fuzzy_and_excludes_without_include_lists(emu):
    emu.config(rows=1500)
    flt = {"recent": "today", "dump_columns": ["sip", "url", "attack", "action", "rule", "host"],
           "sip": "10.20", "url": "checkout", "nattacks": ["sqli", "xss"],
           "nactions": ["block", "pass"], "nsips": ["10.20.1.1"], "nurls": ["checkout"],
           "nrules": ["%06d" % i for i in range(40000, 120000)], "instances": ["waf-inst-2"]}
    jid, r, data = run_job(emu, flt)
    rows = read_csv(data)
    assert len(rows) == 1501
    for sip, url, attack, action, rule, host in rows[1:]:
        assert "10.20" in sip and sip != "10.20.1.1"
        assert "checkout" in url and url != "checkout"
        assert attack not in ("sqli", "xss") and action in ("log", "captcha")
        assert not 40000 <= int(rule) < 120000
        assert events.instance_of(host) == "waf-inst-2"


@pytest.mark.parametrize("extra", [
    {"attacks": ["sqli"], "nattacks": ["sqli"]},
    {"actions": ["block"], "nactions": ["block"]},
    {"sips": ["1.2.3.4"], "sip": "9.9"},
    {"urls": ["/a"], "nurls": ["/a"]},
    {"hosts": ["www.example.com"], "instances": ["waf-inst-3"]},
    {"instances": ["no-such-instance"]},
    {"ids": ["a"], "nids": ["a"]},
])
def test_contradictory_filter_header_only(emu, extra):
    flt = dict({"recent": "today", "dump_columns": ["id", "host"]}, **extra)
    jid, r, data = run_job(emu, flt)
    assert data == b"id,host\n"
    assert r["item"]["total"] == 0


def test_files_and_folders(emu):
    emu.config(rows=1000, files=5, folders=2, compresslevel=1, waf_file_format="zip")
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ["id", "time"]})
    z = zipfile.ZipFile(io.BytesIO(data))
    names = [n for n in z.namelist() if n != "manifest.json"]
    assert names == ["part-001/events-0001.csv", "part-002/events-0002.csv",
                     "part-001/events-0003.csv", "part-002/events-0004.csv",
                     "part-001/events-0005.csv"]
    total = 0
    for n in names:
        rows = read_csv(data, n)
        assert rows[0] == ["id", "time"]
        total += len(rows) - 1
        assert len(rows) - 1 == 200
    assert total == 1000
    emu.config(files=3, folders=0)
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ["id"]})
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == [
        "events-0001.csv", "events-0002.csv", "events-0003.csv", "manifest.json"]


def test_failure_filter(emu):
    emu.config(job_delay=3600)
    jid = h.submit(emu, {"recent": "today", "dump_columns": ["id"],
                         "hosts": ["www.example.com", "fail.example.com"]})
    assert q(emu, jid)[1]["status"] == "RUNNING"
    emu.config(job_delay=0)
    jid = h.submit(emu, {"recent": "today", "dump_columns": ["id"],
                         "hosts": ["www.example.com", "fail.example.com"]})
    r = h.wait_job(emu, jid)
    assert r["status"] == "FAILED" and r["task_status"] == "failure" and "file_id" not in r
    assert jid not in {f.get("job_id") for f in emu.files(h.PROJECT) if f["listed"]}


def test_unknown_ids(emu):
    st, j = q(emu, "0" * 32)
    assert st == 404 and j["error_code"] == "WAF.00022002"
    # a job of another project is not visible
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ["id"]})
    assert q(emu, jid, project=OTHER_PROJECT)[0] == 404
    assert r["file_id"] not in [i["id"] for i in h.list_files(emu, OTHER_PROJECT)]
    # an HSS task is unknown to WAF, a WAF job unknown to HSS
    task = h.submit_hss(emu, {"category": "host"})
    assert q(emu, task)[0] == 404
    st, _, body = h.call(emu, "GET", "/v5/%s/event/export-task/%s" % (h.PROJECT, jid))
    assert st == 404 and json.loads(body)["error_code"] == "HSS.1001"
    st, _, body = h.call(emu, "GET", "/v5/%s/download/%s" % (h.PROJECT, r["file_id"]))
    assert st == 404
    # the file of a running job is neither listed nor downloadable
    emu.config(job_delay=3600)
    jid2 = h.submit(emu, {"recent": "today", "dump_columns": ["id"]})
    f = emu.file_of(jid2)
    assert not f["listed"] and f["id"] not in [i["id"] for i in h.list_files(emu)]
    assert dl(emu, f["id"])[0] == 404


def test_range(emu):
    jid, r, full = run_job(emu, {"recent": "today", "dump_columns": ALL})
    n = len(full)
    url = r["item"]["url"]
    st, hd, data = h.storage_get(url, {"Range": "bytes=100-"})
    assert st == 206 and data == full[100:]
    assert hd["content-range"] == "bytes 100-%d/%d" % (n - 1, n)
    assert int(hd["content-length"]) == n - 100 and hd["accept-ranges"] == "bytes"
    st, hd, data = h.storage_get(url, {"Range": "bytes=10-19"})
    assert st == 206 and data == full[10:20] and hd["content-range"] == "bytes 10-19/%d" % n
    st, hd, data = h.storage_get(url, {"Range": "bytes=-7"})
    assert st == 206 and data == full[-7:]
    st, hd, data = h.storage_get(url, {"Range": "bytes=0-0"})
    assert st == 206 and data == full[:1] and hd["content-range"] == "bytes 0-0/%d" % n
    st, hd, data = h.storage_get(url, {"Range": "bytes=%d-" % n})
    assert st == 416 and hd["content-range"] == "bytes */%d" % n
    assert b"<Code>InvalidRange</Code>" in data
    emu.patch_faults(range=False)
    st, hd, data = h.storage_get(url, {"Range": "bytes=100-"})
    assert st == 200 and data == full and "content-range" not in hd


def test_finish_admin(emu):
    emu.config(job_delay=3600)
    a = h.submit(emu, {"recent": "today", "dump_columns": ["id"]})
    b = h.submit(emu, {"recent": "today", "dump_columns": ["id"]})
    assert q(emu, a)[1]["status"] == "RUNNING"
    emu.finish(a)
    emu.finish(b, "failure")
    ra, rb = q(emu, a)[1], q(emu, b)[1]
    assert ra["status"] == "SUCCESS" and rb["status"] == "FAILED"
    assert h.download(emu, h.wait_job(emu, a)["file_id"])[:3] == b"id\n"
    js = {j["job_id"]: j for j in emu.jobs()}
    assert js[a]["status"] == "success" and js[b]["status"] == "failure"
    assert js[a]["params"]["job_delay"] == 3600 and js[a]["filter"]["recent"] == "today"
    assert js[a]["service"] == "waf" and js[a]["listed"] is True and js[b]["listed"] is False
    # HSS tasks too
    t = h.submit_hss(emu, {"category": "container"})
    emu.finish(t, "failure")
    assert h.wait_job(emu, t)["task_status"] == "failure"


def test_config_snapshot_per_job(emu):
    emu.config(rows=10)
    a = h.submit(emu, {"recent": "today", "dump_columns": ["id"]})
    emu.config(rows=20)
    b = h.submit(emu, {"recent": "today", "dump_columns": ["id"]})
    for jid, n in ((a, 10), (b, 20)):
        r = h.wait_job(emu, jid)
        assert len(read_csv(h.download(emu, r["file_id"]))) == n + 1
        assert r["item"]["total"] == n
    c = emu.config()
    assert c["rows"] == 20 and c["files"] == 1 and c["now"] is None


def test_config_rejects_bad_values(emu):
    for bad in ({"rows": -1}, {"files": 0}, {"compresslevel": 10}, {"nosuch": 1}, {"now": "garbage"},
                {"waf_file_format": "rar"}, {"waf_file_link": "maybe"}, {"url_ttl": 0},
                {"list_delay": -1}, {"require_project_header": 1}, {"foreign_recent": "never"}):
        with pytest.raises(RuntimeError):
            emu.config(**bad)


def test_fixed_clock_sets_event_times(emu):
    emu.config(now="20261122T101500Z")
    jid = h.submit(emu, {"recent": "today", "dump_columns": ["time"]},
                   date="20261122T101500Z")
    rec = job_record(emu, jid)
    assert rec["submit_ms"] == 1795342500000
    r = h.wait_job(emu, jid, date="20261122T101500Z")
    data = h.download(emu, r["file_id"], date="20261122T101500Z")
    times = [int(x[0]) for x in read_csv(data)[1:]]
    assert min(times) == 1795305600000 and max(times) <= 1795342500000
    assert r["item"]["start"] == 1795305600000 and r["item"]["end"] == 1795342500000
    assert r["item"]["filename"].startswith("waf-events-20261122-")
    emu.config(waf_file_format="zip")
    jid = h.submit(emu, {"recent": "today", "dump_columns": ["time"]},
                   date="20261122T101500Z")
    r = h.wait_job(emu, jid, date="20261122T101500Z")
    data = h.download(emu, r["file_id"])
    zi = zipfile.ZipFile(io.BytesIO(data)).getinfo("events.csv")
    assert zi.date_time == (2026, 11, 22, 10, 15, 0)


def test_state_dir_survives_restart(emu):
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ALL})
    emu.config(job_delay=1.0)
    running = h.submit(emu, {"recent": "today", "dump_columns": ["id"]})
    url = r["item"]["url"]
    files = h.list_files(emu)
    emu.restart()
    r2 = h.wait_job(emu, jid)
    assert r2["file_id"] == r["file_id"] and r2["item"]["timestamp"] == r["item"]["timestamp"]
    assert h.download(emu, r["file_id"]) == data
    if urllib.parse.urlsplit(url).port == emu.port:
        assert h.storage_get(url)[2] == data  # a URL issued before the restart still works
    assert h.wait_job(emu, running)["task_status"] == "success"
    assert [f["id"] for f in files] == [f["id"] for f in h.list_files(emu)
                                        if f["id"] != emu.file_of(running)["id"]]
    # file deleted while stopped: rebuilt byte-identical
    emu.stop()
    os.unlink(os.path.join(emu.state_dir, "archives", jid + ".csv"))
    emu.start()
    assert h.download(emu, r["file_id"]) == data
    task = h.submit_hss(emu, {"category": "host"})
    hz = h.download(emu, h.wait_job(emu, task)["file_id"])
    emu.restart()
    assert h.wait_job(emu, task)["task_status"] == "success"
    assert h.download(emu, h.wait_job(emu, task)["file_id"]) == hz


@pytest.mark.parametrize("fmt", ["zip", "csv", "gzip"])
def test_deterministic_archive(emu, tmp_path, fmt):
    emu.config(rows=5000, files=2, folders=1, waf_file_format=fmt)
    jid, r, data = run_job(emu, {"recent": "1month", "dump_columns": ALL, "attacks": ["xss"]})
    rec = job_record(emu, jid)
    archive.build(rec, str(tmp_path / "a"))
    archive.build(rec, str(tmp_path / "b"))
    a, b = (tmp_path / "a").read_bytes(), (tmp_path / "b").read_bytes()
    assert a == b == data


def test_default_temp_state_dir_removed(tmp_path):
    e = h.Emulator(tmp_path, state_dir=None).start()
    try:
        sd = e.config()["state_dir"]
        assert os.path.isdir(sd) and not sd.startswith(str(tmp_path))
    finally:
        e.stop()
    assert not os.path.exists(sd)


def test_request_log(emu):
    emu.clear_log()
    emu.health()
    emu.jobs()
    h.call(emu, "GET", "/v1/%s/waf/async-job/abc" % h.PROJECT, auth=None)
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ["id"]})
    st, _, _ = h.storage_get(r["item"]["url"])
    h.call(emu, "GET", "/v1/%s/waf/async-job/%s" % (h.PROJECT, jid),
           query={"enterpriseProjectId": "0"})
    log = emu.log()
    assert all(e["call"] != "admin" for e in log)
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)
    first = log[0]
    assert first["call"] == "query" and first["status"] == 401 and first["auth"] == "none"
    assert first["api"] == "async_job" and first["service"] == "waf"
    assert first["task_id"] == "abc" and first["job_id"] == "abc"
    assert first["project"] == h.PROJECT and first["method"] == "GET"
    sub = [e for e in log if e["call"] == "submit"][0]
    assert sub["status"] == 200 and sub["auth"] == "aksk" and sub["task_id"] == jid
    assert sub["api"] == "submit_waf" and "x-project-id" in sub["headers"]
    assert {"authorization", "x-sdk-date", "host", "content-type"} <= set(sub["headers"])
    lst = [e for e in log if e["call"] == "list"]
    assert lst and all(e["api"] == "event_dump" for e in lst)
    assert r["file_id"] in lst[-1]["items"]
    d = emu.storage_log()[-1]
    assert d["call"] == "download" and d["api"] == "storage" and d["auth"] == "none"
    assert d["file_id"] == r["file_id"] and d["task_id"] == jid and d["project"] == h.PROJECT
    assert d["bytes_sent"] == len(data) and d["status"] == 200
    assert not set(d["headers"]) & {"authorization", "x-auth-token", "x-sdk-date",
                                    "x-security-token", "x-project-id"}
    assert log[-1]["query"] == {"enterpriseProjectId": "0"}
    assert log[-1]["enterprise_project_id"] == "0"
    for e in log:
        assert {"seq", "time", "method", "path", "query", "call", "api", "service", "headers",
                "auth", "status", "bytes_sent"} <= set(e)
    emu.clear_log()
    assert emu.log() == []


def test_keep_alive(emu):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    socks = set()
    for i in range(4):
        body = json.dumps({"recent": "today", "dump_columns": ["id"]} if i % 2 else {}).encode()
        hdrs = h.sign_headers("POST", emu.url + SUBMIT, body,
                              extra_headers={"Content-Type": "application/json"})
        conn.request("POST", SUBMIT, body, hdrs)
        r = conn.getresponse()
        r.read()
        assert r.status == (200 if i % 2 else 400)
        socks.add(id(conn.sock))
    conn.request("GET", "/_emulator/health")
    assert conn.getresponse().read() == b'{"ok": true}\n'
    socks.add(id(conn.sock))
    assert len(socks) == 1
    conn.close()


def test_hostile_archive(emu):
    emu.patch_faults(hostile=True)  # a zip even though the format is csv
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ["id"]})
    emu.patch_faults(hostile=False)
    assert r["file_name"].endswith(".zip")
    z = zipfile.ZipFile(io.BytesIO(data))
    names = [i.filename for i in z.infolist()]
    for n in ("../x", "../../etc/evil", "/abs/path.csv", "link", "up", "status", ".job.json",
              ".wait", "new\nline.csv", "liar.csv", "events.csv"):
        assert n in names, n
    assert names.count("dup.csv") == 2
    dups = [i for i in z.infolist() if i.filename == "dup.csv"]
    assert z.open(dups[-1]).read() == b"second copy wins\n"
    link = z.getinfo("link")
    assert (link.external_attr >> 16) & 0o170000 == 0o120000 and z.read("link") == b"/etc/passwd"
    assert z.read("up") == b"../../.."
    raw = [i for i in z.infolist() if i.filename.startswith("bad")][0]
    assert raw.flag_bits & 0x800 == 0
    assert b"bad\xff\xfe.csv" in data
    liar = z.getinfo("liar.csv")
    assert liar.file_size == 16
    with pytest.raises(zipfile.BadZipFile):
        z.read("liar.csv")
    # a later normal job is not hostile
    jid, r, data = run_job(emu, {"recent": "today", "dump_columns": ["id"]})
    assert data == b"id\n" + data[3:] and not data.startswith(b"PK")


def test_https(tmp_path):
    import subprocess
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       capture_output=True)
    if r.returncode:
        pytest.skip("openssl unavailable")
    with h.Emulator(tmp_path, "--tls-cert", cert, "--tls-key", key) as e:
        assert e.url.startswith("https://127.0.0.1:")
        jid, r, data = run_job(e, {"recent": "today", "dump_columns": ["id"]})
        assert data.startswith(b"id\n")
        assert r["item"]["url"].startswith(e.url + "/_obs/")
