# The WAF flow beyond the submit: async-job, the event-log list (paging, daily and
# foreign files, knobs linking a file to its job), pre-signed storage URLs
# (signature, expiry, credential headers refused) and the admin files API.
import json
import re
import urllib.parse

import pytest

import emuharness as h
from conftest import OTHER_PROJECT, STATIC_TOKEN

FLT = {"recent": "today", "dump_columns": ["id", "time", "attack"]}
DUMP = "/v1/%s/waf/event/dump" % h.PROJECT
AJ = "/v1/%s/waf/async-job/%%s" % h.PROJECT


def dump(emu, **q):
    st, _, body = h.call(emu, "GET", DUMP, query=q or None)
    return st, json.loads(body)


def test_async_job_query_parameters(emu):
    jid = h.submit(emu, FLT)
    st, _, body = h.call(emu, "GET", AJ % jid, query={"enterpriseProjectId": "all_granted_eps"})
    assert st == 200 and json.loads(body)["job_id"] == jid
    for q in ({"enterprise_project_id": "0"}, {"x": "1"}, {"enterpriseProjectId": ""},
              [("enterpriseProjectId", "0"), ("enterpriseProjectId", "1")]):
        st, _, body = h.call(emu, "GET", AJ % jid, query=q)
        assert st == 400 and json.loads(body)["error_code"] == "WAF.00011003", q


def test_async_job_states(emu):
    emu.config(job_delay=3600)
    a, b = h.submit(emu, FLT), h.submit(emu, FLT)
    assert h.waf_status(emu, a) == {"status": "RUNNING", "job_id": a,
                                    "message": "Checking domain name configuration"}
    emu.finish(a)
    emu.finish(b, "failure")
    assert h.waf_status(emu, a)["status"] == "SUCCESS"
    rb = h.waf_status(emu, b)
    assert rb["status"] == "FAILED" and rb["message"]


