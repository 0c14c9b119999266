# The hostile_kind archives (rawzip.py) and the bad_reply answers.
import io
import json
import struct
import zipfile
import zlib

import pytest

import emuharness as h
from hwemu import archive, rawzip

FLT = {"recent": "today", "dump_columns": ["id"]}
QPATH = "/v1/%s/waf/async-job/%s"
HQPATH = "/v5/%s/event/export-task/%s"


@pytest.mark.parametrize("n", [0, 1, 4095, 4096, 4097, 123457, 3 << 20])
def test_crc32_zeros_equals_hashing(n):
    assert rawzip.crc32_zeros(n) == zlib.crc32(b"\0" * n)


def test_zero_deflate_blocks_inflate_to_zeros():
    unit, end = rawzip.zero_deflate_unit()
    d = zlib.decompressobj(-15)
    out = d.decompress(unit * 3 + end)
    assert out == b"\0" * (3 * rawzip.UNIT) and d.eof
    assert len(unit) < 1100  # ~1000:1


def build(kind):
    bio = io.BytesIO()
    archive.build_hostile_kind(kind, {"submit_ms": 1700000000000}, bio)
    return bio.getvalue()


def test_names_kind_has_raw_names():
    z = zipfile.ZipFile(io.BytesIO(build("names")))
    raw = {zi.orig_filename for zi in z.infolist()}
    assert "tab\there.csv" in raw and "clash/inner.csv" in raw
    assert z.read("ok.csv") == b"ok\n"


def test_deep_kind():
    z = zipfile.ZipFile(io.BytesIO(build("deep")))
    names = [zi.filename for zi in z.infolist()]
    assert max(n.count("/") for n in names) == 9999
    assert z.read("d/" * 255 + "deep256.csv") == b"256 deep\n"


def test_entries_kind_lies_as_documented():
    data = build("entries")
    z = zipfile.ZipFile(io.BytesIO(data))
    info = {zi.filename: zi for zi in z.infolist()}
    assert info["encrypted.csv"].flag_bits & 1
    assert info["method77.csv"].compress_type == 77
    assert info["bigliar.csv"].file_size == 1 << 30
    assert info["csizeliar.csv"].compress_size == 1 << 30
    assert z.read("ok.csv") == b"id,time\n1,2\n"
    with pytest.raises(zipfile.BadZipFile):
        z.read("badcrc.csv")


def test_zip64_kind_is_valid_and_small():
    data = build("zip64")
    assert len(data) < 6 << 20
    z = zipfile.ZipFile(io.BytesIO(data))
    zi = z.getinfo("big.bin")
    assert zi.file_size == 4608 << 20 and zi.compress_type == zipfile.ZIP_DEFLATED
    with z.open("big.bin") as f:
        assert f.read(1 << 20) == b"\0" * (1 << 20)
    assert z.read("after.csv") == b"after the 4.5 GiB entry\n"


def test_many_kind_uses_zip64_end_records():
    data = build("many:70000")
    assert struct.unpack_from("<I", data, len(data) - 22 - 20)[0] == 0x07064B50
    z = zipfile.ZipFile(io.BytesIO(data))
    assert len(z.infolist()) == 70000
    assert z.read("d0069/f0069999") == b"9999\n"


def test_hostile_kind_knob_validation(emu):
    for bad in ("nope", "many:x", "names:3", 5):
        st, _, body = h.call(emu, "PATCH", "/_emulator/faults", {"hostile_kind": bad}, auth=None)
        assert st == 400, (bad, body)
    emu.patch_faults(hostile_kind="many:1000")
    jid = h.submit(emu, FLT)
    task = h.submit_hss(emu, {"category": "host"})
    emu.set_faults()
    r = h.wait_job(emu, jid)
    assert r["file_name"].endswith(".zip")
    z = zipfile.ZipFile(io.BytesIO(h.download(emu, r["file_id"])))
    assert len(z.infolist()) == 1000
    z = zipfile.ZipFile(io.BytesIO(h.download(emu, h.wait_job(emu, task)["file_id"])))
    assert len(z.infolist()) == 1000


