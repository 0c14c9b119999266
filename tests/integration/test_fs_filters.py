# Filters are checked before anything is sent: EINVAL, nothing submitted,
# "error: <why>" read back; incomplete input fails close().
import errno
import os
import shlex

import pytest

from fshelpers import read, sh, submits, write_filter

BAD = {
    "invalid-json": '{"recent": today, "dump_columns": ["id"]}',
    "invalid-json-trailing-comma": '{"recent": "today", "dump_columns": ["id"],}',
    "missing-recent": '{"dump_columns": ["id"]}',
    "missing-dump-columns": '{"recent": "today"}',
    "bad-recent": '{"recent": "2days", "dump_columns": ["id"]}',
    "recent-not-string": '{"recent": 3, "dump_columns": ["id"]}',
    "recent-null": '{"recent": null, "dump_columns": ["id"]}',
    "unknown-field": '{"recent": "today", "dump_columns": ["id"], "colour": ["red"]}',
    "empty-column": '{"recent": "today", "dump_columns": ["id", ""]}',
    "non-string-column": '{"recent": "today", "dump_columns": ["id", 3]}',
    "non-string-array-element": '{"recent": "today", "dump_columns": ["id"], "attacks": ["xss", 1]}',
    "null-array-field": '{"recent": "today", "dump_columns": ["id"], "attacks": null}',
    "array-field-as-string": '{"recent": "today", "dump_columns": ["id"], "sips": "1.2.3.4"}',
    "string-field-as-array": '{"recent": "today", "dump_columns": ["id"], "sip": ["1.2.3.4"]}',
    "dump-columns-not-array": '{"recent": "today", "dump_columns": "id"}',
    "empty-dump-columns": '{"recent": "today", "dump_columns": []}',
    "non-object-array": '["recent", "today"]',
    "non-object-string": '"today"',
    "non-object-null": 'null',
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_filter_fails_write_with_einval(mnt, emu, name):
    err, reply = write_filter(mnt, (BAD[name] + "\n").encode())
    assert err == errno.EINVAL, (name, err)
    assert reply.startswith("error: ") and reply.endswith("\n"), (name, reply)
    assert len(reply.strip()) > len("error:"), "no reason given: %r" % reply
    assert "\n" not in reply[:-1], "reply must be one line: %r" % reply
    assert submits(emu) == [], "a bad filter reached the cloud"
    assert os.listdir(mnt.exports()) == ["new"]


@pytest.mark.parametrize("name", ["invalid-json", "empty-column", "empty-dump-columns",
                                  "null-array-field", "non-object-array"])
def test_bad_filter_echo_exits_nonzero(mnt, emu, name):
    r = sh("echo %s > %s" % (shlex.quote(BAD[name]), shlex.quote(mnt.new())), check=False)
    assert r.returncode != 0, r
    assert submits(emu) == []
    assert os.listdir(mnt.exports()) == ["new"]


def test_reason_names_the_problem(mnt, emu):
    fd = os.open(mnt.new(), os.O_RDWR)
    try:
        with pytest.raises(OSError):
            os.write(fd, b'{"recent": "today", "dump_columns": ["id", "colour"]}')
        reply = os.read(fd, 4096).decode()
    finally:
        os.close(fd)
    assert "colour" in reply, reply


@pytest.mark.parametrize("partial", ['{"recent":', '{"recent": "today", "dump_columns": ["id"',
                                     '{', '  {"recent"'])
def test_incomplete_input_fails_close_with_einval(mnt, emu, partial):
    fd = os.open(mnt.new(), os.O_WRONLY)
    assert os.write(fd, partial.encode()) == len(partial)
    with pytest.raises(OSError) as ei:
        os.close(fd)
    assert ei.value.errno == errno.EINVAL, ei.value
    assert submits(emu) == []
    assert os.listdir(mnt.exports()) == ["new"]


def test_blank_input_submits_nothing_and_closes_cleanly(mnt, emu):
    fd = os.open(mnt.new(), os.O_WRONLY)
    os.write(fd, b"  \n\t\n")
    os.close(fd)
    assert submits(emu) == []


def test_empty_arrays_mean_no_restriction(mnt, emu):
    """Empty optional arrays are valid (they mean no restriction) and get submitted."""
    data = b'{"recent": "today", "dump_columns": ["id"], "attacks": [], "hosts": []}\n'
    fd = os.open(mnt.new(), os.O_RDWR)
    try:
        os.write(fd, data)
        reply = os.read(fd, 100).decode()
    finally:
        os.close(fd)
    assert len(submits(emu)) == 1, reply


def test_mount_keeps_working_after_bad_filters(mnt, emu):
    for name in ("invalid-json", "unknown-field"):
        sh("echo %s > %s" % (shlex.quote(BAD[name]), shlex.quote(mnt.new())), check=False)
    sh("echo %s > %s" % (shlex.quote('{"recent":"today","dump_columns":["id"]}'),
                         shlex.quote(mnt.new())))
    assert len(submits(emu)) == 1
    assert len(os.listdir(mnt.exports())) == 2
    assert read(mnt.path(".stats"))
