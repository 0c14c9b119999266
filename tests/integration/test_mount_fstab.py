# mount(8) and fstab: `mount -t fuse.hcexportfs hcexportfs MNT -o ...` and an
# fstab line with noauto, _netdev, allow_other and hcexportfs's own options,
# mounted with `mount -T FSTAB MNT` and unmounted with `umount`.
#
# mount(8) runs mount.fuse3 with PATH removed from the environment, and
# mount.fuse3's /bin/sh then looks the program up in its default PATH
# (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin): putting the
# build directory first on PATH does not work.  So these tests run in a
# private mount namespace of their own in which /usr/local/sbin is a
# directory holding only an `hcexportfs` link to the binary under test; the
# rest of the system sees neither that nor the test mounts.  The last test
# uses the `fuse` type with the program's absolute path in the first field,
# which needs no PATH, in the ordinary namespace.
#
# Without -f the filesystem daemonizes (its log goes to syslog); ASan
# reports go to files (ASAN_OPTIONS log_path) that must not appear.
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from fshelpers import AK, HCX_BIN, PROJECT, SK, _die_with_parent, filter_bytes

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def need_tools():
    for tool in ("mount", "umount", "unshare", "nsenter", "setpriv", "mount.fuse3"):
        if not shutil.which(tool):
            pytest.skip("%s is not installed" % tool)
    if os.geteuid() != 0:
        pytest.skip("mount(8) with fstab options needs root")


class Namespace:
    """A private mount namespace kept alive by a sleeping holder process."""

    def __init__(self, sbin):
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount --bind "$0" /usr/local/sbin && echo ready && exec sleep 900', sbin],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline()
        if line != b"ready\n":
            self.proc.kill()
            self.proc.wait()
            err = self.proc.stderr.read().decode(errors="replace")
            pytest.skip("cannot make a private mount namespace: %s" % err.strip())

    def run(self, argv, env=None, check=True, timeout=60):
        r = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "--"] + argv,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=timeout)
        if check:
            assert r.returncode == 0, (argv, r.returncode, r.stdout, r.stderr)
        return r

    def mounts(self):
        return self.run(["cat", "/proc/self/mounts"]).stdout.decode()

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def mount_line(mounts, mnt):
    for line in mounts.splitlines():
        f = line.split()
        if len(f) >= 4 and f[1] == mnt:
            return f
    return None


