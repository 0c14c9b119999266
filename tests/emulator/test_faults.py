# Fault knobs (admin endpoint and --fault flags) and process lifetime.
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile

import pytest

import emuharness as h

QPATH = "/v5/%s/event/export-task/%s" % (h.PROJECT, "0" * 32)
FLT = {"recent": "today", "dump_columns": ["id", "time", "payload"]}


def ready_file(emu, rows=2000):
    """A zipped WAF file: (its pre-signed URL, its bytes)."""
    emu.config(rows=rows, waf_file_format="zip")
    jid = h.submit(emu, FLT)
    r = h.wait_job(emu, jid)
    return r["item"]["url"], h.download(emu, r["file_id"])


def url_path(url):
    u = urllib.parse.urlsplit(url)
    return u.path + "?" + u.query


def dl_path(fid):
    return "/v5/%s/download/%s" % (h.PROJECT, fid)


def test_faults_get_put_patch(emu):
    f = emu.faults()
    assert f["range"] is True and f["every_nth"] == 0 and f["hang_calls"] == []
    f = emu.set_faults(latency_ms=5, range=False)
    assert f["latency_ms"] == 5 and f["range"] is False
    f = emu.patch_faults(every_nth=3)
    assert f["latency_ms"] == 5 and f["every_nth"] == 3
    f = emu.set_faults(every_nth=2)
    assert f["latency_ms"] == 0 and f["range"] is True and f["every_nth"] == 2
    for bad in ({"nosuch": 1}, {"nth_status": 404}, {"hang_calls": ["bogus"]}, {"range": "yes"}):
        with pytest.raises(RuntimeError):
            emu.patch_faults(**bad)


def test_latency(emu):
    emu.set_faults(latency_ms=300)
    t = time.monotonic()
    assert h.call(emu, "GET", QPATH)[0] == 404
    assert time.monotonic() - t >= 0.3
    t = time.monotonic()
    emu.health()  # admin calls are not delayed
    assert time.monotonic() - t < 0.2


def test_every_nth_429(emu):
    emu.set_faults(every_nth=2, nth_status=429, retry_after=3)
    res = [h.call(emu, "GET", QPATH) for _ in range(4)]
    assert [r[0] for r in res] == [404, 429, 404, 429]
    assert json.loads(res[1][2]) == {"error_code": "APIG.0308",
                                     "error_msg": "The throttling threshold has been reached"}
    assert res[1][1]["retry-after"] == "3"
    assert [e.get("fault") for e in emu.calls("query")] == [None, "nth", None, "nth"]


def test_every_nth_503_without_retry_after(emu):
    emu.set_faults(every_nth=1, nth_status=503)
    st, hd, body = h.call(emu, "GET", QPATH)
    assert st == 503 and "retry-after" not in hd and "error_code" in json.loads(body)
    emu.set_faults(every_nth=1, nth_status=502, retry_after=1.5)
    st, hd, body = h.call(emu, "GET", QPATH)
    assert st == 502 and hd["retry-after"] == "1.5"


def test_nth_calls_filter(emu):
    url, data = ready_file(emu)
    emu.set_faults(every_nth=1, nth_status=500, nth_calls=["download"])
    assert h.call(emu, "GET", QPATH)[0] == 404
    assert h.call(emu, "POST", "/v1/%s/waf/event/job/export" % h.PROJECT, FLT)[0] == 200
    st, hd, body = h.storage_get(url)
    assert st == 500 and hd["content-type"] == "application/xml"
    assert b"<Code>InternalError</Code>" in body
    assert h.call(emu, "GET", dl_path("x"))[0] == 500
    emu.set_faults(every_nth=1, nth_status=503, nth_calls=["list"])
    st, _, body = h.call(emu, "GET", "/v1/%s/waf/event/dump" % h.PROJECT)
    assert st == 503 and json.loads(body)["error_code"] == "APIG.0203"
    assert h.call(emu, "GET", QPATH)[0] == 404
    assert emu.calls("list")[-1]["fault"] == "nth"
    emu.set_faults(every_nth=1, nth_status=429, nth_calls=["token"])
    st, _, _ = h.call(emu, "POST", "/v3/auth/tokens", {}, auth=None)
    assert st == 429


def test_nth_before_auth(emu):
    emu.set_faults(every_nth=1, nth_status=429)
    assert h.call(emu, "GET", QPATH, auth=None)[0] == 429


