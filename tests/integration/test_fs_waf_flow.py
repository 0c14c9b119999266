# The real WAF flow end to end, through real mounts: submit -> async-job ->
# the job's file found in WAF's event-log list (by id, name or time) -> the
# pre-signed storage download (no credential header) -> the job directory and
# archives/.  Formats (csv, gzip, zip), several jobs at once, files listed
# late, expired URLs, storage faults, no credential reaching storage.  Calls,
# attaching and caches: test_fs_waf_flow_requests.py; HSS: test_fs_hss_flow.py.
import gzip
import json
import os
import shlex
import stat
import time

import pytest

from fshelpers import (CONTROL, FILTER, PROJECT, STATIC_TOKEN, emuharness, job_info, read,
                       run_job, sh, submit, wait_end, wait_for, write_private, zip_entries)

CRED_HEADERS = ("authorization", "x-auth-token", "x-sdk-date", "x-security-token",
                "x-project-id")
WRONG_SK = "WrongSecretKey0000000000000000000000000x"


# ---- helpers ---------------------------------------------------------------------
def archives_dir(m, pid=PROJECT):
    return m.path("projects", pid, "archives")


def served_file(emu, job):
    """(file view, bytes as storage serves them) of a WAF job's file."""
    f = emu.file_of(job)
    assert f is not None, "the emulator made no file for %s" % job
    return f, emuharness.download(emu, f["id"])


def assert_shows_csv(m, emu, job):
    """The job dir shows its controls and the one CSV, byte for byte as served."""
    names = sorted(os.listdir(m.job(job)))  # (waits for the fetch)
    f, served = served_file(emu, job)
    assert names == sorted(list(CONTROL) + [f["filename"]]), names
    assert read(os.path.join(m.job(job), f["filename"]), "rb") == served
    return f, served


def storage_entries(emu, f=None):
    """Storage log entries (of one file view's object when f is given)."""
    return [e for e in emu.storage_log() if f is None or e.get("path", "").endswith(
        "/" + f["obsname"])]


def run_any(m, flt, want="success"):
    """Submit a WAF or HSS filter through `new`, wait for its end; returns the id."""
    fd = os.open(m.new(), os.O_RDWR)
    try:
        data = json.dumps(flt).encode()
        assert os.write(fd, data) == len(data)
        reply = os.read(fd, 4096).decode()
    finally:
        os.close(fd)
    assert reply.endswith("\n") and not reply.startswith("error"), reply
    job = reply.strip()
    assert wait_end(m, job) == want + "\n"
    return job


# ---- formats -----------------------------------------------------------------------
def test_csv_default_format_submit_to_browse(mnt, emu):
    emu.config(waf_file_format="csv")
    job = run_job(mnt)
    os.listdir(mnt.job(job))
    f, served = served_file(emu, job)
    assert f["filename"].endswith(".csv") and served.startswith(b"id,time,attack\n")
    names = sorted(os.listdir(mnt.job(job)))
    assert names == sorted(list(CONTROL) + [f["filename"]]), names
    p = os.path.join(mnt.job(job), f["filename"])
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444, oct(st.st_mode)
    assert st.st_size == len(served)
    assert int(st.st_mtime) == f["timestamp"] // 1000, (st.st_mtime, f["timestamp"])
    assert read(p, "rb") == served
    assert os.listdir(archives_dir(mnt)) == [job + ".csv"]
    arch = os.path.join(archives_dir(mnt), job + ".csv")
    assert read(arch, "rb") == served
    assert os.stat(arch).st_size == len(served)
    info = job_info(mnt, job)
    assert info["service"] == "waf"
    assert info["task_status"] == "SUCCESS"
    assert info["state"] == "success"
    assert info["file_match"] == "time"
    assert info["format"] == "csv"
    assert info["file_id"] == f["id"] and info["file_name"] == f["filename"]
    assert info["file_time"] == f["timestamp"]
    assert info["error"] is None
    assert info["download"] == {"done": len(served), "total": len(served)}
    assert read(os.path.join(mnt.job(job), "status")) == "success\n"


