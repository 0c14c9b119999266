# Cloud errors map to errno; the POST is retried only when the cloud cannot
# have acted on it (429, connection failed before sending), never after a 5xx
# or a timeout.
import errno
import io
import json
import os
import shlex
import time
import zipfile

import pytest

from fshelpers import (FILTER, JOB_RE, PROJECT, emuharness, read, run_job, sh,
                       submits, write_filter)

WRONG_SK = "WrongSecretKey0000000000000000000000000x"



def test_wrong_aksk_gives_eacces_and_mount_keeps_working(mount_factory, emu):
    good = mount_factory("good")
    job = run_job(good)
    os.listdir(good.job(job))
    good.stop()
    emu.clear_log()
    m = mount_factory("bad", cache_dir=good.cache_dir, sk=WRONG_SK)
    err, reply = write_filter(m)
    assert err == errno.EACCES, (err, reply)
    assert reply.startswith("error: "), reply
    assert WRONG_SK not in reply
    subs = submits(emu)
    assert subs and all(e["status"] in (401, 403) for e in subs), subs
    # a 401 may be retried once after re-authenticating (the gateway refused it, so
    # nothing was created), but no more than that
    assert len(subs) <= 2, "a refused signature must not be retried in a loop: %r" % subs
    # the tree and the cached job stay usable
    assert sorted(os.listdir(m.mountpoint)) == [".stats", "projects"]
    assert sorted(os.listdir(m.exports())) == sorted(["new", job])
    assert json.loads(read(m.path(".stats")))
    assert read(os.path.join(m.job(job), "status")) == "success\n"
    assert read(os.path.join(m.job(job), "events.csv")).startswith("id,time,attack\n")
    assert read(m.archive(job), "rb")[:2] == b"PK"
    r = sh("echo %s > %s" % (shlex.quote(json.dumps(FILTER)), shlex.quote(m.new())), check=False)
    assert r.returncode != 0
    assert sorted(os.listdir(m.exports())) == sorted(["new", job])
    assert "401" in m.read_log() or "APIGW" in m.read_log() or "denied" in m.read_log().lower() \
        or "refused" in m.read_log().lower(), "no log line about the refused call"


def test_429_on_submit_is_retried_and_creates_one_job(mnt, emu):
    # every 2nd submit answers 429: the direct call below takes the 1st slot,
    # so the filesystem's first attempt is throttled and its retry succeeds.
    emu.set_faults(every_nth=2, nth_status=429, nth_calls=["submit"])
    emuharness.submit(emu, FILTER)
    jobs_before = {j["job_id"] for j in emu.jobs()}
    emu.clear_log()
    err, reply = write_filter(mnt)
    assert err is None, (err, reply)
    job = reply.strip()
    assert JOB_RE.match(job), reply
    subs = submits(emu)
    assert [e["status"] for e in subs] == [429, 200], subs
    created = {j["job_id"] for j in emu.jobs()} - jobs_before
    assert created == {job}
    assert [n for n in os.listdir(mnt.exports()) if n != "new"] == [job]
    st = json.loads(read(mnt.path(".stats")))
    assert st["retries"], st


@pytest.mark.slow
def test_429_always_gives_eagain_after_bounded_retries(mnt, emu):
    emu.set_faults(every_nth=1, nth_status=429, nth_calls=["submit"], retry_after=0)
    t0 = time.monotonic()
    err, reply = write_filter(mnt)
    took = time.monotonic() - t0
    assert err == errno.EAGAIN, (err, reply)
    assert reply.startswith("error: ")
    n = len(submits(emu))
    assert 2 <= n <= 10, "retries must be bounded (and happen): %d submits" % n
    assert took < 60
    assert emu.jobs() == [] or all(j["job_id"] not in os.listdir(mnt.exports())
                                   for j in emu.jobs())
    assert os.listdir(mnt.exports()) == ["new"]