def daemon_pids(mnt):
    """Pids of hcexportfs processes serving mnt (argv names the mount point)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"hcexportfs" and mnt.encode() in argv:
            pids.append(int(d))
    return pids


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def wait_gone(mnt, timeout=15):
    deadline = time.monotonic() + timeout
    while daemon_pids(mnt):
        assert time.monotonic() < deadline, "hcexportfs on %s did not exit after umount" % mnt
        time.sleep(0.05)


@pytest.fixture
def world(tmp_path, emu):
    """Mount point reachable by other users, credentials file, env, namespace."""
    need_tools()
    top = tempfile.mkdtemp(prefix="hcx-fstab-", dir="/tmp")
    os.chmod(top, 0o755)  # nobody must reach the mount point (allow_other test)
    w = type("World", (), {})()
    w.emu = emu
    w.mnt = os.path.join(top, "mnt")
    os.mkdir(w.mnt)
    w.cache = str(tmp_path / "cache")
    w.creds = str(tmp_path / "credentials")
    with open(w.creds, "w") as f:
        f.write("[basic]\nak = %s\nsk = %s\n" % (AK, SK))
    os.chmod(w.creds, 0o600)
    w.asan_dir = tmp_path / "asan"
    w.asan_dir.mkdir()
    # No SDK variables: the credentials come from the option, as at boot.
    w.env = {k: v for k, v in os.environ.items()
             if not k.startswith(("HUAWEICLOUD_SDK_", "CLOUD_SDK_"))}
    w.env["ASAN_OPTIONS"] = "log_path=%s/asan:detect_leaks=1" % w.asan_dir
    w.env["TZ"] = "UTC"
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    os.symlink(os.path.abspath(HCX_BIN), str(sbin / "hcexportfs"))
    w.sbin = str(sbin)
    w.ns = None
    yield w
    if w.ns is not None:
        w.ns.run(["umount", "-l", w.mnt], check=False)
        w.ns.close()
    if os.path.ismount(w.mnt):
        subprocess.run(["fusermount3", "-u", "-z", w.mnt])
    try:
        wait_gone(w.mnt)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    reports = [p.name for p in w.asan_dir.iterdir()]
    assert not reports, "sanitizer reports: %s\n%s" % (
        reports, "".join((w.asan_dir / p).read_text() for p in reports)[:6000])


def own_options(w, **extra):
    o = {"endpoint": w.emu.url, "projects": PROJECT, "cache_dir": w.cache,
         "credentials": w.creds, "poll_interval": "0.2", "log_level": "debug"}
    o.update(extra)
    return ",".join("%s=%s" % kv for kv in o.items())


def submit_and_wait(w, run):
    """Through the mount, as a shell script would: submit, wait, list."""
    exports = os.path.join(w.mnt, "projects", PROJECT, "exports")
    script = ('set -e; exec 3<>"$1/new"; printf "%s" "$2" >&3; read -r job <&3; exec 3>&-; '
              'cat "$1/$job/.wait"; ls "$1/$job"')
    r = run(["sh", "-c", script, "sh", exports, filter_bytes(newline=False).decode()])
    lines = r.stdout.decode().split()
    assert lines[0] == "success", r.stdout
    assert "events.csv" in lines and "status" in lines, r.stdout
    assert len(w.emu.calls("submit")) == 1


def test_fstab_line_with_noauto_netdev_allow_other(world):
    w = world
    w.ns = Namespace(w.sbin)
    fstab = os.path.join(os.path.dirname(w.cache), "fstab")
    with open(fstab, "w") as f:
        f.write("# test fstab\nhcexportfs  %s  fuse.hcexportfs  noauto,_netdev,allow_other,%s"
                "  0  0\n" % (w.mnt, own_options(w)))
    r = w.ns.run(["mount", "-T", fstab, w.mnt], env=w.env, check=False)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    f = mount_line(w.ns.mounts(), w.mnt)
    assert f is not None and f[0] == "hcexportfs" and f[2] == "fuse.hcexportfs", f
    assert "allow_other" in f[3].split(","), f
    # Invisible outside the namespace.
    assert not os.path.ismount(w.mnt)

    pids = daemon_pids(w.mnt)
    assert len(pids) == 1, pids
    argv = cmdline(pids[0])
    # mount.fuse3 passes the source word first; noauto and _netdev never reach us.
    assert argv[1:3] == ["hcexportfs", w.mnt], argv
    opts = argv[argv.index("-o") + 1].split(",")
    assert "noauto" not in opts and "_netdev" not in opts, argv
    assert "allow_other" in opts and "endpoint=" + w.emu.url in opts, argv
    assert "-f" not in argv  # daemonized: mount(8) returned while it runs

    submit_and_wait(w, w.ns.run)
    # allow_other: another user (nobody) reads the tree; as root no
    # user_allow_other in /etc/fuse.conf is needed.
    r = w.ns.run(NOBODY + ["ls", os.path.join(w.mnt, "projects")])
    assert r.stdout.decode().split() == [PROJECT]
    r = w.ns.run(NOBODY + ["sh", "-c", 'cat "$1"/projects/*/exports/*/status', "sh", w.mnt])
    assert r.stdout == b"success\n"

    r = w.ns.run(["umount", w.mnt], check=False)
    assert r.returncode == 0, r.stderr
    assert mount_line(w.ns.mounts(), w.mnt) is None
    wait_gone(w.mnt)
    # The job is remembered across the umount (journal in cache_dir).
    jobs = os.listdir(os.path.join(w.cache, "journal", "jobs", PROJECT))
    assert len(jobs) == 1 and jobs[0].endswith(".json"), jobs


def test_mount_t_without_allow_other_keeps_others_out(world):
    w = world
    w.ns = Namespace(w.sbin)
    r = w.ns.run(["mount", "-t", "fuse.hcexportfs", "hcexportfs", w.mnt, "-o", own_options(w)],
                 env=w.env, check=False)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    f = mount_line(w.ns.mounts(), w.mnt)
    assert f is not None and "allow_other" not in f[3].split(","), f
    assert w.ns.run(["ls", os.path.join(w.mnt, "projects")]).stdout.decode().split() == [PROJECT]
    r = w.ns.run(NOBODY + ["ls", os.path.join(w.mnt, "projects")], check=False)
    assert r.returncode != 0 and b"Permission denied" in r.stderr, r
    r = w.ns.run(["umount", w.mnt], check=False)
    assert r.returncode == 0, r.stderr
    wait_gone(w.mnt)


def test_mount_refuses_a_bad_option_and_mounts_nothing(world):
    w = world
    w.ns = Namespace(w.sbin)
    r = w.ns.run(["mount", "-t", "fuse.hcexportfs", "hcexportfs", w.mnt, "-o",
                  own_options(w, log_level="loud")], env=w.env, check=False)
    assert r.returncode != 0
    assert b"log_level=loud" in r.stderr, r.stderr  # the reason reaches the user
    assert mount_line(w.ns.mounts(), w.mnt) is None
    assert daemon_pids(w.mnt) == []


def test_fstab_fuse_type_with_absolute_program_path(world):
    """`/path/to/hcexportfs#hcexportfs MNT fuse ...`: for an install outside
    mount.fuse3's PATH; no namespace needed."""
    w = world
    fstab = os.path.join(os.path.dirname(w.cache), "fstab")
    with open(fstab, "w") as f:
        f.write("%s#hcexportfs %s fuse noauto,_netdev,nofail,%s 0 0\n"
                % (os.path.abspath(HCX_BIN), w.mnt, own_options(w)))
    r = subprocess.run(["mount", "-T", fstab, w.mnt], env=w.env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    try:
        assert os.path.ismount(w.mnt)
        with open("/proc/self/mounts") as m:
            f = mount_line(m.read(), w.mnt)
        assert f[2] == "fuse.hcexportfs" and f[0] == "hcexportfs", f  # subtype from the program name
        submit_and_wait(w, lambda argv: subprocess.run(argv, stdout=subprocess.PIPE,
                                                       stderr=subprocess.PIPE, check=True,
                                                       timeout=60))
    finally:
        r = subprocess.run(["umount", w.mnt], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert not os.path.ismount(w.mnt)
    wait_gone(w.mnt)
    jobs = os.listdir(os.path.join(w.cache, "journal", "jobs", PROJECT))
    assert len(jobs) == 1 and re.match(r"^[0-9a-f]{32}\.json$", jobs[0]), jobs
