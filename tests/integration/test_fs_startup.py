# Start-up: options, exit codes (1 usage, 2 credentials refused, 3 cache dir,
# 4 mount failed), --help, mount.fuse3 style arguments, endpoints.
import os
import subprocess

import pytest

from fshelpers import AK, HCX_BIN, PROJECT, SK, describe_rc, run_job


@pytest.fixture
def run(tmp_path, emu_shared):
    """run(opts: dict, env=None, mountpoint=None, args=None) -> (rc, stderr); fails if it
    mounted (and unmounts)."""
    mp = str(tmp_path / "mnt")
    os.makedirs(mp, exist_ok=True)
    home = str(tmp_path / "home")
    os.makedirs(home, exist_ok=True)

    def go(opts, env=None, mountpoint=None, args=None, expect_mount=False):
        o = ",".join(k if v is True else "%s=%s" % (k, v) for k, v in opts.items())
        argv = [HCX_BIN, "-f"] + (["-o", o] if o else []) + (args or []) + \
            ([mountpoint or mp] if mountpoint is not False else [])
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("HUAWEICLOUD_SDK_", "CLOUD_SDK_"))}
        e.update(HOME=home, CLOUD_SDK_AK=AK, CLOUD_SDK_SK=SK)
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        target = mountpoint or mp
        try:
            p = subprocess.run(argv, env=e, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=10)
        except subprocess.TimeoutExpired:
            mounted = target and os.path.ismount(target)
            if target:
                subprocess.run(["fusermount3", "-u", "-z", target], stderr=subprocess.DEVNULL)
            raise AssertionError("hcexportfs did not exit (mounted: %s)" % mounted)
        mounted = target and os.path.ismount(target)
        if mounted:
            subprocess.run(["fusermount3", "-u", "-z", target])
        out = (p.stdout + p.stderr).decode(errors="replace")
        for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer", SK):
            assert bad not in out, out
        assert not mounted, "it mounted (exit %s): %s" % (p.returncode, out)
        return p.returncode, out
    go.mountpoint = mp
    go.emu = emu_shared
    go.tmp = tmp_path
    return go


def base(run, **extra):
    o = {"endpoint": run.emu.url, "projects": PROJECT, "cache_dir": str(run.tmp / "cache")}
    o.update(extra)
    return o


def test_help_exits_0(run):
    rc, out = run({}, args=["--help"], mountpoint=False)
    assert rc == 0, out
    assert "endpoint=" in out and "poll_interval" in out


def test_version_exits_0(run):
    rc, out = run({}, args=["--version"], mountpoint=False)
    assert rc == 0, out


def test_credentials_file_readable_by_others_is_refused(run):
    cred = str(run.tmp / "cred.ini")
    with open(cred, "w") as f:
        f.write("[basic]\nak = %s\nsk = %s\n" % (AK, SK))
    os.chmod(cred, 0o644)
    rc, out = run(base(run, credentials=cred))
    assert rc == 2, "exit %s: %s" % (describe_rc(rc), out)
    assert "chmod" in out, out
    assert cred in out


def test_credentials_file_of_another_user_is_refused(run):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    cred = str(run.tmp / "cred.ini")
    with open(cred, "w") as f:
        f.write("[basic]\nak = %s\nsk = %s\n" % (AK, SK))
    os.chmod(cred, 0o600)
    os.chown(cred, 65534, 65534)
    rc, out = run(base(run, credentials=cred))
    assert rc == 2, "exit %s: %s" % (describe_rc(rc), out)


def test_missing_credentials_file_is_refused(run):
    rc, out = run(base(run, credentials=str(run.tmp / "nope.ini")))
    assert rc == 2, out


@pytest.mark.parametrize("opt", [{"poll_interval": "abc"}, {"poll_interval": "-1"},
                                 {"request_timeout": "soon"}, {"log_level": "loud"},
                                 {"cache_max": "lots"}, {"projects": "bad/id"},
                                 {"no_such_option": "1"}])
def test_bad_option_exits_1(run, opt):
    rc, out = run(base(run, **opt))
    assert rc == 1, "exit %s for %r: %s" % (describe_rc(rc), opt, out)
    assert out.strip(), "no message"


def test_no_endpoint_exits_1(run):
    o = base(run)
    del o["endpoint"]
    rc, out = run(o)
    assert rc == 1, out
    assert "endpoint" in out