def test_nth_commit_creates_job(emu):
    emu.set_faults(every_nth=1, nth_status=500, nth_calls=["submit"], nth_commit=True)
    st, _, _ = h.call(emu, "POST", "/v1/%s/waf/event/job/export" % h.PROJECT, FLT)
    assert st == 500 and len(emu.jobs()) == 1
    emu.set_faults(every_nth=1, nth_status=500, nth_calls=["submit"])
    st, _, _ = h.call(emu, "POST", "/v1/%s/waf/event/job/export" % h.PROJECT, FLT)
    assert st == 500 and len(emu.jobs()) == 1


def test_nth_commit_hss(emu):
    emu.set_faults(every_nth=1, nth_status=503, nth_calls=["submit"], nth_commit=True)
    st, _, body = h.call(emu, "POST", "/v5/%s/event/export" % h.PROJECT, None,
                         query={"category": "host"})
    assert st == 503 and json.loads(body)["error_code"] == "APIG.0203"
    assert [j["service"] for j in emu.jobs()] == ["hss"]


def test_latency_applies_to_storage(emu):
    url, data = ready_file(emu, rows=10)
    emu.set_faults(latency_ms=300)
    t = time.monotonic()
    assert h.storage_get(url)[0] == 200
    assert time.monotonic() - t >= 0.3


def test_reset_every_nth(emu):
    emu.set_faults(reset_every_nth=2)
    assert h.call(emu, "GET", QPATH)[0] == 404
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
        h.call(emu, "GET", QPATH)
    assert h.call(emu, "GET", QPATH)[0] == 404
    assert [e.get("fault") for e in emu.calls("query")] == [None, "reset", None]
    assert emu.calls("query")[1]["status"] is None


def test_hang_calls(emu):
    emu.set_faults(hang_calls=["query"])
    out = {}

    def worker():
        out["r"] = h.call(emu, "GET", QPATH)
    t = threading.Thread(target=worker)
    t.start()
    time.sleep(0.5)
    assert t.is_alive()
    # other calls still served
    assert h.call(emu, "POST", "/v1/%s/waf/event/job/export" % h.PROJECT, FLT)[0] == 200
    assert emu.calls("query")[0]["status"] is None
    emu.patch_faults(hang_calls=[])
    t.join(5)
    assert out["r"][0] == 404
    assert emu.calls("query")[0]["fault"] == "hang"


def test_hang_client_timeout(emu):
    emu.set_faults(hang_calls=["download"])
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=0.5)
    conn.request("GET", dl_path("x"), headers=h.sign_headers("GET", emu.url + dl_path("x")))
    with pytest.raises(OSError):
        conn.getresponse()
    conn.close()


def test_cut_downloads(emu):
    url, data = ready_file(emu, rows=20000)
    emu.set_faults(cut_downloads=1)
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    conn.request("GET", url_path(url))
    r = conn.getresponse()
    assert int(r.getheader("Content-Length")) == len(data)
    with pytest.raises(http.client.IncompleteRead) as ei:
        r.read()
    assert len(ei.value.partial) == len(data) // 2
    conn.close()
    assert emu.faults()["cut_downloads"] == 0
    assert h.storage_get(url)[2] == data
    assert emu.calls("download")[-2]["fault"] == "cut"


def test_corrupt_downloads(emu):
    url, data = ready_file(emu, rows=5000)
    emu.set_faults(corrupt_downloads=1)
    bad = h.storage_get(url)[2]
    assert len(bad) == len(data) and bad != data
    diff = [i for i in range(len(data)) if bad[i] != data[i]]
    assert diff[0] >= len(data) // 2 - 1 and diff[-1] < len(data) // 2 + 17
    with pytest.raises(Exception):
        z = zipfile.ZipFile(io.BytesIO(bad))
        for n in z.namelist():
            z.read(n)
    assert h.storage_get(url)[2] == data


def test_slow_download(emu):
    url, data = ready_file(emu, rows=300)
    emu.set_faults(slow_download_bps=len(data) * 2)
    t = time.monotonic()
    assert h.storage_get(url)[2] == data
    assert time.monotonic() - t >= 0.4


def hss_file(emu, rows=3000):
    task = h.submit_hss(emu, {"category": "host"})
    emu.config(rows=rows)
    fid = h.wait_job(emu, task)["file_id"]
    return fid, h.download(emu, fid)


