# What the event-logs/ folder needs of the emulator: long event-log lists seeded
# in one call (deterministic ids, names with clashes and empty names, paging),
# files leaving the list, the size of a file learnt from storage before reading
# it (a one-byte ranged GET, logged with its Range; HEAD refused with a URL
# signed for GET, as OBS does, unless the storage_head knob says otherwise).
import pytest

import emuharness as h


def bulk_items(emu):
    return [i for i in h.list_files(emu) if i["description"].startswith("bulk file")]


def test_bulk_names_ids_and_paging(emu):
    r = emu.bulk_files(count=250, clash_every=5, empty_every=7, step_ms=1000)
    assert r["count"] == 250 and len(set(r["files"])) == 250
    items = bulk_items(emu)
    assert [i["id"] for i in items] == r["files"]          # newest first, in seed order
    ts = [i["timestamp"] for i in items]
    assert all(a - b == 1000 for a, b in zip(ts, ts[1:]))
    names = [i["filename"] for i in items]
    assert names[0] == "waf-bulk-00000.csv" and names[3] == "waf-bulk-00003.csv"
    assert names[4] == names[3]                               # every 5th clashes
    assert names[6] == ""                                     # every 7th is empty
    assert names[34] == ""                                    # 34 % 7 == 6 wins over 34 % 5
    assert len({i["obsname"] for i in items}) == 250          # objects stay distinct
    total = h.event_dump(emu, 1, 100)["total"]
    assert total == 250 + 5                                   # plus the seeded files
    assert len(h.event_dump(emu, 3, 100)["items"]) == 55
    assert h.event_dump(emu, 4, 100)["items"] == []


def test_bulk_is_deterministic_and_continues(emu):
    first = emu.bulk_files(count=3)["files"]
    emu.reset()
    assert emu.bulk_files(count=3)["files"] == first
    more = emu.bulk_files(count=2, start=3, name_prefix="x-", name_suffix=".csv.gz", format="gzip",
                timestamp=emu.config()["server_time_ms"] - 10 ** 7)
    assert not set(more["files"]) & set(first)
    names = {i["id"]: i["filename"] for i in h.list_files(emu)}
    assert names[more["files"][0]] == "x-00003.csv.gz"
    data = h.download(emu, more["files"][0])
    assert data[:2] == b"\x1f\x8b"
    assert emu.admin("GET", "files/%s" % more["files"][0])["size"] == len(data)


def test_bulk_files_download_and_leave_the_list(emu):
    ids = emu.bulk_files(count=3, rows=2, build=True)["files"]
    assert all(emu.admin("GET", "files/%s" % i)["size"] for i in ids)      # built already
    data = h.download(emu, ids[1])
    assert data.startswith(b"id,time,sip,attack\n") and data.count(b"\n") == 3
    url = [i for i in h.list_files(emu) if i["id"] == ids[1]][0]["url"]
    emu.remove_file(ids[1])
    assert ids[1] not in [i["id"] for i in h.list_files(emu)]
    assert h.storage_get(url)[0] == 404


@pytest.mark.parametrize("bad", [{}, {"count": 0}, {"count": 100001}, {"count": "5"},
                                 {"count": 1, "nosuch": 1}, {"count": 1, "origin": "job"},
                                 {"count": 1, "format": "tar"}, {"count": 1, "project": "x"},
                                 {"count": 1, "name_prefix": 5}, {"count": 1, "step_ms": -1},
                                 {"count": 1, "build": "yes"}])
def test_bulk_bad_input(emu, bad):
    bad = dict(bad)
    bad.setdefault("project", h.PROJECT)
    with pytest.raises(RuntimeError, match="400"):
        emu.admin("POST", "files/bulk", bad)


@pytest.fixture
def item(emu):
    fid = emu.bulk_files(count=1, rows=5)["files"][0]
    return [i for i in h.list_files(emu) if i["id"] == fid][0]


def test_size_by_one_byte_range(emu, item):
    size = len(h.download(emu, item["id"]))
    emu.clear_log()
    st, hd, body = h.storage_get(item["url"], {"Range": "bytes=0-0"})
    assert st == 206 and len(body) == 1 and hd["content-range"] == "bytes 0-0/%d" % size
    e = emu.storage_log()[-1]
    assert e["range"] == "bytes=0-0" and e["bytes_sent"] == 1 and e["file_id"] == item["id"]
    # storage that ignores Range answers the whole file, its length announced
    emu.set_faults(range=False)
    st, hd, body = h.storage_get(item["url"], {"Range": "bytes=0-0"})
    assert st == 200 and int(hd["content-length"]) == size == len(body)
    assert "content-range" not in hd


def test_empty_object_answers_416_to_a_range(emu):
    fid = emu.bulk_files(count=1, format="empty")["files"][0]
    item = [i for i in h.list_files(emu) if i["id"] == fid][0]
    assert item["filename"].endswith(".csv")
    assert h.download(emu, fid) == b"" and emu.admin("GET", "files/%s" % fid)["size"] == 0
    st, hd, _ = h.storage_get(item["url"], {"Range": "bytes=0-0"})
    assert st == 416 and hd["content-range"] == "bytes */0"
    # as some S3-compatible stores answer: no Content-Range with the 416
    emu.set_faults(range_416_content_range=False)
    st, hd, _ = h.storage_get(item["url"], {"Range": "bytes=0-0"})
    assert st == 416 and "content-range" not in hd
    with pytest.raises(RuntimeError, match="400"):
        emu.patch_faults(range_416_content_range="no")


def test_head_refused_with_a_get_signature(emu, item):
    st, hd, body = h.storage_get(item["url"], method="HEAD")
    assert st == 403 and body == b""
    assert emu.storage_log()[-1]["storage_error"] == "SignatureDoesNotMatch"
    # a URL signed for HEAD answers it, with the length and no body
    head_url = emu.admin("GET", "files/%s/url?method=HEAD" % item["id"])["url"]
    st, hd, body = h.storage_get(head_url, method="HEAD")
    size = len(h.download(emu, item["id"]))
    assert st == 200 and body == b"" and int(hd["content-length"]) == size
    assert h.storage_get(head_url)[0] == 403                  # ... and not GET
    with pytest.raises(RuntimeError, match="400"):
        emu.admin("GET", "files/%s/url?method=PUT" % item["id"])


def test_storage_head_knob(emu, item):
    size = len(h.download(emu, item["id"]))
    emu.set_faults(storage_head="any", corrupt_downloads=1)
    st, hd, body = h.storage_get(item["url"], method="HEAD")
    assert st == 200 and int(hd["content-length"]) == size and body == b""
    assert emu.faults()["corrupt_downloads"] == 1               # a HEAD uses up no fault
    emu.set_faults(storage_head="refuse")
    head_url = emu.admin("GET", "files/%s/url?method=HEAD" % item["id"])["url"]
    for u in (item["url"], head_url):
        st, _, _ = h.storage_get(u, method="HEAD")
        assert st == 405
    assert h.storage_get(item["url"])[0] == 200
    with pytest.raises(RuntimeError):
        emu.patch_faults(storage_head="sometimes")