def test_no_mountpoint_exits_1(run):
    rc, out = run(base(run), mountpoint=False)
    assert rc == 1, out


def test_unwritable_cache_dir_exits_3(run):
    f = run.tmp / "a-file"
    f.write_text("x")
    rc, out = run(base(run, cache_dir=str(f / "cache")))
    assert rc == 3, "exit %s: %s" % (describe_rc(rc), out)
    assert out.strip()


def test_cache_dir_in_use_exits_3(run, mount_factory, emu):
    m = mount_factory()
    rc, out = run(base(run, cache_dir=m.cache_dir))
    assert rc == 3, "a second mount on the same cache_dir: exit %s: %s" % (describe_rc(rc), out)
    assert os.listdir(m.exports()) == ["new"]


def test_missing_mountpoint_fails(run):
    rc, out = run(base(run), mountpoint=str(run.tmp / "does" / "not" / "exist"))
    assert rc in (1, 4), "exit %s: %s" % (describe_rc(rc), out)


def test_mount_fuse3_source_word_is_accepted(mount_factory, emu):
    """mount.fuse3 passes a source word before the mount point."""
    m = mount_factory(start=False)
    argv = m.argv
    m.argv = lambda: argv()[:-1] + ["hcexportfs", m.mountpoint]
    m.start()
    run_job(m)


def test_per_service_endpoints(mount_factory, emu):
    m = mount_factory(endpoint=False, start=False)
    m.opts.update(waf_endpoint=emu.url, hss_endpoint=emu.url, iam_endpoint=emu.url)
    m.start()
    job = run_job(m)
    assert "events.csv" in os.listdir(m.job(job))


def test_enterprise_project_id_on_every_call(mount_factory, emu):
    """The option goes where each call takes it, spelled as that call spells it
    (cloud-api.md §1): WAF's async-job as enterpriseProjectId; WAF's submit and
    list and storage take none.  (HSS: test_fs_waf_flow_requests.py.)"""
    m = mount_factory(opts={"enterprise_project_id": "all_granted_eps"})
    job = run_job(m)
    os.listdir(m.job(job))
    want = {"async_job": ("enterpriseProjectId", "all_granted_eps")}
    seen = set()
    for e in emu.log():
        api = e.get("api")
        seen.add(api)
        if api in want:
            key, value = want[api]
            assert e["query"].get(key) == value and "enterprise_project_id" not in e["query"], e
        elif api in ("submit_waf", "event_dump", "storage"):
            assert not any("nterprise" in k for k in e["query"]), e
        assert e["status"] < 400, e
    assert {"submit_waf", "async_job", "event_dump", "storage"} <= seen, seen


def test_default_cache_dir_under_home(mount_factory, emu):
    m = mount_factory(cache_dir="", start=False)
    m.start()
    run_job(m)
    assert os.path.isdir(os.path.join(m.home, ".cache", "hcexportfs"))
    m.cache_dir = os.path.join(m.home, ".cache", "hcexportfs")


def test_entry_times_follow_tz(mount_factory, emu):
    """zip stores local time; the process's TZ applies (CST-8: 8 h ahead of UTC)."""
    import calendar
    import io
    import zipfile
    m = mount_factory(env={"TZ": "CST-8"})
    job = run_job(m)
    os.listdir(m.job(job))
    with open(m.archive(job), "rb") as f:
        zi = zipfile.ZipFile(io.BytesIO(f.read())).getinfo("events.csv")
    want = calendar.timegm(zi.date_time + (0, 0, 0)) - 8 * 3600
    assert int(os.stat(os.path.join(m.job(job), "events.csv")).st_mtime) == want


def test_region_option_mounts_without_network(mount_factory, emu):
    m = mount_factory(endpoint=False, opts={"region": "cn-north-4"})
    assert sorted(os.listdir(m.mountpoint)) == [".stats", "projects"]
    assert os.listdir(m.exports()) == ["new"]


def test_bad_region_exits_1(run):
    o = base(run, region="cn/../x")
    del o["endpoint"]
    rc, out = run(o)
    assert rc == 1, out


def test_single_threaded_mount_works(mount_factory, emu):
    m = mount_factory(start=False)
    argv = m.argv
    m.argv = lambda: argv()[:1] + ["-s"] + argv()[1:]
    m.start()
    job = run_job(m)
    assert "events.csv" in os.listdir(m.job(job))
