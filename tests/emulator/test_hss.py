# The HSS flow: event export (query parameters validated strictly, optional
# column body), export-task query, download (zip of CSVs, Range, region header).
import csv
import io
import json
import re
import time
import zipfile

import pytest

import emuharness as h
from hwemu import hss
from conftest import OTHER_PROJECT

EXPORT = "/v5/%s/event/export" % h.PROJECT


def export(emu, params, body=None, **kw):
    pairs = []
    for k, v in (params.items() if isinstance(params, dict) else params):
        for x in (v if isinstance(v, list) else [v]):
            pairs.append((k, str(x)))
    st, _, data = h.call(emu, "POST", EXPORT, body, query=pairs, **kw)
    return st, json.loads(data)


def rows_of(zbytes):
    z = zipfile.ZipFile(io.BytesIO(zbytes))
    assert z.namelist() == ["hss-events.csv"]
    return list(csv.reader(io.StringIO(z.read("hss-events.csv").decode(), newline="")))


def test_flow(emu):
    emu.config(job_delay=3600, rows=50)
    st, j = export(emu, {"category": "host", "last_days": 7,
                         "severity_list": ["High", "Critical"]})
    assert st == 200 and set(j) == {"task_id", "record_total_num"}
    assert re.fullmatch(r"[0-9a-f-]{36}", j["task_id"]) and j["record_total_num"] == 50
    tid = j["task_id"]
    st, _, body = h.call(emu, "GET", "/v5/%s/event/export-task/%s" % (h.PROJECT, tid))
    r = json.loads(body)
    assert r == {"task_id": tid, "task_name": r["task_name"], "task_status": "running"}
    assert re.fullmatch(r"event_host_\d{13}_export_task", r["task_name"])
    emu.finish(tid)
    r = h.wait_job(emu, tid)
    assert r["task_status"] == "success" and r["file_id"] != tid
    assert re.fullmatch(r"hss-event-host-\d+\.zip", r["file_name"])
    st, hd, data = h.call(emu, "GET", "/v5/%s/download/%s" % (h.PROJECT, r["file_id"]),
                          headers={"region": "cn-north-4"})
    assert st == 200 and data[:2] == b"PK" and int(hd["content-length"]) == len(data)
    e = emu.api_calls("download_hss")[-1]
    assert e["region"] == "cn-north-4" and e["task_id"] == tid and e["service"] == "hss"
    rows = rows_of(data)
    assert rows[0] == [c[1] for c in hss.DEFAULT_COLUMNS] and len(rows) == 51
    sev = rows[0].index("Severity")
    assert {x[sev] for x in rows[1:]} <= {"High", "Critical"}
    assert emu.api_calls("export_hss")[-1]["call"] == "submit"
    assert emu.api_calls("task_hss")[-1]["call"] == "query"


def test_columns_body_and_filters(emu):
    emu.config(rows=40)
    cols = [["event_name", "Event"], ["severity", "Severity"], ["host_name", "Server"],
            ["container_name", "Container"], ["occur_time", "When, exactly"],
            ["event_type", "Type"], ["handle_status", "Handled"]]
    now = emu.config()["server_time_ms"]
    st, j = export(emu, {"category": "container", "begin_time": now - 86400000,
                         "end_time": now, "severity": "Medium", "handle_status": "handled",
                         "event_types": [1001, 3002], "container_name": "web-1",
                         "enterprise_project_id": "0"}, cols)
    assert st == 200, j
    r = h.wait_job(emu, j["task_id"])
    rows = rows_of(h.download(emu, r["file_id"]))
    assert rows[0] == [c[1] for c in cols]
    for x in rows[1:]:
        d = dict(zip([c[0] for c in cols], x))
        assert d["severity"] == "Medium" and d["handle_status"] == "handled"
        assert d["event_type"] in ("1001", "3002") and d["container_name"] == "web-1"
        assert now - 86400000 <= int(d["occur_time"]) <= now
    assert emu.calls("submit")[-1]["enterprise_project_id"] == "0"


