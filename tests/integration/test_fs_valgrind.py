"""The normal (non-sanitizer) build under valgrind: a whole session — mount,
submit, wait, read every file, attach an unknown job, forget, unmount —
must report no memory error and no definite or indirect leak."""
import json
import os
import shutil
import subprocess
import time

import pytest

import emuharness as eh

HERE = os.path.dirname(os.path.abspath(__file__))
PLAIN_BIN = os.environ.get("HCEXPORTFS_PLAIN_BIN",
                           os.path.join(HERE, "..", "..", "build", "src", "hcexportfs"))


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is not installed")
def test_session_under_valgrind_is_clean(tmp_path):
    if not os.access(PLAIN_BIN, os.X_OK):
        pytest.fail("no plain build at %s (set HCEXPORTFS_PLAIN_BIN)" % PLAIN_BIN)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "valgrind.log"
    with eh.Emulator(tmp_path, job_delay=0.3) as emu:
        emu.config(files=3, folders=1, rows=2000)
        env = dict(os.environ, CLOUD_SDK_AK=eh.AK, CLOUD_SDK_SK=eh.SK, HOME=str(tmp_path))
        proc = subprocess.Popen(
            ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
             "--error-exitcode=99", "-q", PLAIN_BIN, "-f", "-o",
             "endpoint=%s,projects=%s,cache_dir=%s,poll_interval=0.2"
             % (emu.url, eh.PROJECT, tmp_path / "cache"), str(mnt)],
            env=env, stderr=open(log, "w"))
        try:
            deadline = time.time() + 60
            while not os.path.ismount(mnt):
                assert proc.poll() is None, log.read_text()
                assert time.time() < deadline, "no mount after 60 s under valgrind"
                time.sleep(0.1)
            exports = mnt / "projects" / eh.PROJECT / "exports"
            fd = os.open(exports / "new", os.O_RDWR)
            os.write(fd, json.dumps({"recent": "today", "dump_columns": ["id", "attack"]}).encode())
            job = os.read(fd, 100).decode().strip()
            os.close(fd)
            assert (exports / job / ".wait").read_text() == "success\n"
            total = 0
            for root, _, files in os.walk(exports / job):
                for name in files:
                    if name != ".wait":
                        total += len(open(os.path.join(root, name), "rb").read())
            assert total > 0
            with pytest.raises(OSError):
                os.mkdir(exports / ("0" * 32))
            os.rmdir(exports / job)
        finally:
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
            try:
                rc = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
    text = log.read_text()
    assert rc == 0, "exit %s under valgrind:\n%s" % (rc, text[-6000:])
    assert "==" not in text, "valgrind reported:\n%s" % text[-6000:]
