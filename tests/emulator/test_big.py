# A larger archive (~50 MB) is streamed from disk: the server's RSS stays flat.
import http.client
import urllib.parse

import pytest

import emuharness as h
from hwemu import filters


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024


@pytest.mark.big
def test_big_download_rss_flat(emu):
    emu.config(rows=170000, compresslevel=0, waf_file_format="zip")
    jid = h.submit(emu, {"recent": "1month", "dump_columns": list(filters.COLUMNS)})
    r = h.wait_job(emu, jid, timeout=60)
    assert r["task_status"] == "success"
    size = [j for j in emu.jobs() if j["job_id"] == jid][0]["archive_size"]
    assert size > 45 * 1024 * 1024
    before = vm(emu.pid, "VmHWM")
    url = urllib.parse.urlsplit(r["item"]["url"])
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=30)
    conn.request("GET", url.path + "?" + url.query)
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.getheader("Content-Length")) == size
    got = 0
    while True:
        b = resp.read(1 << 20)
        if not b:
            break
        got += len(b)
    conn.close()
    assert got == size
    after = vm(emu.pid, "VmHWM")
    assert after - before < 8 * 1024 * 1024, (before, after)
    assert after < 72 * 1024 * 1024  # building did not hold the archive in memory either
