# Submitting through exports/new: shells, cp, tee, dd, >>, split writes,
# read-back on the same descriptor, read-only opens, concurrent writers.
import json
import os
import shlex
import threading

import pytest

from fshelpers import FILTER, JOB_RE, filter_bytes, read, sh, bash, submits, write_chunks

# Escapes, raw multi-byte UTF-8 and nested arrays, so that splits land inside
# strings, escapes, UTF-8 sequences and numbers-free structure alike.
SPLIT_FILTER = ('{"recent": "1week", "dump_columns": ["id","attack"],'
                ' "url": "/l\\u00f6g\\"in\u00e9", "nattacks": ["xss"]}\n').encode()


def jobs_listed(mnt):
    return sorted(n for n in os.listdir(mnt.exports()) if n != "new")


@pytest.fixture
def filter_file(tmp_path):
    p = tmp_path / "filter.json"
    p.write_bytes(filter_bytes())
    return str(p)


def assert_one_submit(emu, mnt, before_jobs):
    subs = submits(emu)
    assert len(subs) == 1, "expected exactly one submit call, log: %r" % subs
    assert subs[0]["status"] == 200, subs
    new = sorted(set(jobs_listed(mnt)) - set(before_jobs))
    assert len(new) == 1, "expected one new job directory, got %r" % new
    assert new[0] == subs[0]["task_id"]
    return new[0]


SHELL_WAYS = {
    "echo": "echo {filter} > {new}",
    "echo-append": "echo {filter} >> {new}",
    "printf-no-newline": "printf '%s' {filter} > {new}",
    "cp": "cp {file} {new}",
    "tee": "tee {new} < {file} > /dev/null",
    "tee-append": "tee -a {new} < {file} > /dev/null",
    "dd": "dd if={file} of={new} bs=7 status=none",
    "dd-one-block": "dd if={file} of={new} status=none",
    "cat-redirect": "cat {file} > {new}",
}


@pytest.mark.parametrize("way", sorted(SHELL_WAYS))
def test_shell_submits_exactly_one_job(mnt, emu, filter_file, way):
    before = jobs_listed(mnt)
    cmd = SHELL_WAYS[way].format(filter=shlex.quote(json.dumps(FILTER)),
                                 new=shlex.quote(mnt.new()), file=shlex.quote(filter_file))
    sh(cmd)
    job = assert_one_submit(emu, mnt, before)
    assert read(os.path.join(mnt.job(job), "status")) in ("running\n", "success\n")
    assert json.loads(read(os.path.join(mnt.job(job), ".job.json")))["filter"] == FILTER


@pytest.mark.slow
def test_split_writes_at_every_byte_position(mnt, emu):
    """Two write(2) calls split at every position (and three at a few): one job each."""
    data = SPLIT_FILTER
    expected = json.loads(data.decode())
    splits = [(k,) for k in range(1, len(data))]
    splits += [(1, 2), (5, 40), (len(data) - 3, len(data) - 1)]
    seen = set()
    for cut in splits:
        emu.clear_log()
        bounds = (0,) + cut + (len(data),)
        fd = os.open(mnt.new(), os.O_WRONLY)
        try:
            for a, b in zip(bounds, bounds[1:]):
                assert os.write(fd, data[a:b]) == b - a
        finally:
            os.close(fd)
        subs = submits(emu)
        assert len(subs) == 1, "split at %r: %d submits" % (cut, len(subs))
        job = subs[0]["task_id"]
        assert job not in seen
        seen.add(job)
        got = json.loads(read(os.path.join(mnt.job(job), ".job.json")))["filter"]
        assert got == expected, "split at %r: filter %r" % (cut, got)
    assert len(seen) == len(splits)


def test_read_back_on_same_descriptor(mnt, emu):
    fd = os.open(mnt.new(), os.O_RDWR)
    try:
        os.write(fd, filter_bytes())
        reply = os.read(fd, 100)
    finally:
        os.close(fd)
    assert JOB_RE.match(reply.decode().rstrip("\n")) and reply.endswith(b"\n"), reply
    job = reply.decode().strip()
    assert [e["task_id"] for e in submits(emu)] == [job]
    assert job in os.listdir(mnt.exports())