def test_gzip_format_is_shown_decompressed(mnt, emu):
    emu.config(waf_file_format="gzip", rows=2000)
    job = run_job(mnt)
    os.listdir(mnt.job(job))
    f, served = served_file(emu, job)
    assert f["filename"].endswith(".csv.gz") and served[:2] == b"\x1f\x8b"
    plain = gzip.decompress(served)
    shown = f["filename"][:-3]
    assert sorted(os.listdir(mnt.job(job))) == sorted(list(CONTROL) + [shown])
    p = os.path.join(mnt.job(job), shown)
    assert os.stat(p).st_size == len(plain)
    assert int(os.stat(p).st_mtime) == f["timestamp"] // 1000
    assert os.listdir(archives_dir(mnt)) == [job + ".csv.gz"]
    assert read(os.path.join(archives_dir(mnt), job + ".csv.gz"), "rb") == served
    fd = os.open(p, os.O_RDONLY)
    try:
        n = len(plain)
        for off, size in ((n - 1, 1), (0, 7), (n // 2, 4097), (n // 3, 65536), (n - 100, 500),
                          (1, 1), (n + 10, 10), (n // 5, 3)):
            assert os.pread(fd, size, off) == plain[off:off + size], (off, size)
    finally:
        os.close(fd)
    size = int(sh("ls -ln %s" % shlex.quote(p)).stdout.split()[4])
    assert size == len(sh("cat %s" % shlex.quote(p)).stdout) == len(plain)
    info = job_info(mnt, job)
    assert info["format"] == "csv.gz" and info["file_name"] == f["filename"]


def test_zip_format_shows_entries(mnt, emu):
    emu.config(waf_file_format="zip")
    job = run_job(mnt)
    os.listdir(mnt.job(job))
    f, served = served_file(emu, job)
    assert served[:2] == b"PK"
    entries = zip_entries(served)
    assert sorted(os.listdir(mnt.job(job))) == sorted(list(CONTROL) + list(entries))
    for name, (data, _) in entries.items():
        assert read(os.path.join(mnt.job(job), name), "rb") == data, name
    assert os.listdir(archives_dir(mnt)) == [job + ".zip"]
    assert read(mnt.archive(job), "rb") == served
    assert job_info(mnt, job)["format"] == "zip"


# ---- finding the job's file --------------------------------------------------------
@pytest.mark.parametrize("link", ["id", "name"])
def test_file_matched_by_id_or_name(mnt, emu, link):
    emu.config(waf_file_format="csv", waf_file_link=link)
    job = run_job(mnt)
    f = emu.file_of(job)
    if link == "id":
        assert f["id"] == job
    else:
        assert job in f["filename"] and f["id"] != job
    assert_shows_csv(mnt, emu, job)
    info = job_info(mnt, job)
    assert info["file_match"] == link
    assert info["file_id"] == f["id"]


def several_jobs_invariants(m, emu, jobs):
    """Each job took a distinct listed file of its window, generated at or after
    its submission (to the second the cloud's Date header gives) and no later than
    its own file; returns {job: file view taken}."""
    files = {f["id"]: f for f in emu.files(PROJECT)}
    taken = {}
    for job in jobs:
        os.listdir(m.job(job))
        info = job_info(m, job)
        assert info["error"] is None and info["file_match"] == "time", info
        f = files[info["file_id"]]
        rec = emu.job(job)
        assert f["origin"] in ("job", "foreign") and f["recent"] == "today", f
        assert rec["submit_ms"] // 1000 * 1000 <= f["timestamp"], (f, rec["submit_ms"])
        assert f["timestamp"] <= rec["submit_ms"] + 60000, (f, rec["submit_ms"])
        data = read(os.path.join(m.job(job), info["file_name"]), "rb")
        assert data == emuharness.download(emu, f["id"])
        taken[job] = f
    assert len({f["id"] for f in taken.values()}) == len(jobs), "two jobs share a file"
    return taken


def test_several_jobs_at_once_same_window_foreign_files(mnt, emu):
    """Jobs of one mount succeeding together, a foreign job's file (same window)
    generated right after each submission, the seeded daily/foreign files in the
    list.  No listed field tells such a foreign file from ours (cloud-api.md §4), so
    what must hold is the time rule: no two jobs share a file, each takes a file of
    its window generated at or after its submission, never a seeded one."""
    emu.config(waf_file_format="csv", job_delay=1.0, foreign_after_submit=1)
    jobs = [submit(mnt, dict(FILTER, attacks=[a])) for a in ("sqli", "xss", "lfi", "rfi")]
    for job in jobs:
        assert wait_end(mnt, job) == "success\n"
    several_jobs_invariants(mnt, emu, jobs)


def test_several_jobs_at_once_other_window_foreign_files(mnt, emu):
    """The same with foreign files of another window: each file taken is one of
    our jobs' own files (which job gets which: see the next test)."""
    emu.config(waf_file_format="csv", job_delay=1.0, foreign_after_submit=1,
               foreign_recent="1week")
    jobs = [submit(mnt, dict(FILTER, attacks=[a])) for a in ("sqli", "xss", "lfi", "rfi")]
    for job in jobs:
        assert wait_end(mnt, job) == "success\n"
    taken = several_jobs_invariants(mnt, emu, jobs)
    own = {emu.file_of(j)["id"] for j in jobs}
    assert {f["id"] for f in taken.values()} == own


def test_jobs_submitted_in_one_second_take_files_in_submission_order(mnt, emu):
    """cloud-api.md §4: jobs waiting together are matched in the order they were
    submitted, the earliest-submitted taking the earliest candidate.  Made
    deterministic: a blocker job's status call is held so that every other job is
    polled (and looked up) in one round; their files are timestamped in submission
    order; jobs are submitted until two of the same cloud second have ids in the
    reverse of their submission order."""
    emu.config(waf_file_format="csv", job_delay=300)
    emu.set_faults(hang_calls=["query"])
    blocker = submit(mnt, dict(FILTER, attacks=["robot"]))
    wait_for(lambda: [e for e in emu.calls("query") if e.get("task_id") == blocker],
             timeout=10, what="the blocker's held status call")
    jobs, since = [], {}

    def inverted_pair():
        for i, a in enumerate(jobs):
            for b in jobs[i + 1:]:
                if since[a] == since[b] and b < a:
                    return a, b
        return None
    while not inverted_pair():
        assert len(jobs) < 24, "no two jobs of one second with inverted ids"
        job = submit(mnt)
        since[job] = job_info(mnt, job)["cloud_since_ms"]
        assert since[job] is not None
        jobs.append(job)
    a, b = inverted_pair()
    last = max(emu.job(j)["submit_ms"] for j in jobs)
    for k, job in enumerate(jobs):
        emu.finish(job)
        emu.patch_file(emu.file_of(job)["id"], timestamp=last + 100 + 10 * k)
    emu.finish(blocker, "failure")
    # Every job's next poll is due poll_interval (0.2 s) after its submission; the
    # poller is held until then (a timer, not a state to wait for), so that the
    # round after the blocker's polls them all, then looks their files up at once.
    time.sleep(0.6)
    emu.set_faults()  # release the held call
    for job in jobs:
        assert wait_end(mnt, job) == "success\n"
        os.listdir(mnt.job(job))
    got = {j: job_info(mnt, j)["file_id"] for j in jobs}
    want = {j: emu.file_of(j)["id"] for j in jobs}
    assert got[a] == want[a] and got[b] == want[b], (a, b, got, want)
    assert got == want


def test_foreign_file_of_another_window_is_not_taken(mnt, emu):
    emu.config(waf_file_format="csv", foreign_after_submit=1, foreign_recent="1month")
    job = run_job(mnt, dict(FILTER, recent="today"))
    mine = emu.file_of(job)
    foreign = [f for f in emu.files(PROJECT) if f["origin"] == "foreign"
               and f["recent"] == "1month" and f["timestamp"] < mine["timestamp"]]
    assert foreign, "the emulator made no foreign file before ours"
    assert_shows_csv(mnt, emu, job)
    info = job_info(mnt, job)
    assert info["file_id"] == mine["id"]
    assert info["file_id"] not in {f["id"] for f in foreign}


def test_file_listed_some_polls_after_success(mount_factory, emu):
    emu.config(waf_file_format="csv", list_delay=1.5)
    m = mount_factory(poll_interval=0.1)
    job = submit(m)
    path = os.path.join(m.job(job), ".job.json")

    def waiting():
        i = json.loads(read(path))
        return i["state"] == "success" and i["error"] and "not in WAF's event-log list yet" \
            in i["error"] and i
    info = wait_for(waiting, timeout=10, what="the 'not listed yet' error")
    assert info["file_id"] is None and info["file_match"] is None
    assert not emu.file_of(job)["listed"]
    # listing the directory waits for the file to be listed and fetched
    assert_shows_csv(m, emu, job)
    info = job_info(m, job)
    assert info["error"] is None and info["file_id"] == emu.file_of(job)["id"]
    assert info["file_match"] == "time"
    assert len(emu.calls("list")) >= 2


# ---- storage ---------------------------------------------------------------------
def test_expired_url_is_replaced_by_listing_again(mnt, emu):
    """The URL the lookup got expires before storage sees the request (the download
    is held, then the emulator clock moves past Expires): storage answers 403
    'Request has expired', one more list call gives a fresh URL, the download ends."""
    emu.config(waf_file_format="csv", url_ttl=60)
    emu.set_faults(hang_calls=["download"])
    job = submit(mnt)
    wait_for(lambda: storage_entries(emu), timeout=15, what="the storage download")
    lists_before = len(emu.calls("list"))
    emu.config(clock_offset=120)
    emu.set_faults()  # let it through: now past Expires
    try:
        assert wait_end(mnt, job) == "success\n"
        f, served = assert_shows_csv(mnt, emu, job)
    finally:
        emu.config(clock_offset=0)
    st = storage_entries(emu, f)
    assert st[0]["status"] == 403 and st[0].get("storage_error") == "AccessDenied", st[0]
    assert st[1]["status"] in (200, 206), st[1]
    relists = [e for e in emu.calls("list") if st[0]["seq"] < e["seq"] < st[1]["seq"]]
    assert len(relists) == 1, relists
    assert len(emu.calls("list")) == lists_before + 1


def test_expired_storage_fault_lists_again(mnt, emu):
    emu.config(waf_file_format="csv")
    emu.set_faults(storage_fault="expired", storage_fault_count=1)
    job = run_job(mnt)
    f, served = assert_shows_csv(mnt, emu, job)
    st = storage_entries(emu, f)
    assert st[0]["status"] == 403 and st[0].get("fault") == "storage_expired", st[0]
    assert st[1]["status"] == 200, st[1]
    relists = [e for e in emu.calls("list") if st[0]["seq"] < e["seq"] < st[1]["seq"]]
    assert len(relists) == 1, relists
    assert job_info(mnt, job)["error"] is None


@pytest.mark.parametrize("fault", ["500", "503", "cut", "reset"])
def test_storage_faults_recover_byte_exact(mnt, emu, fault):
    emu.config(waf_file_format="csv", rows=3000)
    if fault in ("500", "503"):
        emu.set_faults(storage_fault=fault, storage_fault_count=2)
    elif fault == "cut":
        emu.set_faults(cut_downloads=1)
    else:
        # the 1st download (of a daily file, below) passes, the 2nd (ours) is reset
        emu.set_faults(reset_every_nth=2, reset_calls=["download"])
        daily = [f for f in emu.files(PROJECT) if f["origin"] == "daily" and f["listed"]]
        emuharness.download(emu, daily[0]["id"])
    job = run_job(mnt)
    os.listdir(mnt.job(job))
    emu.set_faults()  # (for the direct download below)
    f, served = assert_shows_csv(mnt, emu, job)
    assert read(os.path.join(archives_dir(mnt), job + ".csv"), "rb") == served
    mine = storage_entries(emu, f)[:-1]  # (the last: the direct download above)
    want_fault = {"500": "storage_500", "503": "storage_503", "cut": "cut",
                  "reset": "reset"}[fault]
    n_faulty = 2 if fault in ("500", "503") else 1
    assert [e.get("fault") for e in mine] == [want_fault] * n_faulty + [None], mine
    assert mine[-1]["status"] in (200, 206), mine[-1]
    assert job_info(mnt, job)["error"] is None


@pytest.mark.parametrize("creds", ["aksk", "token"])
def test_no_credential_header_reaches_storage(mount_factory, emu, tmp_path, creds):
    emu.config(waf_file_format="csv")
    if creds == "aksk":
        m = mount_factory()
    else:
        tok = write_private(tmp_path / "token", STATIC_TOKEN + "\n")
        m = mount_factory(ak=None, sk=None, opts={"token_file": tok})
    # several downloads: an expired URL, a cut transfer, plain ones
    emu.set_faults(storage_fault="expired", storage_fault_count=1)
    jobs = []
    for a in ("sqli", "xss", "lfi"):
        jobs.append(run_job(m, dict(FILTER, attacks=[a])))
        os.listdir(m.job(jobs[-1]))
        emu.set_faults(cut_downloads=1) if a == "sqli" else emu.set_faults()
    ours = len(storage_entries(emu))
    assert ours >= 5, storage_entries(emu)
    for job in jobs:
        assert_shows_csv(m, emu, job)
    api = [e for e in emu.log() if e.get("service") in ("waf", "hss")]
    assert api and all(e["auth"] == creds for e in api), {e["auth"] for e in api}
    st = storage_entries(emu)[:ours]
    for e in st:
        bad = [h for h in e["headers"] if h.lower() in CRED_HEADERS]
        assert bad == [], (bad, e)
        assert "refused_header" not in e, e
        assert e["auth"] == "none"
