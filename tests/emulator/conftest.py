# Fixtures for the emulator's own test suite (run: python3 -m pytest tests/emulator).
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))                                   # tests/ (emuharness)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "contrib"))  # hwemu

import emuharness  # noqa: E402

STATIC_TOKEN = "static-test-token-0123456789"
USER, PASSWORD, DOMAIN = "alice", "s3cret!pw", "acme"
OTHER_PROJECT = "ffffffffffffffffffffffffffffffff"


def pytest_configure(config):
    config.addinivalue_line("markers", "big: builds a larger archive (still run by default)")


@pytest.fixture(scope="session")
def shared_emu(tmp_path_factory):
    with emuharness.Emulator(tmp_path_factory.mktemp("emu"), "--token", STATIC_TOKEN,
                             "--user", USER, "--password", PASSWORD, "--domain", DOMAIN,
                             "--max-lifetime", "600", job_delay=0.15,
                             projects=(emuharness.PROJECT, OTHER_PROJECT)) as e:
        yield e


@pytest.fixture
def emu(shared_emu):
    """One emulator process for the session, reset before each test (a test may
    stop, start or restart it: it keeps its state dir and arguments)."""
    if shared_emu.proc is None or shared_emu.proc.poll() is not None:
        shared_emu.start()
    shared_emu.reset()
    return shared_emu