def test_download_faults_apply_to_hss(emu):
    emu.config(rows=3000)
    fid, data = hss_file(emu)
    emu.set_faults(corrupt_downloads=1)
    bad = h.call(emu, "GET", dl_path(fid))[2]
    assert len(bad) == len(data) and bad != data
    emu.set_faults(range=False)
    st, hd, body = h.call(emu, "GET", dl_path(fid), headers={"Range": "bytes=5-"})
    assert st == 200 and body == data
    emu.set_faults()
    st, hd, body = h.call(emu, "GET", dl_path(fid), headers={"Range": "bytes=5-"})
    assert st == 206 and body == data[5:]
    emu.set_faults(cut_downloads=1)
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    conn.request("GET", dl_path(fid), headers=h.sign_headers("GET", emu.url + dl_path(fid)))
    r = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    conn.close()


@pytest.mark.parametrize("what,status,code", [("expired", 403, "AccessDenied"),
                                              ("denied", 403, "AccessDenied"),
                                              ("500", 500, "InternalError"),
                                              ("503", 503, "ServiceUnavailable")])
def test_storage_fault(emu, what, status, code):
    url, data = ready_file(emu, rows=50)
    emu.set_faults(storage_fault=what, storage_fault_count=2)
    for _ in range(2):
        st, hd, body = h.storage_get(url)
        assert st == status and b"<Code>%s</Code>" % code.encode() in body
        if what == "expired":
            assert b"Request has expired" in body
    assert emu.faults()["storage_fault"] == ""
    assert h.storage_get(url)[2] == data
    assert [e.get("fault") for e in emu.storage_log()][-3:] == ["storage_" + what] * 2 + [None]
    # count 0: every storage request while set; API calls are not affected
    emu.set_faults(storage_fault=what)
    assert h.storage_get(url)[0] == status and h.storage_get(url)[0] == status
    assert h.call(emu, "GET", QPATH)[0] == 404
    emu.set_faults()
    assert h.storage_get(url)[0] == 200


def test_storage_fault_knob_validation(emu):
    for bad in ("gone", 404, True):
        with pytest.raises(RuntimeError):
            emu.patch_faults(storage_fault=bad)
    assert emu.patch_faults(storage_fault=500)["storage_fault"] == "500"


@pytest.mark.parametrize("kind", ["list", "download"])
def test_hang_and_reset_new_kinds(emu, kind):
    url, data = ready_file(emu, rows=50)
    emu.set_faults(reset_every_nth=1, reset_calls=[kind])
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
        if kind == "list":
            h.call(emu, "GET", "/v1/%s/waf/event/dump" % h.PROJECT)
        else:
            h.storage_get(url)
    assert emu.calls(kind)[-1]["fault"] == "reset"
    emu.set_faults(hang_calls=[kind])
    out = {}

    def worker():
        out["r"] = (h.call(emu, "GET", "/v1/%s/waf/event/dump" % h.PROJECT) if kind == "list"
                    else h.storage_get(url))
    t = threading.Thread(target=worker)
    t.start()
    deadline = time.monotonic() + 5
    while not [e for e in emu.calls(kind) if e.get("fault") is None and e["status"] is None]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert t.is_alive()
    emu.set_faults()
    t.join(5)
    assert out["r"][0] == 200
    assert emu.calls(kind)[-1]["fault"] == "hang"


def test_fault_flags_at_start(tmp_path):
    with h.Emulator(tmp_path, "--fault", "range=false", "--fault", "every_nth=2",
                    "--fault", "nth_status=429", "--fault", "nth_calls=query,download",
                    "--fault", "retry_after=null") as e:
        f = e.faults()
        assert f["range"] is False and f["every_nth"] == 2 and f["nth_calls"] == ["query", "download"]
        assert f["retry_after"] is None
        assert [h.call(e, "GET", QPATH)[0] for _ in range(2)] == [404, 429]


def test_bad_fault_flag_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="nosuch"):
        h.Emulator(tmp_path, "--fault", "nosuch=1").start()


def test_sigterm(tmp_path):
    e = h.Emulator(tmp_path).start()
    e.proc.send_signal(signal.SIGTERM)
    assert e.proc.wait(5) == 0
    e.stop()


def test_max_lifetime(tmp_path):
    e = h.Emulator(tmp_path, "--max-lifetime", "0.5").start()
    assert e.proc.wait(5) == 0
    e.stop()


def test_exits_when_parent_dies(tmp_path):
    pidfile = tmp_path / "pid"
    code = ("import subprocess,sys; p=subprocess.Popen([sys.executable, %r, '--max-lifetime', '60'],"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); open(%r,'w').write(str(p.pid)); import time; time.sleep(0.5)"
            % (h.EMULATOR, str(pidfile)))
    subprocess.run([sys.executable, "-c", code], check=True)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/status" % pid) as f:
                if "\nState:\tZ" in f.read():
                    return  # exited, waiting to be reaped
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("emulator outlived its parent")
