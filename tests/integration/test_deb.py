# The Debian packages (debian/): built with `dpkg-buildpackage -us -uc -b`
# from a clean copy of the tree (the tracked files as they are in the work
# tree, exported with git into a temporary directory: the build leaves the
# tree as it was), checked with lintian, installed on this machine with
# `apt-get install ./x.deb`, used (the installed binary mounted through
# `mount -t fuse.hcexportfs`, i.e. mount.fuse3 finding /usr/bin/hcexportfs
# in its own PATH, against the installed emulator), then purged: nothing the
# packages installed may remain but directories other packages own too.
#
# The module needs root (packages, mount) and dpkg-buildpackage, debhelper,
# dh-python and lintian (contrib/install-deps installs them); without them,
# or when a hcexportfs package is already installed here (it would be
# replaced, then purged), it is skipped with the reason.  Whatever happens,
# the mount is unmounted, the emulator stopped and the packages purged.
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from fshelpers import AK, PROJECT, REPO, SK, emu_archive, walk_files, zip_entries
from test_install import InstalledEmulator, clean_env
from test_mount_fstab import daemon_pids, mount_line, own_options, submit_and_wait, wait_gone

PACKAGES = ("hcexportfs", "hcexportfs-emulator")
TOOLS = ("git", "dpkg-buildpackage", "dh", "dh_python3", "lintian", "apt-get", "dpkg-query",
         "mount", "umount", "mount.fuse3", "fusermount3")
APT = ["apt-get", "-q", "-y", "-o", "DPkg::Lock::Timeout=300"]
# Debian's tools, not those a developer's PATH puts first (a python3 of its own, ...).
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def system_env(**extra):
    env = dict(clean_env(), PATH=SYSTEM_PATH, LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
    env.pop("MAKEFLAGS", None)
    env.update(extra)
    return env


def meson_version():
    with open(os.path.join(REPO, "meson.build")) as f:
        return re.search(r"^project\(.*?\bversion\s*:\s*'([^']+)'", f.read(), re.S | re.M).group(1)


def changelog_version():
    with open(os.path.join(REPO, "debian", "changelog")) as f:
        m = re.match(r"^hcexportfs \(([^)\s]+)\) [a-zA-Z-]+; urgency=\w+\n", f.readline())
    assert m, "debian/changelog: the first line is not a 'hcexportfs (VERSION) DIST; urgency=' line"
    return m.group(1)


def test_debian_changelog_version_is_meson_version():
    """A native package: the version of debian/changelog's top entry is the
    project's version, without a Debian revision."""
    assert changelog_version() == meson_version(), \
        "debian/changelog's version differs from meson.build's: add a changelog entry"


def run(argv, timeout=120, check=True, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       **kw)
    out = r.stdout.decode(errors="replace")
    if check:
        assert r.returncode == 0, "%s: exit %d\n%s" % (" ".join(argv), r.returncode, out[-6000:])
    return out


def status(pkg):
    """dpkg's state of a package: 'installed', 'config-files', 'not-installed', ..."""
    r = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", pkg],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return r.stdout.decode().strip() if r.returncode == 0 else "not-installed"


def installed_packages():
    out = run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${binary:Package}\n"])
    return {line.split()[1] for line in out.splitlines() if line.startswith("installed ")}


def purge(pkgs):
    return run(APT + ["purge"] + sorted(pkgs), env=system_env(), timeout=300, check=False)


@pytest.fixture(scope="module")
def debs():
    """The .deb files built from a clean copy of the tree: {package: path}."""
    if os.geteuid() != 0:
        pytest.skip("installing packages needs root")
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip("not installed: %s (contrib/install-deps installs them)" % " ".join(missing))
    there = [p for p in PACKAGES if status(p) != "not-installed"]
    if there:
        pytest.skip("package %s is already on this machine (dpkg state %s): this test "
                    "would replace and purge it" % (there[0], status(there[0])))
    if not os.path.exists(os.path.join(REPO, ".git")):
        pytest.skip("%s is not a git work tree: no clean copy to build from" % REPO)
    top = tempfile.mkdtemp(prefix="hcx-deb-")
    try:
        # The tracked files as they are now (`git stash create` makes a commit of the
        # work tree without touching it or the stash; it prints nothing when the tree
        # is clean), without untracked files and build directories: a clean clone.
        tree = run(["git", "-C", REPO, "stash", "create"]).strip() or "HEAD"
        src = os.path.join(top, "hcexportfs")
        os.mkdir(src)
        archive = subprocess.Popen(["git", "-C", REPO, "archive", tree], stdout=subprocess.PIPE)
        run(["tar", "-x", "-C", src], stdin=archive.stdout)
        archive.stdout.close()
        assert archive.wait() == 0
        # nocheck: tests/run has run the unit tests (normal and ASan builds) already;
        # the package build's own run of them (override_dh_auto_test) is the same suite.
        env = system_env(DEB_BUILD_OPTIONS="nocheck parallel=%d" % (os.cpu_count() or 1))
        log = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env, timeout=900)
        version = changelog_version()
        found = {}
        for p in PACKAGES:
            names = glob.glob(os.path.join(top, "%s_%s_*.deb" % (p, version)))
            assert len(names) == 1, (p, os.listdir(top), log[-3000:])
            found[p] = names[0]
        found["changes"] = glob.glob(os.path.join(top, "*.changes"))[0]
        yield found
    finally:
        leftover = [p for p in PACKAGES if status(p) != "not-installed"]
        if leftover:
            purge(leftover)
        shutil.rmtree(top, ignore_errors=True)


