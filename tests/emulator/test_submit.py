# WAF submit call: filter validation (400 naming the problem) and the success reply.
import json
import re

import pytest

import emuharness as h
from hwemu import filters

SUBMIT = "/v1/%s/waf/event/job/export" % h.PROJECT
GOOD = {"recent": "today", "dump_columns": ["id", "time", "attack"]}


def post(emu, body, **kw):
    st, hdrs, data = h.call(emu, "POST", SUBMIT, body, **kw)
    return st, json.loads(data)


def test_submit_ok(emu):
    st, j = post(emu, GOOD)
    assert st == 200
    assert j["status"] == "RUNNING" and j["message"] == "Checking domain name configuration"
    assert re.fullmatch(r"[0-9a-f]{32}", j["job_id"])
    assert post(emu, GOOD)[1]["job_id"] != j["job_id"]


@pytest.mark.parametrize("ctype", ["application/json", "application/json;charset=utf8",
                                   "application/json; charset=UTF-8", "Application/JSON"])
def test_content_type_variants(emu, ctype):
    assert post(emu, GOOD, content_type=ctype)[0] == 200


@pytest.mark.parametrize("ctype", ["text/plain", None])
def test_bad_content_type(emu, ctype):
    st, j = post(emu, GOOD, content_type=ctype)
    assert st == 400 and j["error_code"] == "WAF.00011001" and "Content-Type" in j["error_msg"]


BAD = [
    ({"dump_columns": ["id"]}, "recent"),
    ({"recent": "lastyear", "dump_columns": ["id"]}, "recent"),
    ({"recent": 1, "dump_columns": ["id"]}, "recent"),
    ({"recent": "today"}, "dump_columns"),
    ({"recent": "today", "dump_columns": []}, "dump_columns"),
    ({"recent": "today", "dump_columns": "id"}, "dump_columns"),
    ({"recent": "today", "dump_columns": ["id", 3]}, "dump_columns"),
    ({"recent": "today", "dump_columns": ["id", "nosuch"]}, "nosuch"),
    ({"recent": "today", "dump_columns": ["id", ""]}, "dump_columns"),
    ({"recent": "today", "dump_columns": ["ID"]}, "ID"),
    ({"recent": "today", "dump_columns": ["id"], "foo": 1}, "foo"),
    ({"recent": "today", "dump_columns": ["id"], "attacks": "sqli"}, "attacks"),
    ({"recent": "today", "dump_columns": ["id"], "hosts": ["a", 1]}, "hosts"),
    ({"recent": "today", "dump_columns": ["id"], "instances": None}, "instances"),
    ({"recent": "today", "dump_columns": ["id"], "sip": ["1.2.3.4"]}, "sip"),
    ({"recent": "today", "dump_columns": ["id"], "url": 5}, "url"),
    ([GOOD], "object"),
    ("today", "object"),
]


@pytest.mark.parametrize("body,word", BAD)
def test_bad_filters(emu, body, word):
    st, j = post(emu, json.dumps(body))
    assert st == 400
    assert j["error_code"] == ("WAF.00011001" if word == "object" else "WAF.00011003")
    assert word in j["error_msg"], j


def test_every_known_column_accepted(emu):
    st, j = post(emu, {"recent": "1month", "dump_columns": list(filters.KNOWN_COLUMNS)})
    assert st == 200, j
    for c in ("policy_id", "body", "enterprise_project_id", "enterprise_project_name",
              "headers", "response_body"):
        assert c in filters.KNOWN_COLUMNS
    r = h.wait_job(emu, j["job_id"])
    data = h.download(emu, r["file_id"]).decode()
    assert data.split("\n")[0] == ",".join(filters.KNOWN_COLUMNS)


def test_unknown_column_message(emu):
    st, j = post(emu, {"recent": "today", "dump_columns": ["id", "attack_type"]})
    assert st == 400 and j["error_code"] == "WAF.00011003"
    assert j["error_msg"] == "field 'dump_columns' has unknown column 'attack_type'"


@pytest.mark.parametrize("field", ["ids", "nids", "attacks", "nattacks", "rules", "nrules", "sips",
                                   "nsips", "urls", "nurls", "actions", "nactions", "hosts",
                                   "instances"])
def test_each_array_field_type_checked(emu, field):
    st, j = post(emu, dict(GOOD, **{field: "x"}))
    assert st == 400 and field in j["error_msg"]
    st, j = post(emu, dict(GOOD, **{field: [1]}))
    assert st == 400 and field in j["error_msg"]
    assert post(emu, dict(GOOD, **{field: []}))[0] == 200


def test_invalid_json(emu):
    st, j = post(emu, b'{"recent": "today", ')
    assert st == 400 and "JSON" in j["error_msg"]


def test_unknown_field_message(emu):
    st, j = post(emu, dict(GOOD, foo=1))
    assert j["error_msg"] == "unknown field 'foo'"


def test_waf_project_must_be_32_alnum(tmp_path):
    with h.Emulator(tmp_path, projects=("short-project",)) as e:
        st, _, data = h.call(e, "POST", "/v1/short-project/waf/event/job/export", GOOD)
        assert st == 400 and "project_id" in json.loads(data)["error_msg"]


def test_rejected_submit_creates_no_job(emu):
    post(emu, {"recent": "today"})
    assert emu.jobs() == []


@pytest.mark.parametrize("query", [{"enterprise_project_id": "0"},
                                   {"enterpriseProjectId": "0"}, {"x": "1"}])
def test_no_query_parameters(emu, query):
    st, _, data = h.call(emu, "POST", SUBMIT, GOOD, query=query)
    j = json.loads(data)
    assert st == 400 and j["error_code"] == "WAF.00011003"
    assert list(query)[0] in j["error_msg"]
    assert emu.jobs() == []


def test_unknown_api_404(emu):
    st, _, data = h.call(emu, "GET", "/v1/%s/waf/nothing" % h.PROJECT)
    assert st == 404 and json.loads(data)["error_code"] == "APIG.0101"
    assert emu.log()[-1]["call"] == "unknown" and emu.log()[-1]["api"] == "unknown"
    # the right path with the wrong method is unknown too
    assert h.call(emu, "GET", SUBMIT)[0] == 404
    assert h.call(emu, "POST", "/v1/%s/waf/event/dump" % h.PROJECT, {})[0] == 404