def test_contradiction_gives_no_rows(emu):
    st, j = export(emu, {"category": "host", "severity": "Low", "severity_list": ["High"]})
    assert st == 200 and j["record_total_num"] == 0
    rows = rows_of(h.download(emu, h.wait_job(emu, j["task_id"])["file_id"]))
    assert len(rows) == 1


def test_failure_trigger(emu):
    st, j = export(emu, {"category": "host", "host_name": hss.FAIL_HOST})
    r = h.wait_job(emu, j["task_id"])
    assert r["task_status"] == "failure" and "file_id" not in r


BAD = [
    ({}, "category"),
    ({"category": "vm"}, "category"),
    ({"category": "host", "category2": "x"}, "category2"),
    ({"category": "host", "last_days": 0}, "last_days"),
    ({"category": "host", "last_days": 31}, "last_days"),
    ({"category": "host", "last_days": "7d"}, "last_days"),
    ({"category": "host", "last_days": 1.5}, "last_days"),
    ({"category": "host", "last_days": 3, "begin_time": 1, "end_time": 2}, "last_days"),
    ({"category": "host", "begin_time": 1000}, "end_time"),
    ({"category": "host", "end_time": 1000}, "begin_time"),
    ({"category": "host", "begin_time": "x", "end_time": 5}, "begin_time"),
    ({"category": "host", "begin_time": 5000, "end_time": 4000}, "end_time"),
    ({"category": "host", "begin_time": 0, "end_time": 2 * 86400000 + 1}, "2 days"),
    ({"category": "host", "severity": "high"}, "severity"),
    ({"category": "host", "severity_list": ["High", "Urgent"]}, "severity_list"),
    ({"category": "host", "handle_status": "open"}, "handle_status"),
    ({"category": "host", "event_types": ["1001", "abc"]}, "event_types"),
    ({"category": "host", "attack_tag": "attack_failed"}, "attack_tag"),
    ({"category": "host", "asset_value": "vip"}, "asset_value"),
    ({"category": "host", "host_name": ""}, "host_name"),
    ({"category": "host", "enterprise_project_id": "x" * 257}, "enterprise_project_id"),
    ([("category", "host"), ("severity", "High"), ("severity", "Low")], "severity"),
    ([("category", "host"), ("category", "container")], "category"),
    ({"category": "host", "limit": 10}, "limit"),
    ({"category": "host", "enterpriseProjectId": "0"}, "enterpriseProjectId"),
]


@pytest.mark.parametrize("params,word", BAD)
def test_bad_parameters(emu, params, word):
    st, j = export(emu, params)
    assert st == 400 and j["error_code"] == "HSS.0001", j
    assert word in j["error_msg"], j
    assert emu.jobs() == []


def test_good_edge_values(emu):
    for params in ({"category": "host", "last_days": 1}, {"category": "host", "last_days": 30},
                   {"category": "host", "begin_time": 0, "end_time": 2 * 86400000},
                   {"category": "host", "begin_time": 5, "end_time": 5},
                   {"category": "container", "severity_list": list(hss.SEVERITIES),
                    "attack_tag": "system_vulnerability", "asset_value": "test",
                    "event_class_ids": ["login_0001"], "host_id": "h", "private_ip": "10.0.0.1",
                    "public_ip": "203.0.113.1", "cluster_id": "c", "event_name": "x",
                    "enterprise_project_id": "all_granted_eps"}):
        st, j = export(emu, params)
        assert st == 200, (params, j)


