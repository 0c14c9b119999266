# Installing: `meson install --destdir` puts the binary, both man pages, the
# emulator (script, hwemu package, bin/ link to it) and the systemd unit in
# the usual places under the configured prefix; what was installed works on
# its own: --version and --help run, the man pages render, and the installed
# binary mounts for real against the installed emulator.
import json
import os
import re
import shutil
import subprocess

import pytest

from fshelpers import (AK, PROJECT, REPO, SK, Mount, emu_archive, emuharness, run_job,
                       walk_files, zip_entries)

PLAIN_BIN = os.environ.get("HCEXPORTFS_PLAIN_BIN") or os.environ.get("HCEXPORTFS_BIN") or ""
BUILD = os.path.dirname(os.path.dirname(os.path.abspath(PLAIN_BIN)))  # build/src/hcexportfs

OPTIONS = ("endpoint", "region", "waf_endpoint", "hss_endpoint", "iam_endpoint", "projects",
           "enterprise_project_id", "cache_dir", "poll_interval", "credentials", "token_file",
           "cafile", "cache_max", "log_level", "request_timeout")


def introspect(what):
    out = subprocess.run(["meson", "introspect", what, BUILD], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, check=True, timeout=60).stdout
    return json.loads(out)


class Layout:
    def __init__(self, dest):
        opts = {o["name"]: o["value"] for o in introspect("--buildoptions")}
        self.dest = dest
        self.prefix = opts["prefix"]

        def under(d):
            return os.path.join(self.prefix, d)  # d may itself be absolute
        self.bindir, self.datadir, self.mandir = (under(opts[k])
                                                  for k in ("bindir", "datadir", "mandir"))
        self.version = introspect("--projectinfo")["version"]

    def path(self, *parts):
        """Where an installed path lands under DESTDIR."""
        return self.dest + os.path.join(*parts)

    @property
    def hcexportfs(self):
        return self.path(self.bindir, "hcexportfs")

    @property
    def emulator(self):
        return self.path(self.bindir, "hwcloud-emulator")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        pytest.fail("no meson build directory at %s (HCEXPORTFS_PLAIN_BIN)" % BUILD)
    dest = str(tmp_path_factory.mktemp("destdir"))
    r = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--destdir", dest],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    return Layout(dest)


def clean_env():
    """The environment minus anything that could lead the installed programs back
    to the source tree."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def test_files_land_in_the_usual_places(installed):
    L = installed
    assert os.access(L.hcexportfs, os.X_OK)
    for page in ("hcexportfs.1", "hwcloud-emulator.1"):
        assert os.path.isfile(L.path(L.mandir, "man1", page)), page
    share = L.path(L.datadir, "hcexportfs")
    assert os.access(os.path.join(share, "hwcloud-emulator"), os.X_OK)
    mods = sorted(os.listdir(os.path.join(share, "hwemu")))
    src_hwemu = os.path.join(os.path.dirname(emuharness.EMULATOR), "hwemu")
    src_mods = sorted(f for f in os.listdir(src_hwemu) if f.endswith(".py"))
    assert mods == src_mods, "installed hwemu/ is not the source's *.py (no __pycache__)"
    # The launcher is a relative link: the tree works under DESTDIR and when moved.
    assert os.path.islink(L.emulator)
    target = os.readlink(L.emulator)
    assert not target.startswith("/"), target
    assert os.path.realpath(L.emulator) == os.path.join(share, "hwcloud-emulator")
    unit = L.path(L.prefix, "lib", "systemd", "system", "hcexportfs@.service")
    with open(unit) as f:
        text = f.read()
    assert re.search(r"^ExecStart=%s -f " % re.escape(os.path.join(L.bindir, "hcexportfs")),
                     text, re.M), text
    assert os.path.isfile(L.path(L.datadir, "doc", "hcexportfs", "EMULATOR.md"))


def test_installed_binary_version_and_help(installed):
    r = subprocess.run([installed.hcexportfs, "--version"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=clean_env(), timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.splitlines()[0] == "hcexportfs version %s" % installed.version, out
    for lib in ("libfuse ", "libcurl ", "libarchive ", "jansson ", "zlib ", "OpenSSL "):
        assert re.search(r"^%s\S*\d" % re.escape(lib), out, re.M), (lib, out)
    r = subprocess.run([installed.hcexportfs, "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=clean_env(), timeout=30)
    assert r.returncode == 0, r.stderr
    help_text = r.stdout.decode()
    for opt in OPTIONS:
        lines = [ln for ln in help_text.splitlines()
                 if re.match(r"^\s+-o %s=\S+\s+\S" % opt, ln)]
        assert len(lines) == 1, "--help: option %s must have exactly one line of its own" % opt


@pytest.mark.parametrize("page,name", [("hcexportfs.1", "hcexportfs"),
                                       ("hwcloud-emulator.1", "hwcloud-emulator")])
def test_installed_man_pages_render(installed, page, name):
    path = installed.path(installed.mandir, "man1", page)
    env = dict(clean_env(), MANWIDTH="80", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
    r = subprocess.run(["man", "--warnings", "-l", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b"", "groff warnings:\n" + r.stderr.decode(errors="replace")
    text = r.stdout.decode(errors="replace")
    assert re.search(r"^NAME\n\s+%s\s+[-\u2010]" % re.escape(name), text, re.M), text[:500]
    for section in ("SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), section


class InstalledEmulator(emuharness.Emulator):
    """The emulator started through the installed bin/hwcloud-emulator link."""

    def __init__(self, launcher, *a, **kw):
        super().__init__(*a, **kw)
        self.launcher = launcher

    def _argv(self, port):
        argv = super()._argv(port)
        assert argv[1] == emuharness.EMULATOR
        return [self.launcher] + argv[2:]


class InstalledMount(Mount):
    def __init__(self, binary, *a, **kw):
        super().__init__(*a, **kw)
        self.binary = binary
        self.env = {k: v for k, v in self.env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    def argv(self):
        return [self.binary] + super().argv()[1:]


def test_installed_binary_mounts_against_installed_emulator(installed, tmp_path):
    env_before = dict(os.environ)
    os.environ.pop("PYTHONPATH", None)  # the emulator inherits it: keep it off the source tree
    try:
        emu = InstalledEmulator(installed.emulator, tmp_path, job_delay=0.3, ak=AK, sk=SK,
                                projects=(PROJECT,)).start()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    m = None
    try:
        assert emu.health() == {"ok": True}
        emu.config(rows=300, files=2, folders=1, waf_file_format="zip")
        m = InstalledMount(installed.hcexportfs, tmp_path, "inst", emu.url,
                           str(tmp_path / "inst-cache")).start()
        job = run_job(m)
        got = walk_files(m.job(job))
        want = {k: v[0] for k, v in zip_entries(emu_archive(emu, job)).items()}
        assert got == want
        with open(m.archive(job), "rb") as f:
            assert f.read() == emu_archive(emu, job)
        # The emulator answered the installed binary: every call is in its log.
        assert [e["call"] for e in emu.log() if e["call"] == "submit"] == ["submit"]
    finally:
        problems = m.stop_and_check() if m is not None else []
        emu.stop()
        assert not problems, "\n".join(problems)


@pytest.mark.parametrize("which", ["installed", "contrib"])
def test_systemd_unit_verifies(installed, tmp_path, which):
    """`systemd-analyze verify` (offline) reports nothing for an instance of the
    unit.  The binary it names is not on this system, so ExecStart points at the
    DESTDIR copy; Documentation= is checked against the installed man pages."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    if which == "installed":
        src = installed.path(installed.prefix, "lib", "systemd", "system", "hcexportfs@.service")
        named = os.path.join(installed.bindir, "hcexportfs")
    else:
        src = os.path.join(REPO, "contrib", "systemd", "hcexportfs@.service")
        named = "/usr/local/bin/hcexportfs"
    with open(src) as f:
        text = f.read()
    assert text.count(named) == 1, "ExecStart must name %s" % named
    unit = tmp_path / "hcexportfs@mnt-hc.service"  # the instance for /mnt/hc
    unit.write_text(text.replace(named, installed.hcexportfs))
    env = dict(clean_env(), MANPATH=installed.path(installed.mandir))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=env, timeout=120, cwd=str(tmp_path))
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and out == "", out
    esc = subprocess.run(["systemd-escape", "--path", "/mnt/hc"], stdout=subprocess.PIPE,
                         check=True).stdout.decode().strip()
    assert esc == "mnt-hc"  # the instance name the unit's comments tell people to use


