# The real HSS flow through real mounts: export (filters as query parameters,
# columns as the body) -> export-task query -> HSS download; the filter rules
# checked before anything is sent; the `region` header on the download; a
# failed task.
import csv
import errno
import io
import json
import os

import pytest

from fshelpers import CONTROL, PROJECT, emuharness, read, wait_end, write_filter, zip_entries


HSS = {"service": "hss", "category": "host", "last_days": 7,
       "severity_list": ["High", "Critical"]}


def job_info(m, job, pid=PROJECT):
    return json.loads(read(os.path.join(m.job(job, pid), ".job.json")))


def submit_hss(m, flt):
    """Submit an HSS filter through `new`; returns the task id read back."""
    err, reply = write_filter(m, json.dumps(flt).encode())
    assert err is None, (err, reply)
    assert reply.endswith("\n") and not reply.startswith("error"), reply
    return reply.strip()


def run_hss(m, flt, want="success"):
    task = submit_hss(m, flt)
    assert wait_end(m, task) == want + "\n"
    return task


def served_zip(emu, task):
    r = emuharness.wait_job(emu, task)
    assert r["task_status"] == "success", r
    return r, emuharness.download(emu, r["file_id"])


def test_hss_submit_to_browse(mnt, emu):
    task = run_hss(mnt, HSS)
    posts = emu.api_calls("export_hss")
    assert len(posts) == 1, posts
    post = posts[0]
    assert post["method"] == "POST" and post["path"] == "/v5/%s/event/export" % PROJECT, post
    assert post["status"] == 200
    assert post["query"]["category"] == "host" and post["query"]["last_days"] == "7", post
    assert set(post["query"]) == {"category", "last_days", "severity_list"}, post
    # the log keeps a repeated name's last value; the task record keeps every one
    rec = emu.job(task)
    assert rec["service"] == "hss"
    assert rec["filter"]["severity_list"] == ["High", "Critical"], rec["filter"]
    assert rec["filter"]["last_days"] == 7 and rec["filter"]["category"] == "host"
    assert "service" not in rec["filter"]
    names = sorted(os.listdir(mnt.job(task)))
    r, zbytes = served_zip(emu, task)
    entries = zip_entries(zbytes)
    assert list(entries) == ["hss-events.csv"]
    assert names == sorted(list(CONTROL) + ["hss-events.csv"]), names
    assert read(os.path.join(mnt.job(task), "hss-events.csv"), "rb") == \
        entries["hss-events.csv"][0]
    assert os.listdir(mnt.path("projects", PROJECT, "archives")) == [task + ".zip"]
    assert read(mnt.archive(task), "rb") == zbytes
    info = job_info(mnt, task)
    assert info["service"] == "hss" and info["task_status"] == "success"
    assert info["state"] == "success" and info["format"] == "zip"
    assert info["file_id"] == r["file_id"] and info["file_name"] == r["file_name"]
    assert info["task_name"] == r["task_name"]
    assert info["filter"] == HSS
    rows = list(csv.reader(io.StringIO(entries["hss-events.csv"][0].decode())))
    sev = rows[0].index("Severity")
    assert rows[1:] and {row[sev] for row in rows[1:]} <= {"High", "Critical"}
    assert [e for e in emu.log() if e.get("service") == "waf"] == [], \
        "an HSS task was asked about at WAF"


def test_hss_columns_are_the_body(mnt, emu):
    task = run_hss(mnt, dict(HSS, columns=[["event_name", "Event"], ["severity", "Severity"]]))
    rec = emu.job(task)
    assert rec["columns"] == [["event_name", "Event"], ["severity", "Severity"]], rec
    assert "columns" not in emu.api_calls("export_hss")[0]["query"]
    text = read(os.path.join(mnt.job(task), "hss-events.csv"))
    assert text.split("\n")[0].rstrip("\r") == "Event,Severity", text[:200]
    _, zbytes = served_zip(emu, task)
    assert text.encode() == zip_entries(zbytes)["hss-events.csv"][0]


