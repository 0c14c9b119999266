# Fixtures for the hcexportfs integration tests (real FUSE mounts against the
# hwcloud-emulator).  Run:
#   HCEXPORTFS_BIN=$PWD/build/src/hcexportfs /usr/bin/python3 -m pytest -q tests/integration
#
# Model: sshfs's pytest suite.  Every test gets its own mount(s) and cache_dir;
# the emulator is shared per module (its log, faults and config are reset
# before every test).  Teardown always unmounts (fusermount3 -u -z), waits for
# the process and fails the test if any run's stderr shows a sanitizer report,
# a crash or a secret.
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from fshelpers import (DOMAIN, HCX_BIN, OTHER_PROJECT, PASSWORD, PROJECT,  # noqa: E402
                       STATIC_TOKEN, USER, Mount, emuharness, stop_all)

# WAF files come zipped here (manifest.json + events.csv) so that the tests of
# the archive view keep their subject; the emulator's default (a plain CSV)
# and gzip are the subject of test_fs_waf_flow.py.
DEFAULT_CONFIG = dict(job_delay=0.3, rows=40, files=1, folders=0, compresslevel=6,
                      token_ttl=86400, waf_file_format="zip")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes a few seconds (still run by default)")
    # `pytest tests/emulator tests/integration` loads both directories' conftest.py up
    # front, each as the module "conftest", and this one (loaded last) would then answer
    # the emulator tests' `from conftest import ...`.  Nothing here imports conftest by
    # name, so hand that name back to the other directory's conftest.
    me = os.path.abspath(__file__)
    if os.path.abspath(getattr(sys.modules.get("conftest"), "__file__", "") or "") == me:
        for plugin in config.pluginmanager.get_plugins():
            f = getattr(plugin, "__file__", None)
            if getattr(plugin, "__name__", None) == "conftest" and f and \
                    os.path.abspath(f) != me:
                sys.modules["conftest"] = plugin
                break


def pytest_report_header(config):
    return "hcexportfs binary: %s" % HCX_BIN


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    if not os.access(HCX_BIN, os.X_OK):
        pytest.fail("HCEXPORTFS_BIN %s is not an executable (build it first)" % HCX_BIN)
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        pytest.skip("FUSE is not available here (/dev/fuse, fusermount3)")


def start_emulator(tmpdir, **kw):
    return emuharness.Emulator(tmpdir, "--token", STATIC_TOKEN, "--user", USER,
                               "--password", PASSWORD, "--domain", DOMAIN,
                               "--max-lifetime", "900", "--rows", "40",
                               projects=(PROJECT, OTHER_PROJECT), **kw).start()


@pytest.fixture(scope="module")
def emu_shared(tmp_path_factory):
    e = start_emulator(tmp_path_factory.mktemp("emu"), job_delay=0.3)
    yield e
    e.stop()


@pytest.fixture
def emu(emu_shared):
    """The module's emulator, as just started (no jobs, files or issued tokens: a
    test's WAF jobs never meet an earlier test's files in the event-log list), with
    default config and faults and an empty log."""
    e = emu_shared
    if e.proc is None or e.proc.poll() is not None:
        e.restart()
    e.reset()
    e.set_faults()
    e.config(**DEFAULT_CONFIG)
    e.clear_log()
    yield e
    if e.proc is not None and e.proc.poll() is None:
        try:
            e.set_faults()  # release hanging requests etc.
        except Exception:
            pass


@pytest.fixture
def private_emu(tmp_path):
    """An emulator of the test's own (for tests that stop or restart it)."""
    d = tmp_path / "emu-private"
    d.mkdir(exist_ok=True)
    e = start_emulator(d, job_delay=0.3)
    e.config(**DEFAULT_CONFIG)
    yield e
    e.stop()


@pytest.fixture
def mount_factory(tmp_path, emu_shared):
    """make(name=None, cache_dir=None, url=None, start=True, **Mount kwargs) -> Mount.
    All mounts are unmounted at teardown and their logs checked."""
    mounts = []

    def make(name=None, cache_dir=None, url=None, start=True, **kw):
        name = name or "m%d" % len(mounts)
        if cache_dir is None:
            cache_dir = str(tmp_path / (name + "-cache"))
        m = Mount(tmp_path, name, url or emu_shared.url, cache_dir, **kw)
        mounts.append(m)
        if start:
            m.start()
        return m

    yield make
    problems = stop_all(mounts)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def mnt(mount_factory, emu):
    """A default mount of PROJECT against the module's emulator."""
    return mount_factory()


@pytest.fixture
def tmpfs(tmp_path):
    """make(name, size) -> the path of a fresh tmpfs of `size` bytes (mode 0700) mounted
    on tmp_path/name.  Skips without root or when the tmpfs cannot be mounted; every one
    is unmounted (lazily) at teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mounted = []

    def make(name, size):
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % size, "tmpfs",
                            str(d)], stderr=subprocess.PIPE)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs: %s" % r.stderr.decode().strip())
        mounted.append(d)
        return str(d)
    yield make
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], stderr=subprocess.DEVNULL)