@pytest.mark.parametrize("body,code", [
    (b"not json", "HSS.0011"), (b"{}", "HSS.0011"), (b"[]", "HSS.0011"),
    (b'[["event_name"]]', "HSS.0001"), (b'[["event_name", 3]]', "HSS.0001"),
    (b'[["nosuch", "X"]]', "HSS.0001"), (b'[["event_name", ""]]', "HSS.0001"),
])
def test_bad_column_body(emu, body, code):
    st, _, data = h.call(emu, "POST", EXPORT, body, query={"category": "host"})
    j = json.loads(data)
    assert st == 400 and j["error_code"] == code, j


def test_body_needs_json_content_type(emu):
    st, _, data = h.call(emu, "POST", EXPORT, b'[["event_name","E"]]', query={"category": "host"},
                         content_type="text/plain")
    assert st == 400
    st, _, data = h.call(emu, "POST", EXPORT, b"", query={"category": "host"})
    assert st == 200


def test_task_and_download_parameters(emu):
    st, j = export(emu, {"category": "host"})
    tid = j["task_id"]
    fid = h.wait_job(emu, tid)["file_id"]
    base = "/v5/%s/event/export-task/%s" % (h.PROJECT, tid)
    assert h.call(emu, "GET", base, query={"enterprise_project_id": "0"})[0] == 200
    for q in ({"enterpriseProjectId": "0"}, {"x": "1"}):
        st, _, body = h.call(emu, "GET", base, query=q)
        assert st == 400 and json.loads(body)["error_code"] == "HSS.0001"
    d = "/v5/%s/download/%s" % (h.PROJECT, fid)
    assert h.call(emu, "GET", d, query={"enterprise_project_id": "0"})[0] == 200
    assert h.call(emu, "GET", d, query={"page": "1"})[0] == 400
    st, _, _ = h.call(emu, "GET", "/v5/%s/event/export-task/%s" % (h.PROJECT, "x" * 65))
    assert st == 400


def test_unknown_ids(emu):
    jid = h.submit(emu, {"recent": "today", "dump_columns": ["id"]})
    wfid = h.wait_job(emu, jid)["file_id"]
    for tid in ("0" * 32, jid):
        st, _, body = h.call(emu, "GET", "/v5/%s/event/export-task/%s" % (h.PROJECT, tid))
        assert st == 404 and json.loads(body)["error_code"] == "HSS.1001"
    st, _, body = h.call(emu, "GET", "/v5/%s/download/%s" % (h.PROJECT, wfid))
    assert st == 404 and json.loads(body)["error_code"] == "HSS.1002"
    st, j = export(emu, {"category": "host"})
    fid = h.wait_job(emu, j["task_id"])["file_id"]
    st, _, _ = h.call(emu, "GET", "/v5/%s/event/export-task/%s" % (OTHER_PROJECT, j["task_id"]))
    assert st == 404
    assert h.call(emu, "GET", "/v5/%s/download/%s" % (OTHER_PROJECT, fid))[0] == 404
    # the file of a running task
    emu.config(job_delay=3600)
    st, j = export(emu, {"category": "host"})
    rec = emu.job(j["task_id"])
    assert h.call(emu, "GET", "/v5/%s/download/%s" % (h.PROJECT, rec["file_id"]))[0] == 404


def test_hss_files_split(emu):
    emu.config(rows=100, files=3, folders=0)
    st, j = export(emu, {"category": "host"})
    z = zipfile.ZipFile(io.BytesIO(h.download(emu, h.wait_job(emu, j["task_id"])["file_id"])))
    assert z.namelist() == ["hss-events-0001.csv", "hss-events-0002.csv", "hss-events-0003.csv"]
    assert sum(len(z.read(n).splitlines()) - 1 for n in z.namelist()) == 100


def test_deterministic(emu, tmp_path):
    from hwemu import archive
    st, j = export(emu, {"category": "host", "last_days": 3})
    data = h.download(emu, h.wait_job(emu, j["task_id"])["file_id"])
    rec = emu.job(j["task_id"])
    archive.build(rec, str(tmp_path / "a"))
    assert (tmp_path / "a").read_bytes() == data