BASE = {"service": "hss", "category": "host"}
INVALID = [
    ("category_missing", {"service": "hss", "last_days": 7}),
    ("category_other", dict(BASE, category="vm")),
    ("last_days_0", dict(BASE, last_days=0)),
    ("last_days_31", dict(BASE, last_days=31)),
    ("last_days_float", dict(BASE, last_days=7.5)),
    ("last_days_string", dict(BASE, last_days="7")),
    ("last_days_with_begin", dict(BASE, last_days=1, begin_time=1764547200000,
                                  end_time=1764550800000)),
    ("begin_without_end", dict(BASE, begin_time=1764547200000)),
    ("end_before_begin", dict(BASE, begin_time=1764550800000, end_time=1764547200000)),
    ("more_than_2_days", dict(BASE, begin_time=1764547200000,
                              end_time=1764547200000 + 172800001)),
    ("severity_word", dict(BASE, severity="Severe")),
    ("severity_list_element", dict(BASE, severity_list=["High", "Extreme"])),
    ("handle_status", dict(BASE, handle_status="ignored")),
    ("event_types_not_integer", dict(BASE, event_types=[1001, "1002"])),
    ("attack_tag", dict(BASE, attack_tag="attack_maybe")),
    ("asset_value", dict(BASE, asset_value="precious")),
    ("host_name_empty", dict(BASE, host_name="")),
    ("unknown_key", dict(BASE, colour="red")),
    ("columns_not_pairs", dict(BASE, columns=[["event_name", "Event", "extra"]])),
    ("columns_not_strings", dict(BASE, columns=[["event_name", 3]])),
    ("columns_empty", dict(BASE, columns=[])),
    ("service_unknown", {"service": "dns", "category": "host"}),
]


@pytest.mark.parametrize("flt", [f for _, f in INVALID], ids=[n for n, _ in INVALID])
def test_hss_filter_rules_fail_before_sending(mnt, emu, flt):
    err, reply = write_filter(mnt, json.dumps(flt).encode())
    assert err == errno.EINVAL, (err, reply)
    assert reply.startswith("error: ") and reply.endswith("\n") and len(reply) > 8, reply
    assert emu.calls("submit") == [], "an invalid filter reached the cloud"
    assert os.listdir(mnt.exports()) == ["new"]


def test_hss_valid_edges_are_sent(mnt, emu):
    """The rules' edges that are valid: last_days 1 and 30, exactly 2 days apart."""
    for flt in (dict(BASE, last_days=1), dict(BASE, last_days=30),
                dict(BASE, begin_time=1764547200000, end_time=1764547200000 + 172800000)):
        submit_hss(mnt, flt)
    assert [e["status"] for e in emu.api_calls("export_hss")] == [200] * 3


@pytest.mark.parametrize("region", ["cn-north-4", None])
def test_hss_download_region_header(mount_factory, emu, region):
    if region:
        opts = {"region": region, "waf_endpoint": emu.url, "hss_endpoint": emu.url,
                "iam_endpoint": emu.url}
        m = mount_factory(endpoint=False, opts=opts)
    else:
        m = mount_factory()
    task = run_hss(m, HSS)
    assert "hss-events.csv" in os.listdir(m.job(task))
    dl = emu.api_calls("download_hss")
    assert dl and all(e["status"] == 200 for e in dl), dl
    for e in dl:
        assert e.get("region") == region, e


def test_hss_failure_shows_no_files(mnt, emu):
    task = run_hss(mnt, dict(BASE, last_days=3, host_name="fail.example.com"),
                   want="failure")
    assert read(os.path.join(mnt.job(task), "status")) == "failure\n"
    assert sorted(os.listdir(mnt.job(task))) == sorted(CONTROL)
    info = job_info(mnt, task)
    assert info["task_status"] == "failure" and info["state"] == "failure"
    assert info["file_id"] is None
    assert os.listdir(mnt.path("projects", PROJECT, "archives")) == []
    assert emu.api_calls("download_hss") == []
