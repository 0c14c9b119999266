# AK/SK signing (SDK vectors, tampering, date window), tokens, IAM login.
import copy
import json
import os
import time
import urllib.parse

import pytest

import emuharness as h
from conftest import DOMAIN, OTHER_PROJECT, PASSWORD, STATIC_TOKEN, USER

VECTORS = json.load(open(os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                      "data", "aksk-sign-vectors.json")))
QPATH = "/v5/%s/event/export-task/%s" % (h.PROJECT, "0" * 32)
OTHER_AK, OTHER_SK = "OTHERAKOTHERAKOTHER1", "a-completely-different-secret-key"


@pytest.fixture
def vemu(tmp_path):
    with h.Emulator(tmp_path, "--ak", OTHER_AK, "--sk", OTHER_SK) as e:
        yield e


def send_vector(emu, v):
    e = emu
    path = v["path"]
    if v["query"]:
        path += "?" + urllib.parse.urlencode(v["query"], quote_via=urllib.parse.quote)
    hdrs = dict(v["headers"])
    hdrs = {("Host" if k.lower() == "host" else k): val for k, val in hdrs.items()}
    hdrs["Authorization"] = v["authorization"]
    body = v["body"].encode()
    e.config(now=v["headers"]["X-Sdk-Date"])
    return h._request(e.url, v["method"], path, body if body or v["method"] == "POST" else None,
                      hdrs)


@pytest.mark.parametrize("i", range(len(VECTORS)))
def test_vector_accepted(vemu, i):
    v = VECTORS[i]
    st, _, body = send_vector(vemu, v)
    assert st not in (401, 403), body
    if v["method"] == "POST":
        assert st == 200, body
    else:
        assert st in (400, 404)  # unknown task / file or query parameter, but authenticated
    assert vemu.log()[-1]["auth"] == "aksk"


def _tamperings(v):
    out = []
    t = copy.deepcopy(v); t["body"] = v["body"] + " "; out.append(("body", t))
    t = copy.deepcopy(v); t["path"] = v["path"].replace(h.PROJECT, "1" * 32); out.append(("path", t))
    t = copy.deepcopy(v); t["query"] = dict(v["query"], extra="1"); out.append(("query", t))
    t = copy.deepcopy(v)
    hk = [k for k in t["headers"] if k.lower() == "host"][0]
    t["headers"][hk] = "waf.cn-north-1.myhuaweicloud.com"; out.append(("header", t))
    t = copy.deepcopy(v)
    d = v["headers"]["X-Sdk-Date"]; t["headers"]["X-Sdk-Date"] = d[:-3] + ("01Z" if d[-3:] != "01Z" else "02Z")
    out.append(("date", t))
    t = copy.deepcopy(v); t["authorization"] = v["authorization"].replace(v["ak"], OTHER_AK); out.append(("ak", t))
    t = copy.deepcopy(v); t["authorization"] = v["authorization"].replace(v["ak"], "UNKNOWNAK00000000000"); out.append(("unknown-ak", t))
    if "Content-Type" in v["headers"]:
        t = copy.deepcopy(v); t["headers"]["Content-Type"] = "application/json"; out.append(("content-type", t))
    return out


@pytest.mark.parametrize("i", range(len(VECTORS)))
def test_vector_tampered_rejected(vemu, i):
    for what, t in _tamperings(VECTORS[i]):
        if what == "date":
            vemu.config(now=VECTORS[i]["headers"]["X-Sdk-Date"])
        st, _, body = send_vector(vemu, t) if what != "date" else _send_keep_clock(vemu, t)
        assert st == 401, (what, st, body)
        assert json.loads(body)["error_code"] == "APIG.0301", (what, body)


def _send_keep_clock(emu, v):
    path = v["path"] + ("?" + urllib.parse.urlencode(v["query"], quote_via=urllib.parse.quote)
                        if v["query"] else "")
    hdrs = {("Host" if k.lower() == "host" else k): val for k, val in v["headers"].items()}
    hdrs["Authorization"] = v["authorization"]
    body = v["body"].encode()
    return h._request(emu.url, v["method"], path, body if body or v["method"] == "POST" else None, hdrs)


def test_harness_signer_reproduces_vectors():
    for v in VECTORS:
        url = "https://" + v["host"] + v["path"]
        if v["query"]:
            url += "?" + urllib.parse.urlencode(v["query"], quote_via=urllib.parse.quote)
        extra = {k: x for k, x in v["headers"].items() if k.lower() not in ("host", "x-sdk-date")}
        got = h.sign_headers(v["method"], url, v["body"].encode(), v["ak"], v["sk"],
                             v["headers"]["X-Sdk-Date"], extra)
        assert got["Authorization"] == v["authorization"]


def test_signed_call_ok(emu):
    st, _, body = h.call(emu, "GET", QPATH, query={"enterprise_project_id": "0 x/y~z"})
    assert st == 404 and json.loads(body)["error_code"] == "HSS.1001"
    st, _, body = h.call(emu, "GET", QPATH, query={"enterprise_project_id": "0", "a": "x y/z"})
    assert st == 400 and json.loads(body)["error_code"] == "HSS.0001"  # authenticated first