def test_systemd_unit_command_line_mounts_and_stops_on_sigterm(tmp_path, emu_shared):
    """The unit's ExecStart=, with systemd's substitutions done by hand (%f, %C, %i,
    $HCEXPORTFS_OPTIONS from the instance's EnvironmentFile, $CREDENTIALS_DIRECTORY
    holding the LoadCredential= copy, mode 0400): it mounts, serves a job, and a
    SIGTERM (systemctl stop) unmounts with exit status 0."""
    emu = emu_shared
    with open(os.path.join(REPO, "contrib", "systemd", "hcexportfs@.service")) as f:
        unit = f.read()
    execstart = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    assert re.search(r"^LoadCredential=credentials:", unit, re.M)
    assert re.search(r"^EnvironmentFile=/etc/hcexportfs/%i\.conf$", unit, re.M)
    mnt = Mount(tmp_path, "unit", emu.url, None)  # paths and environment only
    creds_dir = tmp_path / "credentials.d"
    creds_dir.mkdir()
    (creds_dir / "credentials").write_text("[basic]\nak = %s\nsk = %s\n" % (AK, SK))
    os.chmod(creds_dir / "credentials", 0o400)
    options = "endpoint=%s,projects=%s,poll_interval=0.2" % (emu.url, PROJECT)
    words = [w.replace("%f", mnt.mountpoint).replace("%C", str(tmp_path / "var-cache"))
             .replace("%i", "unit-mnt").replace("${HCEXPORTFS_OPTIONS}", options)
             .replace("${CREDENTIALS_DIRECTORY}", str(creds_dir))
             for w in execstart.split()]
    assert words[0] == "/usr/local/bin/hcexportfs"
    words[0] = os.path.abspath(os.environ.get("HCEXPORTFS_BIN") or PLAIN_BIN)
    mnt.argv = lambda: words
    # systemd gives no SDK variables; credentials come from the option.
    mnt.env = {k: v for k, v in mnt.env.items() if not k.startswith("CLOUD_SDK_")}
    mnt.start()
    try:
        run_job(mnt)
        assert os.path.isdir(str(tmp_path / "var-cache" / "hcexportfs" / "unit-mnt" / "journal"))
        mnt.proc.send_signal(15)
        assert mnt.proc.wait(10) == 0
        mnt.proc = None
        assert not os.path.ismount(mnt.mountpoint)
        assert "credentials: AK/SK (credentials file %s/credentials)" % creds_dir \
            in mnt.read_log()
    finally:
        problems = mnt.stop_and_check()
        assert not problems, "\n".join(problems)