def test_lintian_reports_no_error_or_warning(debs):
    out = run(["lintian", "--fail-on", "error,warning", debs["changes"]], check=False,
              env=system_env(), timeout=300)
    bad = [ln for ln in out.splitlines() if re.match(r"^[EW]: ", ln)]
    assert not bad, "lintian:\n" + out


def test_package_contents_and_dependencies(debs):
    def field(deb, name):
        return run(["dpkg-deb", "-f", deb, name]).strip()

    def files(deb):
        return {ln.split()[5][1:] for ln in run(["dpkg-deb", "-c", deb]).splitlines()}

    fs, emu = files(debs["hcexportfs"]), files(debs["hcexportfs-emulator"])
    for path in ("/usr/bin/hcexportfs", "/usr/share/man/man1/hcexportfs.1.gz",
                 "/lib/systemd/system/hcexportfs@.service", "/usr/share/doc/hcexportfs/copyright",
                 "/usr/share/doc/hcexportfs/README.systemd"):
        assert path in fs, (path, sorted(fs))
    for path in ("/usr/bin/hwcloud-emulator", "/usr/share/hcexportfs/hwcloud-emulator",
                 "/usr/share/hcexportfs/hwemu/server.py", "/usr/share/man/man1/hwcloud-emulator.1.gz",
                 "/usr/share/doc/hcexportfs-emulator/EMULATOR.md.gz"):
        assert path in emu, (path, sorted(emu))
    assert not {p for p in fs & emu if not p.endswith("/")}, "a file in both packages"
    assert not [p for p in emu if "__pycache__" in p or p.endswith(".pyc")], sorted(emu)
    deps = field(debs["hcexportfs"], "Depends")
    for lib in ("fuse3", "libfuse3-3", "libcurl4", "libjansson4", "libarchive13", "libssl3",
                "zlib1g"):
        assert re.search(r"(^|, )%s( |,|$)" % lib, deps), (lib, deps)
    assert re.search(r"(^|, )python3(:any)?( |,|$)", field(debs["hcexportfs-emulator"], "Depends"))
    assert field(debs["hcexportfs-emulator"], "Architecture") == "all"


class World:
    """What test_mount_fstab's helpers (own_options, submit_and_wait) expect."""