def test_date_window(emu):
    now = time.time()
    for skew, ok in ((-14 * 60, True), (14 * 60, True), (-16 * 60, False), (16 * 60, False)):
        st, _, body = h.call(emu, "GET", QPATH, date=now + skew)
        if ok:
            assert st == 404, (skew, body)
        else:
            assert st == 401, (skew, body)
            j = json.loads(body)
            assert j["error_code"] == "APIG.0301" and "date" in j["error_msg"]


def test_clock_offset_knob(emu):
    emu.config(clock_offset=3600)
    st, _, body = h.call(emu, "GET", QPATH)
    assert st == 401 and "date" in json.loads(body)["error_msg"]
    st, _, _ = h.call(emu, "GET", QPATH, date=time.time() + 3600)
    assert st == 404
    emu.config(clock_offset=0)
    assert h.call(emu, "GET", QPATH)[0] == 404


def test_clock_offset_flag(tmp_path):
    with h.Emulator(tmp_path, "--clock-offset", "-7200") as e:
        assert h.call(e, "GET", QPATH)[0] == 401
        assert h.call(e, "GET", QPATH, date=time.time() - 7200)[0] == 404


def test_bad_date_format(emu):
    hdrs = h.sign_headers("GET", emu.url + QPATH, date="2026-11-22T10:15:00Z")
    st, _, body = h._request(emu.url, "GET", QPATH, None, hdrs)
    assert st == 401 and "date" in json.loads(body)["error_msg"]


def test_unknown_ak(emu):
    st, _, body = h.call(emu, "GET", QPATH, ak="NOSUCHAK000000000000", sk="x")
    assert st == 401 and json.loads(body)["error_code"] == "APIG.0301"


def test_wrong_sk(emu):
    st, _, body = h.call(emu, "GET", QPATH, sk="wrong")
    assert st == 401
    j = json.loads(body)
    assert j["error_code"] == "APIG.0301" and "signature" in j["error_msg"]


def test_no_auth(emu):
    st, _, body = h.call(emu, "GET", QPATH, auth=None)
    assert st == 401 and json.loads(body)["error_code"] == "APIG.0301"


def test_signed_headers_must_include_host_and_date(emu):
    hdrs = h.sign_headers("GET", emu.url + QPATH)
    hdrs["Authorization"] = hdrs["Authorization"].replace("SignedHeaders=host;x-sdk-date",
                                                          "SignedHeaders=x-sdk-date")
    st, _, body = h._request(emu.url, "GET", QPATH, None, hdrs)
    assert st == 401 and json.loads(body)["error_code"] == "APIG.0301"


def test_malformed_authorization(emu):
    st, _, body = h._request(emu.url, "GET", QPATH, None, {"Authorization": "Basic Zm9vOmJhcg=="})
    assert st == 401 and json.loads(body)["error_code"] == "APIG.0301"


def test_security_token(tmp_path):
    with h.Emulator(tmp_path, "--security-token", "STS-TOKEN-1") as e:
        assert h.call(e, "GET", QPATH)[0] == 401
        assert h.call(e, "GET", QPATH, headers={"X-Security-Token": "nope"})[0] == 401
        assert h.call(e, "GET", QPATH, headers={"X-Security-Token": "STS-TOKEN-1"})[0] == 404


def test_unknown_project_403(emu):
    st, _, body = h.call(emu, "GET", "/v5/%s/event/export-task/abc" % ("1" * 32))
    assert st == 403 and json.loads(body)["error_code"] == "APIG.0302"


def test_any_valid_project_without_project_flags(tmp_path):
    with h.Emulator(tmp_path, projects=()) as e:
        assert h.call(e, "GET", "/v5/some_project-1/event/export-task/abc")[0] == 404
        st, _, body = h.call(e, "POST", "/v1/some_project-1/waf/event/job/export",
                             {"recent": "today", "dump_columns": ["id"]})
        assert st == 400 and "project_id" in json.loads(body)["error_msg"]


def test_static_token(emu):
    assert h.call(emu, "GET", QPATH, auth="token", token=STATIC_TOKEN)[0] == 404
    st, _, body = h.call(emu, "GET", QPATH, auth="token", token="bogus")
    assert st == 401 and json.loads(body)["error_code"] == "APIG.0301"
    assert emu.log()[-1]["auth"] == "token"


def login(emu, user=USER, password=PASSWORD, domain=DOMAIN, project=h.PROJECT):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "password": password, "domain": {"name": domain}}}},
        "scope": {"project": {"id": project}}}}
    return h.call(emu, "POST", "/v3/auth/tokens", body, auth=None)


