# The WAF flow, continued (test_fs_waf_flow.py has formats, matching and storage):
# credentials never reaching storage, X-Project-Id, a 401 not retried,
# enterprise_project_id where each call takes it, attaching a WAF job and an
# HSS task, a remount keeping local files, a cache of the previous version.
import errno
import io
import json
import os
import uuid
import zipfile

from fshelpers import (CONTROL, FILTER, PROJECT, emuharness, expect_errno, job_info,
                       read, run_job, submit, wait_end, wait_for, write_filter, zip_entries)
from test_fs_waf_flow import WRONG_SK, assert_shows_csv, run_any, storage_entries


# ---- calls and credentials -------------------------------------------------------
def test_project_header_required_aksk_still_works(mnt, emu):
    emu.config(waf_file_format="csv", require_project_header=True)
    job = run_job(mnt)
    assert_shows_csv(mnt, emu, job)
    hjob = run_any(mnt, {"service": "hss", "category": "host", "last_days": 3})
    assert "hss-events.csv" in os.listdir(mnt.job(hjob))
    api = [e for e in emu.log() if e.get("service") in ("waf", "hss")]
    apis = {e["api"] for e in api}
    assert {"submit_waf", "async_job", "event_dump", "export_hss", "task_hss",
            "download_hss"} <= apis, apis
    for e in api:
        assert "x-project-id" in e["headers"], e
        assert e["status"] == 200, e


def test_401_to_aksk_is_not_retried(mount_factory, emu):
    emu.config(job_delay=30)
    good = mount_factory("good")
    job = submit(good)
    good.stop()
    emu.clear_log()
    # the same cache with a wrong secret: submit is refused once, the running job's
    # status calls are refused one per poll
    m = mount_factory("bad", cache_dir=good.cache_dir, sk=WRONG_SK, poll_interval=5)
    info = wait_for(lambda: (lambda i: i["error"] and i)(job_info(m, job)), timeout=10,
                    what="the poll's error in .job.json")
    q = [e for e in emu.calls("query") if e.get("task_id") == job]
    assert [e["status"] for e in q] == [401], q
    assert read(os.path.join(m.job(job), "status")) == "running\n"
    err, reply = write_filter(m)
    assert err == errno.EACCES, (err, reply)
    assert reply.startswith("error: ") and WRONG_SK not in reply
    subs = emu.calls("submit")
    assert [e["status"] for e in subs] == [401], subs
    # still one status call: the poll was not retried in the meantime
    q = [e for e in emu.calls("query") if e.get("task_id") == job]
    assert len(q) <= 2, q  # at most the next poll (5 s later)
    emu.finish(job, "success")


def test_enterprise_project_id_goes_only_where_each_call_takes_it(mount_factory, emu):
    eps = "b7e1c0de-0000-4a4a-9c9c-1234567890ab"
    emu.config(waf_file_format="csv")
    m = mount_factory(opts={"enterprise_project_id": eps})
    job = run_job(m)
    assert_shows_csv(m, emu, job)
    hjob = run_any(m, {"service": "hss", "category": "container", "last_days": 2})
    assert "hss-events.csv" in os.listdir(m.job(hjob))
    log = [e for e in emu.log() if e.get("service") in ("waf", "hss")]
    by_api = {}
    for e in log:
        by_api.setdefault(e["api"], []).append(e)
    assert set(by_api) >= {"submit_waf", "async_job", "event_dump", "export_hss", "task_hss",
                           "download_hss"}, set(by_api)
    for e in log:
        assert e["status"] == 200, e
        q = e.get("query") or {}
        if e["api"] == "submit_waf":
            assert q == {}, e
        elif e["api"] == "event_dump":
            assert set(q) <= {"page", "pagesize"}, e
        elif e["api"] == "async_job":
            assert q == {"enterpriseProjectId": eps}, e
        elif e["api"] in ("task_hss", "download_hss"):
            assert q == {"enterprise_project_id": eps}, e
        elif e["api"] == "export_hss":
            assert q.get("enterprise_project_id") == eps and "enterpriseProjectId" not in q, e
    for e in storage_entries(emu):
        assert set(e.get("query") or {}) <= {"AWSAccessKeyId", "Expires", "Signature"}, e


# ---- attaching ---------------------------------------------------------------------
def test_attach_running_waf_job_and_hss_task(mnt, emu):
    emu.config(waf_file_format="csv", job_delay=2.0)
    job = emuharness.submit(emu, FILTER)
    task = emuharness.submit_hss(emu, {"category": "host", "last_days": 5})
    emu.clear_log()
    os.mkdir(mnt.job(job))
    os.mkdir(mnt.job(task))
    assert sorted(os.listdir(mnt.exports())) == sorted(["new", job, task])
    assert emu.calls("submit") == []
    assert job_info(mnt, job)["service"] == "waf"
    assert job_info(mnt, task)["service"] == "hss"
    assert read(os.path.join(mnt.job(job), "status")) == "running\n"
    assert wait_end(mnt, job) == "success\n"
    assert wait_end(mnt, task) == "success\n"
    assert_shows_csv(mnt, emu, job)
    assert job_info(mnt, job)["file_id"] == emu.file_of(job)["id"]
    r = emuharness.wait_job(emu, task)
    entries = zip_entries(emuharness.download(emu, r["file_id"]))
    assert sorted(os.listdir(mnt.job(task))) == sorted(list(CONTROL) + list(entries))
    for name, (data, _) in entries.items():
        assert read(os.path.join(mnt.job(task), name), "rb") == data
    info = job_info(mnt, task)
    assert info["filter"] is None and info["file_id"] == r["file_id"]
    assert info["task_status"] == "success" and info["format"] == "zip"
    # the HSS task was never asked for at WAF beyond the one lookup
    assert not [e for e in emu.calls("query") if e.get("task_id") == job and
                e["api"] == "task_hss"]