def test_default_seeded_list(emu):
    r = h.event_dump(emu)
    # 3 daily files (one more appears after the next UTC midnight) and 2 foreign ones
    assert r["total"] == 5 and len(r["items"]) == 5
    ts = [i["timestamp"] for i in r["items"]]
    assert ts == sorted(ts, reverse=True)
    now = emu.config()["server_time_ms"]
    assert all(t <= now for t in ts)
    files = emu.files(h.PROJECT)
    assert sorted(f["origin"] for f in files) == ["daily"] * 4 + ["foreign"] * 2
    future = [f for f in files if not f["listed"]]
    assert len(future) == 1 and future[0]["origin"] == "daily" and future[0]["timestamp"] > now
    for it in r["items"]:
        assert it["start"] <= it["end"]
        assert re.fullmatch(r"waf-events-(daily-)?\d{8}-[0-9a-f]{8}\.csv", it["filename"])
    # the future daily file appears once the emulator clock passes its timestamp
    emu.config(now=future[0]["timestamp"] // 1000 + 1)
    r = h.event_dump(emu, date=future[0]["timestamp"] / 1000.0 + 1)
    assert r["total"] == 6 and r["items"][0]["id"] == future[0]["id"]


def test_seed_knobs(emu):
    emu.config(daily_files=0, daily_future=0, foreign_files=0)
    assert h.event_dump(emu) == {"total": 0, "items": []}
    emu.reset()
    emu.config(daily_files=1, daily_future=0, foreign_files=7)
    assert h.event_dump(emu, pagesize=100)["total"] == 8


def test_paging(emu):
    emu.config(foreign_files=23, daily_files=0, daily_future=0)
    all_ = h.event_dump(emu, pagesize=100)
    assert all_["total"] == 23
    ids = [i["id"] for i in all_["items"]]
    assert len(set(ids)) == 23
    r = h.event_dump(emu)  # defaults: page 1, pagesize 10
    assert r["total"] == 23 and [i["id"] for i in r["items"]] == ids[:10]
    assert [i["id"] for i in h.event_dump(emu, 3, 10)["items"]] == ids[20:]
    assert h.event_dump(emu, 4, 10) == {"total": 23, "items": []}
    assert [i["id"] for i in h.event_dump(emu, 2, 7)["items"]] == ids[7:14]
    assert [i["id"] for i in h.list_files(emu)] == ids


@pytest.mark.parametrize("q", [{"page": "0"}, {"page": "-1"}, {"page": "x"}, {"pagesize": "0"},
                               {"pagesize": "101"}, {"pagesize": "1.5"}, {"offset": "0"}, {"page": "\u00b2"},
                               {"limit": "10"}, {"enterprise_project_id": "0"},
                               {"page": ""}])
def test_dump_bad_parameters(emu, q):
    st, j = dump(emu, **q)
    assert st == 400 and j["error_code"] == "WAF.00011003" and list(q)[0] in j["error_msg"]


def test_dump_max_pagesize(emu):
    st, j = dump(emu, pagesize="100")
    assert st == 200


def test_job_file_in_list_newest_first(emu):
    jid = h.submit(emu, FLT)
    r = h.wait_job(emu, jid)
    items = h.event_dump(emu)["items"]
    assert items[0]["id"] == r["file_id"]
    it = items[0]
    sub = emu.job(jid)["submit_ms"]
    assert it["timestamp"] >= sub and it["start"] == sub - sub % 86400000 and it["end"] == sub
    assert it["source"] and it["state"] and it["tenantid"] and it["urltimestamp"] > 0


def test_list_per_project(emu):
    jid = h.submit(emu, FLT)
    fid = h.wait_job(emu, jid)["file_id"]
    assert fid not in [i["id"] for i in h.list_files(emu, OTHER_PROJECT)]
    st, _, body = h.call(emu, "GET", "/v1/%s/waf/event/dump" % ("1" * 32))
    assert st == 403


@pytest.mark.parametrize("recent,days", [("3days", 3), ("1week", 7), ("1month", 30)])
def test_window_of_recent(emu, recent, days):
    jid = h.submit(emu, {"recent": recent, "dump_columns": ["id"]})
    it = h.wait_job(emu, jid)["item"]
    sub = emu.job(jid)["submit_ms"]
    assert it["end"] == sub and it["start"] == sub - days * 86400000


def test_yesterday_window(emu):
    jid = h.submit(emu, {"recent": "yesterday", "dump_columns": ["id"]})
    it = h.wait_job(emu, jid)["item"]
    sub = emu.job(jid)["submit_ms"]
    midnight = sub - sub % 86400000
    assert it["start"] == midnight - 86400000 and it["end"] == midnight - 1


def test_link_knobs(emu):
    emu.config(waf_file_link="id")
    a = h.submit(emu, FLT)
    ra = h.wait_job(emu, a)
    assert ra["file_id"] == a and a not in ra["item"]["filename"]
    emu.config(waf_file_link="name")
    b = h.submit(emu, FLT)
    rb = h.wait_job(emu, b)
    it = rb["item"]
    assert it["id"] != b and b in it["filename"] and b in it["obsname"] and b in it["description"]
    assert h.download(emu, rb["file_id"]).startswith(b"id,time,attack\n")


def test_list_delay(emu):
    emu.config(list_delay=3600)
    jid = h.submit(emu, FLT)
    assert h.wait_job(emu, jid, timeout=0.5).get("file_id") is None  # SUCCESS, not listed
    assert h.waf_status(emu, jid)["status"] == "SUCCESS"
    f = emu.file_of(jid)
    assert not f["listed"]
    assert f["id"] not in [i["id"] for i in h.list_files(emu)]
    emu.config(list_delay=0)
    assert h.wait_job(emu, jid)["file_id"] == f["id"]


def test_foreign_after_submit(emu):
    emu.config(foreign_after_submit=1, foreign_offset_ms=1, job_delay=3600, daily_files=0,
               daily_future=0, foreign_files=0)
    jid = h.submit(emu, FLT)
    sub = emu.job(jid)["submit_ms"]
    items = h.event_dump(emu)["items"]
    assert len(items) == 1  # the foreign job's file, listed before ours
    f = items[0]
    assert f["timestamp"] == sub + 1 and f["id"] != jid and jid not in f["filename"]
    assert f["start"] == sub - sub % 86400000  # same `recent` as our job
    emu.finish(jid)
    r = h.wait_job(emu, jid)
    items = h.event_dump(emu)["items"]
    assert [i["id"] for i in items] == [r["file_id"], f["id"]]
    # a foreign file with another window, later than our file
    emu.config(foreign_offset_ms=10 ** 9, foreign_recent="1month")
    jid2 = h.submit(emu, FLT)
    fs = [x for x in emu.files(h.PROJECT) if x["origin"] == "foreign" and not x["listed"]]
    assert len(fs) == 1 and fs[0]["recent"] == "1month"
    assert fs[0]["timestamp"] == emu.job(jid2)["submit_ms"] + 10 ** 9
    # foreign jobs are WAF jobs of the project: async-job knows them
    assert h.waf_status(emu, fs[0]["job_id"])["status"] == "SUCCESS"


def test_admin_files(emu):
    emu.config(daily_files=0, daily_future=0, foreign_files=0)
    jid = h.submit(emu, FLT)
    r = h.wait_job(emu, jid)
    f = emu.add_file(after_job=jid, offset_ms=5)
    assert f["origin"] == "foreign" and f["timestamp"] == emu.job(jid)["submit_ms"] + 5
    assert f["recent"] == "today" and f["listed"]
    d = emu.add_file(origin="daily", project=h.PROJECT, format="zip", rows=3)
    assert d["job_id"] is None and d["filename"].endswith(".zip") and d["total"] == 3
    ids = [i["id"] for i in h.list_files(emu)]
    assert set(ids) == {r["file_id"], f["id"], d["id"]}
    assert h.download(emu, d["id"])[:2] == b"PK"
    # remove one from the list: gone from the list and from storage
    url = [i for i in h.list_files(emu) if i["id"] == f["id"]][0]["url"]
    emu.remove_file(f["id"])
    assert f["id"] not in [i["id"] for i in h.list_files(emu)]
    st, _, body = h.storage_get(url)
    assert st == 404 and b"NoSuchKey" in body
    emu.patch_file(f["id"], removed=False)
    assert h.storage_get(url)[0] == 200
    # a file in the future
    later = emu.add_file(project=h.PROJECT, timestamp=emu.config()["server_time_ms"] + 10 ** 7)
    assert not later["listed"]
    for bad in ({"origin": "x"}, {"nosuch": 1}, {"after_job": "0" * 32},
                {"recent": "never", "project": h.PROJECT}, {"timestamp": "x", "project": h.PROJECT}, {}):
        with pytest.raises(RuntimeError):
            emu.add_file(**bad)


# ---- storage -----------------------------------------------------------------

@pytest.fixture
def url(emu):
    jid = h.submit(emu, FLT)
    return h.wait_job(emu, jid)["item"]["url"]


def test_url_shape(emu, url):
    u = urllib.parse.urlsplit(url)
    assert "%s://%s" % (u.scheme, u.netloc) == emu.url and u.path.startswith("/_obs/")
    q = dict(urllib.parse.parse_qsl(u.query))
    assert set(q) == {"AWSAccessKeyId", "Expires", "Signature"}
    now = emu.config()["server_time_ms"] // 1000
    assert now + 590 <= int(q["Expires"]) <= now + 600


def test_storage_needs_no_credentials(emu, url):
    st, hd, body = h.storage_get(url)
    assert st == 200 and body.startswith(b"id,time,attack\n")
    assert int(hd["content-length"]) == len(body) and "location" not in hd
    e = emu.storage_log()[-1]
    assert e["auth"] == "none" and e["status"] == 200 and e["api"] == "storage"
    assert "host" in e["headers"]


@pytest.mark.parametrize("header", ["Authorization", "X-Auth-Token", "X-Sdk-Date",
                                    "X-Security-Token", "X-Project-Id"])
def test_storage_refuses_credential_headers(emu, url, header):
    st, hd, body = h.storage_get(url, {header: "x"})
    assert st == 400 and hd["content-type"] == "application/xml"
    assert b"<Code>InvalidArgument</Code>" in body
    e = emu.storage_log()[-1]
    assert e["refused_header"] == header.lower() and header.lower() in e["headers"]
    assert e["storage_error"] == "InvalidArgument"


def test_signed_api_call_headers_on_storage_refused(emu, url):
    hdrs = h.sign_headers("GET", url)
    assert h.storage_get(url, hdrs)[0] == 400
    assert h.storage_get(url, {"X-Auth-Token": STATIC_TOKEN})[0] == 400


def test_url_expiry(emu, url):
    assert h.storage_get(url)[0] == 200
    emu.config(clock_offset=601)
    st, hd, body = h.storage_get(url)
    assert st == 403 and b"<Code>AccessDenied</Code>" in body
    assert b"<Message>Request has expired</Message>" in body
    # listing again gives a fresh URL
    fresh = h.list_files(emu, date=emu.config()["server_time_ms"] / 1000.0)[0]["url"]
    assert fresh != url and h.storage_get(fresh)[0] == 200


def test_url_ttl_knob(emu):
    emu.config(url_ttl=5)
    jid = h.submit(emu, FLT)
    url = h.wait_job(emu, jid)["item"]["url"]
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert int(q["Expires"]) <= emu.config()["server_time_ms"] // 1000 + 5
    emu.config(clock_offset=6)
    assert h.storage_get(url)[0] == 403


@pytest.mark.parametrize("tamper", ["signature", "expires", "path", "key", "missing", "method"])
def test_signature_checked(emu, url, tamper):
    u = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(u.query))
    path, method = u.path, "GET"
    if tamper == "signature":
        q["Signature"] = "A" + q["Signature"][1:]
    elif tamper == "expires":
        q["Expires"] = str(int(q["Expires"]) + 3600)
    elif tamper == "path":
        path = path[:-5] + "x.csv"
    elif tamper == "key":
        q["AWSAccessKeyId"] = "OTHERKEY"
    elif tamper == "missing":
        del q["Signature"]
    elif tamper == "method":
        method = "HEAD"
    bad = "%s://%s%s?%s" % (u.scheme, u.netloc, path, urllib.parse.urlencode(q))
    st, _, body = h.storage_get(bad, method=method)
    assert st == 403, (tamper, body)


def test_storage_head_and_other_methods(emu, url):
    u = urllib.parse.urlsplit(url)
    st, _, _ = h._request(emu.url, "PUT", u.path + "?" + u.query, b"x")
    assert st == 405


def test_storage_unknown_object(emu):
    st, _, body = h.storage_get(emu.url + "/_obs/nobucket/x.csv?AWSAccessKeyId=a&Expires=1&Signature=x")
    assert st in (403, 404)


def test_storage_survives_log_kinds(emu, url):
    emu.clear_log()
    h.storage_get(url, {"Range": "bytes=0-0"})
    e = emu.calls("download")[-1]
    assert e["service"] == "storage" and e["status"] == 206 and e["bytes_sent"] == 1