def test_install_mount_read_unmount_purge(debs, tmp_path):
    for d in ("/usr/local/sbin", "/usr/local/bin"):
        if os.path.exists(os.path.join(d, "hcexportfs")):
            pytest.skip("%s/hcexportfs comes first in mount.fuse3's PATH: `mount -t "
                        "fuse.hcexportfs` would not run the package's binary" % d)
    before = installed_packages()
    pulled = set()
    listed = {}
    w = World()
    w.emu = None
    top = tempfile.mkdtemp(prefix="hcx-deb-mnt-", dir="/tmp")
    w.mnt = os.path.join(top, "mnt")
    os.mkdir(w.mnt)
    failed = False
    try:
        t0 = time.monotonic()
        run(APT + ["install", "--no-install-recommends", debs["hcexportfs"],
                   debs["hcexportfs-emulator"]], env=system_env(), timeout=600)
        pulled = installed_packages() - before - set(PACKAGES)  # dependencies apt added
        for p in PACKAGES:
            assert status(p) == "installed", p
            listed[p] = [ln for ln in run(["dpkg", "-L", p]).splitlines() if ln not in ("/.", "")]
        install_s = time.monotonic() - t0

        # The installed programs, as a user finds them.
        out = run(["hcexportfs", "--version"], env=clean_env())
        assert out.splitlines()[0] == "hcexportfs version %s" % meson_version(), out
        assert shutil.which("hcexportfs") == "/usr/bin/hcexportfs"
        with open("/usr/share/hcexportfs/hwcloud-emulator") as f:
            assert re.match(r"#! ?/usr/bin/python3\n", f.readline())  # Debian's python3
        for page, name in (("hcexportfs", "hcexportfs"), ("hwcloud-emulator", "hwcloud-emulator")):
            text = run(["man", page], env=dict(clean_env(), MANPAGER="cat", MANWIDTH="80",
                                               LC_ALL="C.UTF-8"))
            assert re.search(r"^NAME\n\s+%s\s+[-\u2010]" % re.escape(name), text, re.M), text[:300]
        unit = "/lib/systemd/system/hcexportfs@.service"
        with open(unit) as f:
            text = f.read()
        assert re.search(r"^ExecStart=/usr/bin/hcexportfs -f ", text, re.M), text
        if shutil.which("systemd-analyze"):
            inst = tmp_path / "hcexportfs@mnt-hc.service"
            inst.write_text(text)
            out = run(["systemd-analyze", "verify", str(inst)], check=False, cwd=str(tmp_path))
            assert out == "", out

        # The installed emulator on a free port of 127.0.0.1 (it prints its URL).
        w.emu = InstalledEmulator("/usr/bin/hwcloud-emulator", tmp_path, "--max-lifetime", "600",
                                  job_delay=0.3, ak=AK, sk=SK, projects=(PROJECT,))
        saved = dict(os.environ)
        os.environ.pop("PYTHONPATH", None)  # inherited by the emulator: not the source tree
        try:
            w.emu.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert w.emu.url.startswith("http://127.0.0.1:"), w.emu.url
        w.emu.config(rows=120, files=1, folders=0, waf_file_format="zip")

        # mount(8) -> mount.fuse3 -> /usr/bin/hcexportfs (daemonized).
        w.cache = str(tmp_path / "cache")
        w.creds = str(tmp_path / "credentials")
        with open(w.creds, "w") as f:
            f.write("[basic]\nak = %s\nsk = %s\n" % (AK, SK))
        os.chmod(w.creds, 0o600)
        menv = {k: v for k, v in clean_env().items()
                if not k.startswith(("HUAWEICLOUD_SDK_", "CLOUD_SDK_"))}
        run(["mount", "-t", "fuse.hcexportfs", "hcexportfs", w.mnt, "-o", own_options(w)],
            env=menv, timeout=60)
        with open("/proc/self/mounts") as m:
            f = mount_line(m.read(), w.mnt)
        assert f is not None and f[0] == "hcexportfs" and f[2] == "fuse.hcexportfs", f
        pids = daemon_pids(w.mnt)
        assert len(pids) == 1, pids
        assert os.readlink("/proc/%d/exe" % pids[0]) == "/usr/bin/hcexportfs"

        # Submit, wait (status via .wait), read the export's file.
        submit_and_wait(w, lambda argv: subprocess.run(argv, stdout=subprocess.PIPE,
                                                       stderr=subprocess.PIPE, check=True,
                                                       timeout=60))
        exports = os.path.join(w.mnt, "projects", PROJECT, "exports")
        jobs = [d for d in os.listdir(exports) if os.path.isdir(os.path.join(exports, d))]
        assert len(jobs) == 1, jobs
        job = os.path.join(exports, jobs[0])
        with open(os.path.join(job, "status")) as f:
            assert f.read() == "success\n"
        want = {k: v[0] for k, v in zip_entries(emu_archive(w.emu, jobs[0])).items()}
        got = walk_files(job)
        assert got == want and len(got["events.csv"].splitlines()) > 100, sorted(got)
    except BaseException:
        failed = True
        raise
    finally:
        problems = []
        if os.path.ismount(w.mnt):
            r = subprocess.run(["umount", w.mnt], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if r.returncode != 0:
                problems.append("umount: %s" % r.stdout.decode(errors="replace"))
                subprocess.run(["fusermount3", "-u", "-z", w.mnt])
        try:
            wait_gone(w.mnt)
        except AssertionError as e:
            problems.append(str(e))
            for pid in daemon_pids(w.mnt):
                os.kill(pid, 9)
        if w.emu is not None:
            w.emu.stop()
        shutil.rmtree(top, ignore_errors=True)
        t0 = time.monotonic()
        purged = purge([p for p in PACKAGES if status(p) != "not-installed"] + sorted(pulled))
        purge_s = time.monotonic() - t0
        left = [p for p in PACKAGES if status(p) != "not-installed"]
        if left:
            problems.append("still installed after purge: %s\n%s" % (left, purged))
        if failed:  # the test's own failure is the one reported
            for p in problems:
                print("also:", p)
        else:
            assert not problems, "\n".join(problems)
    assert "dpkg: warning" not in purged, purged  # e.g. "directory ... not empty so not removed"
    # Nothing of the packages remains: every path they listed is gone, but for
    # directories that other packages own too (/usr/bin, /usr/share/man/man1, and /lib,
    # a link to /usr/lib on a merged /usr).
    for p, paths in listed.items():
        for path in paths:
            if not os.path.lexists(path):
                continue
            assert os.path.isdir(path), "%s of %s is still there after purge" % (path, p)
            r = subprocess.run(["dpkg-query", "-S", path], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
            assert r.returncode == 0, "directory %s of %s remains, owned by no package" % (path, p)
    for path in ("/usr/share/hcexportfs", "/usr/share/doc/hcexportfs",
                 "/usr/share/doc/hcexportfs-emulator"):
        assert not os.path.lexists(path), path
    assert install_s < 300 and purge_s < 300