def test_attach_unknown_id_is_enoent(mnt, emu):
    unknown = uuid.uuid4().hex
    expect_errno(errno.ENOENT, os.mkdir, mnt.job(unknown))
    assert os.listdir(mnt.exports()) == ["new"]
    q = [e for e in emu.calls("query") if e.get("task_id") == unknown or
         unknown in e.get("path", "")]
    assert {e["api"] for e in q} == {"async_job", "task_hss"}, q
    assert all(e["status"] in (400, 404) for e in q), q


def test_remount_does_not_download_a_local_file_again(mount_factory, emu):
    """A job's local file is kept across a remount: no list call, no download.
    (Fails at 88abfb7: registry.c archive_from_journal_locked built the path
    before add_job_locked set j->project, i.e. archives/(null)/<job>.csv.)"""
    emu.config(waf_file_format="csv")
    m = mount_factory()
    job = run_job(m)
    assert_shows_csv(m, emu, job)
    f = emu.file_of(job)
    before = len(storage_entries(emu, f))  # the fs's and the direct one
    emu.clear_log()
    m.remount()
    assert f["filename"] in os.listdir(m.job(job))
    assert job_info(m, job)["archive"] == "ready"
    assert storage_entries(emu, f) == [] and emu.calls("list") == [], \
        [e["api"] for e in emu.log()]
    assert before == 2


# ---- a cache of the previous version ----------------------------------------------
def test_cache_of_previous_version_is_upgraded(mount_factory, emu, tmp_path):
    """A cache_dir as the previous version left it (no service/state/format, a
    lower-case task_status, archives/<P>/<job>.zip): the zip is shown, the record
    rewritten as a WAF job.  (Fails at 88abfb7: the upgrade looked for
    archives/(null)/<job>.zip, see the test above.)"""
    cache = tmp_path / "old-cache"
    job = uuid.uuid4().hex
    for d in ("journal/projects", "journal/jobs/" + PROJECT, "archives/" + PROJECT):
        os.makedirs(cache / d, mode=0o700, exist_ok=True)
    os.chmod(cache, 0o700)
    (cache / "CACHEDIR.TAG").write_text(
        "Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file is a cache directory tag created by hcexportfs.\n"
        "# For information about cache directory tags, see https://bford.info/cachedir/\n")
    (cache / "lock").write_bytes(b"")
    (cache / "journal/projects" / (PROJECT + ".json")).write_text(
        json.dumps({"project_id": PROJECT, "added_at": 1764547200}))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("events.csv", (2025, 12, 1, 10, 20, 30)),
                   "id,time,attack\n1,1764584430000,sqli\n2,1764584431000,xss\n")
        z.writestr(zipfile.ZipInfo("manifest.json", (2025, 12, 1, 10, 20, 30)),
                   json.dumps({"job_id": job, "rows": 2}))
    zbytes = buf.getvalue()
    (cache / "archives" / PROJECT / (job + ".zip")).write_bytes(zbytes)
    rec = {"job_id": job, "project_id": PROJECT, "filter": FILTER,
           "task_name": "waf_export_" + job[:8], "task_status": "success",
           "file_id": "0d014482-320c-4756-813a-a14b15651f6e", "file_name": "export.zip",
           "message": "Export succeeded", "submitted_at": "2025-12-01T10:20:00Z",
           "polled_at": "2025-12-01T10:21:00Z",
           "download": {"done": len(zbytes), "total": len(zbytes)}, "error": None,
           "archive": "ready"}
    recpath = cache / "journal/jobs" / PROJECT / (job + ".json")
    recpath.write_text(json.dumps(rec, sort_keys=True))
    m = mount_factory(cache_dir=str(cache), opts={"request_timeout": 2})
    assert os.listdir(m.exports()) == ["new", job] or \
        sorted(os.listdir(m.exports())) == sorted(["new", job])
    entries = zip_entries(zbytes)
    assert sorted(os.listdir(m.job(job))) == sorted(list(CONTROL) + list(entries))
    for name, (data, _) in entries.items():
        assert read(os.path.join(m.job(job), name), "rb") == data
    assert read(os.path.join(m.job(job), "status")) == "success\n"
    info = job_info(m, job)
    assert info["service"] == "waf" and info["format"] == "zip", info
    assert info["state"] == "success"
    assert read(m.archive(job), "rb") == zbytes
    ondisk = json.loads(recpath.read_text())
    assert ondisk["service"] == "waf", ondisk
    assert ondisk["format"] == "zip" and ondisk["state"] == "success", ondisk
    # nothing was asked of the cloud for it
    assert not [e for e in emu.log() if job in e.get("path", "")]
