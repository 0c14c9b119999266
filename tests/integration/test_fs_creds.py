# Credentials: the ways they are found, and secrets never leaking into the
# log, .job.json, the mount or the cache directory.
import errno
import json
import os
import time

import pytest

from fshelpers import (AK, DOMAIN, PASSWORD, SK, STATIC_TOKEN, USER, expect_errno, grep_tree,
                       read, run_job, write_private)


def assert_no_secret(m, secrets):
    for s in secrets:
        assert grep_tree(m.cache_dir, s) == [], "a secret is stored in the cache dir"
        for i in range(len(m.logs)):
            assert s not in m.read_log(i), "a secret is in the log"
        # every file of the mount (control files, archive entries, .stats)
        for dirpath, _, files in os.walk(m.mountpoint):
            for fn in files:
                p = os.path.join(dirpath, fn)
                if fn == "new":
                    continue
                assert s.encode() not in read(p, "rb"), "a secret is readable in %s" % p


def full_workflow(m):
    job = run_job(m)
    os.listdir(m.job(job))
    read(os.path.join(m.job(job), "events.csv"))
    info = json.loads(read(os.path.join(m.job(job), ".job.json")))
    read(m.path(".stats"))
    return job, info


def test_sk_never_leaks(mnt, emu):
    job, info = full_workflow(mnt)
    assert SK not in json.dumps(info)
    assert_no_secret(mnt, [SK])
    assert os.path.exists(os.path.join(mnt.cache_dir, "CACHEDIR.TAG"))
    assert read(os.path.join(mnt.cache_dir, "CACHEDIR.TAG")).startswith(
        "Signature: 8a477f597d28d172789f06886806bc55")


def test_credentials_file_aksk(mount_factory, emu, tmp_path):
    cred = write_private(tmp_path / "cred.ini",
                         "[basic]\nak = %s\nsk = %s\n" % (AK, SK))
    m = mount_factory(ak=None, sk=None, opts={"credentials": cred})
    full_workflow(m)
    assert all(e["auth"] == "aksk" for e in emu.calls("submit"))
    assert_no_secret(m, [SK])


def test_credentials_file_password_login(mount_factory, emu, tmp_path):
    cred = write_private(tmp_path / "cred.ini", "[basic]\nuser = %s\npassword = %s\ndomain = %s\n"
                         % (USER, PASSWORD, DOMAIN))
    m = mount_factory(ak=None, sk=None, opts={"credentials": cred})
    full_workflow(m)
    assert emu.calls("token"), "no IAM token was requested"
    assert all(e["auth"] == "token" for e in emu.calls("submit") + emu.calls("query"))
    tokens = json.load(open(os.path.join(emu.state_dir, "tokens.json")))
    assert tokens
    assert_no_secret(m, [PASSWORD] + list(tokens))


def test_token_file(mount_factory, emu, tmp_path):
    tok = write_private(tmp_path / "token", STATIC_TOKEN + "\n")
    m = mount_factory(ak=None, sk=None, opts={"token_file": tok})
    full_workflow(m)
    assert all(e["auth"] == "token" for e in emu.calls("submit"))
    assert_no_secret(m, [STATIC_TOKEN])


def test_profile_in_home(mount_factory, emu, tmp_path):
    m = mount_factory(ak=None, sk=None, start=False)
    os.makedirs(os.path.join(m.home, ".huaweicloud"), exist_ok=True)
    write_private(os.path.join(m.home, ".huaweicloud", "credentials"),
                  "[basic]\nak = %s\nsk = %s\n" % (AK, SK))
    m.start()
    full_workflow(m)
    assert_no_secret(m, [SK])


def test_credentials_file_from_env_variable(mount_factory, emu, tmp_path):
    cred = write_private(tmp_path / "profile.ini", "[basic]\nak = %s\nsk = %s\n" % (AK, SK))
    m = mount_factory(ak=None, sk=None, env={"HUAWEICLOUD_SDK_CREDENTIALS_FILE": cred})
    full_workflow(m)
    assert_no_secret(m, [SK])


def test_huaweicloud_env_names_win(mount_factory, emu):
    m = mount_factory(sk="NotTheRightSecret000000000000000000000000",
                      env={"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK})
    full_workflow(m)


def assert_submit_refused(m):
    """A filter written to a fresh descriptor of `new` fails with EACCES."""
    fd = os.open(m.new(), os.O_RDWR)
    try:
        expect_errno(errno.EACCES, os.write, fd, b'{"recent":"today","dump_columns":["id"]}')
    finally:
        os.close(fd)


def test_no_credentials_still_mounts(mount_factory, emu):
    m = mount_factory(ak=None, sk=None)
    assert os.listdir(m.exports()) == ["new"]
    assert_submit_refused(m)  # no credentials


def test_token_file_is_reread_when_it_changes(mount_factory, emu, tmp_path):
    tok = write_private(tmp_path / "token", "not-a-valid-token-000000\n")
    m = mount_factory(ak=None, sk=None, opts={"token_file": tok})
    assert_submit_refused(m)  # a bad token
    write_private(tok, STATIC_TOKEN + "\n")
    later = time.time() + 5
    os.utime(tok, (later, later))
    full_workflow(m)
    assert_no_secret(m, [STATIC_TOKEN])


@pytest.mark.slow
def test_iam_token_is_renewed_before_it_expires(mount_factory, emu, tmp_path):
    emu.config(token_ttl=3)
    cred = write_private(tmp_path / "cred.ini", "[basic]\nuser = %s\npassword = %s\ndomain = %s\n"
                         % (USER, PASSWORD, DOMAIN))
    m = mount_factory(ak=None, sk=None, opts={"credentials": cred})
    full_workflow(m)
    time.sleep(3.2)  # the first token has expired by now
    full_workflow(m)
    assert len([e for e in emu.calls("token") if e["status"] == 201]) >= 2, emu.calls("token")
    refused = [e for e in emu.log() if e["call"] in ("submit", "query", "download")
               and e["status"] == 401]
    assert refused == [], "calls were made with an expired token: %r" % refused