@pytest.mark.parametrize("commit", [False, True], ids=["rejected", "acted-then-503"])
def test_503_on_submit_is_eio_and_never_retried(mnt, emu, commit):
    emu.set_faults(every_nth=1, nth_status=503, nth_calls=["submit"], nth_commit=commit)
    err, reply = write_filter(mnt)
    assert err == errno.EIO, (err, reply)
    assert reply.startswith("error: "), reply
    time.sleep(0.5)  # a late retry would show up here
    posts = [e for e in emu.log() if e["method"] == "POST" and e["call"] == "submit"]
    assert len(posts) == 1, "a 5xx submit must never be retried: %r" % posts
    assert os.listdir(mnt.exports()) == ["new"]


@pytest.mark.slow
def test_unanswered_submit_times_out_and_is_not_retried(mount_factory, emu):
    m = mount_factory(opts={"request_timeout": 1})
    emu.set_faults(hang_calls=["submit"])
    t0 = time.monotonic()
    err, reply = write_filter(m)
    took = time.monotonic() - t0
    emu.set_faults()
    assert err == errno.ETIMEDOUT, (err, reply)
    assert took < 10, took
    time.sleep(0.5)
    assert len(submits(emu)) == 1, submits(emu)
    assert os.listdir(m.exports()) == ["new"]


def test_query_errors_are_retried_and_job_completes(mnt, emu):
    """A 503 on a GET (query) is safe to retry: the job still ends up success."""
    emu.set_faults(every_nth=2, nth_status=503, nth_calls=["query", "download"])
    job = run_job(mnt)
    assert "events.csv" in os.listdir(mnt.job(job))
    assert read(os.path.join(mnt.job(job), "events.csv")).startswith("id,time,attack\n")


def test_connection_reset_before_reply_on_download_recovers(mnt, emu):
    emu.set_faults(cut_downloads=1)
    job = run_job(mnt)
    files = os.listdir(mnt.job(job))
    assert "events.csv" in files, files
    z = read(mnt.archive(job), "rb")
    assert z == emuharness.download(emu, json.loads(read(os.path.join(
        mnt.job(job), ".job.json")))["file_id"], PROJECT)


def test_corrupt_download_is_detected_and_fetched_again(mnt, emu):
    """A download whose bytes were damaged in transit is not served: the archive view and
    archives/<job>.zip equal what the cloud serves."""
    emu.config(rows=3000)
    emu.set_faults(corrupt_downloads=1)
    job = run_job(mnt)
    names = os.listdir(mnt.job(job))
    assert "events.csv" in names, names
    served = emuharness.download(emu, json.loads(read(os.path.join(
        mnt.job(job), ".job.json")))["file_id"], PROJECT)
    z = zipfile.ZipFile(io.BytesIO(served))
    try:
        got = read(os.path.join(mnt.job(job), "events.csv"), "rb")
    except OSError as e:
        raise AssertionError("events.csv of a re-fetchable job fails: %s" % e)
    assert got == z.read("events.csv"), "events.csv reads wrong bytes (corruption not detected)"
    assert read(mnt.archive(job), "rb") == served, "archives/<job>.zip is the damaged download"
    assert len(emu.calls("download")) >= 3  # the bad one, the good one, ours


def test_connection_reset_after_submit_was_sent_is_not_retried(mnt, emu):
    """The emulator reads the POST, then resets the connection: the cloud may have acted,
    so the submit fails and is not sent again."""
    emu.set_faults(reset_every_nth=1, reset_calls=["submit"])
    err, reply = write_filter(mnt)
    assert err is not None, reply
    assert reply.startswith("error: "), reply
    time.sleep(0.5)
    assert len(submits(emu)) == 1, submits(emu)
    assert os.listdir(mnt.exports()) == ["new"]


@pytest.mark.slow
def test_cloud_unreachable_submit_fails_and_mount_stays_usable(mount_factory, private_emu):
    m = mount_factory(url=private_emu.url)
    job = run_job(m)
    os.listdir(m.job(job))
    private_emu.stop()
    t0 = time.monotonic()
    err, reply = write_filter(m)
    assert err is not None and reply.startswith("error: "), (err, reply)
    assert time.monotonic() - t0 < 35
    assert sorted(os.listdir(m.exports())) == sorted(["new", job])
    assert read(os.path.join(m.job(job), "events.csv")).startswith("id,time,attack\n")