@pytest.mark.parametrize("where", ["pread0", "pread1", "seek-end", "seek-far", "split-read"])
def test_read_back_whatever_the_offset(mnt, emu, where):
    data = filter_bytes()
    fd = os.open(mnt.new(), os.O_RDWR)
    try:
        os.write(fd, data[:10])
        os.write(fd, data[10:])
        if where == "pread0":
            reply = os.pread(fd, 100, 0)
        elif where == "pread1":
            reply = os.pread(fd, 100, 1)
        elif where == "seek-end":
            os.lseek(fd, 0, os.SEEK_END)
            reply = os.read(fd, 100)
        elif where == "seek-far":
            os.lseek(fd, 1 << 20, os.SEEK_SET)
            reply = os.read(fd, 100)
        else:
            reply = os.read(fd, 5) + os.read(fd, 100)
    finally:
        os.close(fd)
    assert reply.endswith(b"\n") and JOB_RE.match(reply[:-1].decode()), (where, reply)
    assert [e["task_id"] for e in submits(emu)] == [reply[:-1].decode()]


def test_bash_exec_idiom_from_the_spec(mnt, emu):
    script = r'''
set -e
filter='{"recent":"today","dump_columns":["id","time","attack"]}'
exec 3<>"$NEW"
printf '%s' "$filter" >&3
read -r job <&3
exec 3>&-
printf '%s\n' "$job"
'''
    r = bash(script, env=dict(os.environ, NEW=mnt.new()))
    job = r.stdout.decode().strip()
    assert JOB_RE.match(job), r
    assert [e["task_id"] for e in submits(emu)] == [job]
    assert job in os.listdir(mnt.exports())


def test_open_read_only_reads_empty(mnt, emu):
    assert read(mnt.new(), "rb") == b""
    fd = os.open(mnt.new(), os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b""
        assert os.pread(fd, 100, 0) == b""
    finally:
        os.close(fd)
    sh("cat %s > /dev/null" % shlex.quote(mnt.new()))
    assert submits(emu) == []
    assert os.listdir(mnt.exports()) == ["new"]


def test_open_and_close_without_writing_submits_nothing(mnt, emu):
    fd = os.open(mnt.new(), os.O_WRONLY)
    os.close(fd)
    sh(": > %s" % shlex.quote(mnt.new()))
    sh("touch %s" % shlex.quote(mnt.new()))
    assert submits(emu) == []
    assert os.listdir(mnt.exports()) == ["new"]


def test_concurrent_writers_never_mix(mnt, emu):
    n = 8
    data = filter_bytes()
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def worker(i):
        try:
            fd = os.open(mnt.new(), os.O_RDWR)
            try:
                barrier.wait(10)
                os.write(fd, data[: 5 + i])   # every writer has a partial filter open ...
                barrier.wait(10)
                os.write(fd, data[5 + i:])     # ... then all complete theirs at once
                results[i] = os.read(fd, 100).decode()
            finally:
                os.close(fd)
        except Exception as e:  # reported below
            errors.append((i, e))
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    ids = [r.strip() for r in results]
    assert all(JOB_RE.match(j) for j in ids), results
    assert len(set(ids)) == n, ids
    subs = submits(emu)
    assert len(subs) == n, subs
    assert sorted(e["task_id"] for e in subs) == sorted(ids)
    listed = set(os.listdir(mnt.exports()))
    assert set(ids) <= listed


def test_second_filter_on_same_descriptor_is_refused(mnt, emu):
    """Each open is one submission: a second JSON text on the same descriptor is not
    submitted (only trailing blanks may follow the first)."""
    err, done, reply = write_chunks(mnt, [filter_bytes(), filter_bytes()])
    assert err is not None, (err, done)
    assert JOB_RE.match(reply.strip()), reply
    assert len(submits(emu)) == 1