@pytest.mark.parametrize("bad", ["not_json", "wrong_types", "missing_fields", "unknown_status",
                                 "giant_header", "redirect"])
def test_bad_reply_on_query(emu, bad):
    jid = h.submit(emu, FLT)
    emu.set_faults(bad_reply=bad, bad_reply_count=1)
    try:
        st, hdrs, body = h.call(emu, "GET", QPATH % (h.PROJECT, jid))
    except Exception as e:  # http.client refuses a 1 MiB header line
        assert bad == "giant_header", e
    else:
        if bad == "redirect":
            assert st == 302
            loc = {k.lower(): v for k, v in dict(hdrs).items()}["location"]
            assert loc.startswith("http://127.0.0.1:") and str(emu.port) not in loc.split("/")[2]
        elif bad == "not_json":
            assert st == 200 and body.startswith(b"<html>")
        elif bad != "giant_header":
            obj = json.loads(body)
            assert st == 200 and obj.get("status") in (None, "EXPLODED", ["SUCCESS"])
    assert emu.calls("query")[-1]["fault"] == "bad_reply"
    # count 1: the next query is normal again
    st, _, body = h.call(emu, "GET", QPATH % (h.PROJECT, jid))
    assert st == 200 and json.loads(body)["status"] in ("RUNNING", "SUCCESS")


@pytest.mark.parametrize("bad", ["not_json", "wrong_types", "missing_fields", "unknown_status"])
def test_bad_reply_on_hss_query(emu, bad):
    task = h.submit_hss(emu, {"category": "host"})
    emu.set_faults(bad_reply=bad, bad_reply_count=1)
    st, hdrs, body = h.call(emu, "GET", HQPATH % (h.PROJECT, task))
    if bad != "not_json":
        assert json.loads(body).get("task_status") in (None, "exploded", ["success"])
    st, _, body = h.call(emu, "GET", HQPATH % (h.PROJECT, task))
    assert st == 200 and json.loads(body)["task_status"] in ("running", "success")


@pytest.mark.parametrize("bad", ["not_json", "wrong_types", "missing_fields", "unknown_status",
                                 "redirect"])
def test_bad_reply_on_list(emu, bad):
    emu.set_faults(bad_reply=bad, bad_reply_calls=["list"], bad_reply_count=1)
    st, hdrs, body = h.call(emu, "GET", "/v1/%s/waf/event/dump" % h.PROJECT)
    if bad == "wrong_types":
        assert json.loads(body)["total"] == "3"
    elif bad == "unknown_status":
        it = json.loads(body)["items"][0]
        assert ".." in it["filename"] and str(emu.port) not in it["url"]
    elif bad == "redirect":
        assert st == 302
    assert emu.calls("list")[-1]["fault"] == "bad_reply"
    assert h.event_dump(emu)["total"] >= 0


def test_bad_reply_on_storage(emu):
    emu.config(rows=10)
    jid = h.submit(emu, FLT)
    url = h.wait_job(emu, jid)["item"]["url"]
    emu.set_faults(bad_reply="not_json", bad_reply_calls=["download"], bad_reply_count=1)
    st, _, body = h.storage_get(url)
    assert st == 200 and body.startswith(b"<html>")
    assert emu.storage_log()[-1]["fault"] == "bad_reply"
    assert h.storage_get(url)[2].startswith(b"id\n")


def test_bad_reply_does_not_create_jobs(emu):
    emu.set_faults(bad_reply="wrong_types", bad_reply_calls=["submit"])
    st, _, body = h.call(emu, "POST", "/v1/%s/waf/event/job/export" % h.PROJECT, FLT)
    assert st == 200 and json.loads(body)["job_id"] == 12345
    assert emu.jobs() == []
    emu.set_faults(bad_reply="wrong_types", bad_reply_calls=["submit"])
    st, _, body = h.call(emu, "POST", "/v5/%s/event/export" % h.PROJECT, None,
                         query={"category": "host"})
    assert st == 200 and json.loads(body)["task_id"] == 12345
    assert emu.jobs() == []