def test_iam_login_and_token_use(emu):
    st, hdrs, body = login(emu)
    assert st == 201, body
    tok = hdrs["x-subject-token"]
    j = json.loads(body)["token"]
    assert j["expires_at"].endswith(".000000Z") and j["issued_at"].endswith(".000000Z")
    assert j["methods"] == ["password"] and j["project"]["id"] == h.PROJECT
    assert j["user"]["name"] == USER and j["user"]["domain"]["name"] == DOMAIN
    assert h.call(emu, "GET", QPATH, auth="token", token=tok)[0] == 404
    # a job submitted with the token
    jid = h.submit(emu, {"recent": "today", "dump_columns": ["id"]}, auth="token", token=tok)
    assert len(jid) == 32
    # token scoped to PROJECT used on OTHER_PROJECT
    st, _, body = h.call(emu, "GET", "/v5/%s/event/export-task/abc" % OTHER_PROJECT,
                         auth="token", token=tok)
    assert st == 403 and json.loads(body)["error_code"] == "APIG.0302"
    assert emu.calls("token")[-1]["status"] == 201


@pytest.mark.parametrize("field", ["user", "password", "domain"])
def test_iam_login_wrong(emu, field):
    st, _, body = login(emu, **{field: "wrong"})
    assert st == 401
    assert json.loads(body) == {"error_code": "IAM.0004", "error_msg": "The username or password is wrong."}


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"auth":{}}',
                                  b'{"auth":{"identity":{"methods":["password"]}}}'])
def test_iam_login_malformed(emu, body):
    st, _, data = h.call(emu, "POST", "/v3/auth/tokens", body, auth=None)
    assert st == 400, data


def test_token_expiry(tmp_path):
    with h.Emulator(tmp_path, "--user", USER, "--password", PASSWORD, "--domain", DOMAIN,
                    "--token-ttl", "1") as e:
        st, hdrs, body = login(e)
        tok = hdrs["x-subject-token"]
        assert h.call(e, "GET", QPATH, auth="token", token=tok)[0] == 404
        time.sleep(1.2)
        st, _, body = h.call(e, "GET", QPATH, auth="token", token=tok)
        assert st == 401 and "expired" in json.loads(body)["error_msg"]


def test_token_survives_restart(emu):
    tok = login(emu)[1]["x-subject-token"]
    emu.restart()
    assert h.call(emu, "GET", QPATH, auth="token", token=tok)[0] == 404


def test_project_header_checked_when_sent(emu):
    # the harness signs X-Project-Id by default; a mismatch is refused
    st, _, body = h.call(emu, "GET", QPATH, headers=None)
    assert st == 404
    hdrs = h.sign_headers("GET", emu.url + QPATH, extra_headers={"X-Project-Id": "1" * 32})
    st, _, body = h._request(emu.url, "GET", QPATH, None, hdrs)
    assert st == 401 and json.loads(body)["error_code"] == "APIG.0301"
    assert "X-Project-Id" in json.loads(body)["error_msg"]
    # signed with one value, sent with another: the signature breaks
    hdrs = h.sign_headers("GET", emu.url + QPATH, extra_headers={"X-Project-Id": h.PROJECT})
    hdrs["X-Project-Id"] = OTHER_PROJECT
    st, _, body = h._request(emu.url, "GET", QPATH, None, hdrs)
    assert st == 401
    # with a token too
    st, _, body = h.call(emu, "GET", QPATH, auth="token", token=STATIC_TOKEN,
                         headers={"X-Project-Id": OTHER_PROJECT})
    assert st == 401


def test_require_project_header(emu):
    assert h.call(emu, "GET", QPATH, project_header=False)[0] == 404
    emu.config(require_project_header=True)
    st, _, body = h.call(emu, "GET", QPATH, project_header=False)
    assert st == 401 and json.loads(body)["error_code"] == "APIG.0301"
    assert "X-Project-Id" in json.loads(body)["error_msg"]
    # sent but not signed
    hdrs = h.sign_headers("GET", emu.url + QPATH)
    hdrs["X-Project-Id"] = h.PROJECT
    assert h._request(emu.url, "GET", QPATH, None, hdrs)[0] == 401
    assert h.call(emu, "GET", QPATH)[0] == 404
    st, _, _ = h.call(emu, "GET", "/v1/%s/waf/event/dump" % h.PROJECT, project_header=False)
    assert st == 401
    assert h.call(emu, "GET", "/v1/%s/waf/event/dump" % h.PROJECT)[0] == 200
    # IAM login and tokens are not affected
    assert login(emu)[0] == 201
    assert h.call(emu, "GET", QPATH, auth="token", token=STATIC_TOKEN)[0] == 404


def test_require_project_header_flag(tmp_path):
    with h.Emulator(tmp_path, "--require-project-header") as e:
        assert e.config()["require_project_header"] is True
        assert h.call(e, "GET", QPATH, project_header=False)[0] == 401
        assert h.call(e, "GET", QPATH)[0] == 404


@pytest.mark.parametrize("path", ["/v1/%s/waf/async-job/x" % h.PROJECT,
                                  "/v1/%s/waf/event/dump" % h.PROJECT,
                                  "/v5/%s/download/x" % h.PROJECT,
                                  "/v5/%s/event/export?category=host" % h.PROJECT])
def test_every_cloud_call_needs_auth(emu, path):
    m = "POST" if "event/export" in path else "GET"
    st, _, body = h.call(emu, m, path, auth=None)
    assert st == 401 and json.loads(body)["error_code"] == "APIG.0301"
