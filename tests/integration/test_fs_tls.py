# TLS and secrets.  Certificates are always verified: `-o cafile=` trusts a
# private CA made here with the openssl CLI (the emulator serves HTTPS with
# --tls-cert/--tls-key); a wrong CA, no CA or a certificate for another name
# fail with a clear log line and EIO on the submit; no option turns
# verification off.  Secrets (SK, STS token, password, IAM/static tokens)
# never reach the log at debug level, .job.json, the journal, the process's
# command line or an error message; `-o sk=...` is refused without echoing
# it; credentials and token files must be private to the mounting user
# (exit status 2, see EXIT STATUS in the man page).
import errno
import glob
import json
import os
import subprocess

import pytest

from fshelpers import (AK, DOMAIN, HCX_BIN, OTHER_PROJECT, PASSWORD, PROJECT, REPO, SK,
                       STATIC_TOKEN, USER, emuharness, emu_archive, grep_tree,
                       md5s, read, run_job, walk_files, write_filter, write_private,
                       zip_entries)

# a second key pair with an STS security token, only known to the TLS emulator
STS_AK, STS_SK = "STSAKQ7W2E4R6T8Y0U1I", "StsSecretKey9f8e7d6c5b4a3928171605f4e3d2c1b0"
STS_TOKEN = "sts-security-token-Qm3Zx8Lp2Wv7Nc4Rt9Yb"
WRONG_PASSWORD = "not-the-pw-Hq4#Zt8!"


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    assert r.returncode == 0, (args, r.stderr.decode())


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
            "-subj", "/CN=hcexportfs test %s" % name, cwd=d)
    return os.path.join(d, name + ".pem")


def make_server_cert(d, ca, name, san):
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n" % san)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=%s" % name, cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext, cwd=d)
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other-ca")
    cert, key = make_server_cert(d, "ca", "server", "IP:127.0.0.1,DNS:localhost")
    wrong_cert, wrong_key = make_server_cert(d, "ca", "elsewhere", "DNS:elsewhere.example")
    return dict(dir=d, ca=ca, other_ca=other_ca, cert=cert, key=key, wrong_cert=wrong_cert,
                wrong_key=wrong_key)


def start_tls_emulator(tmpdir, cert, key):
    os.makedirs(str(tmpdir), exist_ok=True)
    # the n-th --security-token belongs to the n-th --ak: the STS pair goes first; the
    # harness's own AK/SK (used for direct calls) second, without a token
    e = emuharness.Emulator(tmpdir, "--tls-cert", cert, "--tls-key", key,
                            "--ak", STS_AK, "--sk", STS_SK, "--security-token", STS_TOKEN,
                            "--ak", AK, "--sk", SK,
                            "--token", STATIC_TOKEN, "--user", USER, "--password", PASSWORD,
                            "--domain", DOMAIN, "--max-lifetime", "600", "--rows", "40",
                            job_delay=0.3, projects=(PROJECT, OTHER_PROJECT), ak=None,
                            sk=None).start()
    assert e.url.startswith("https://127.0.0.1:"), e.url
    return e


@pytest.fixture(scope="module")
def tls_emu(pki, tmp_path_factory):
    e = start_tls_emulator(tmp_path_factory.mktemp("tlsemu"), pki["cert"], pki["key"])
    yield e
    e.stop()


@pytest.fixture
def temu(tls_emu):
    tls_emu.set_faults()
    tls_emu.config(job_delay=0.3, rows=40, waf_file_format="zip")
    tls_emu.clear_log()
    return tls_emu



# ---- TLS -----------------------------------------------------------------------------

def test_cafile_trusts_a_private_ca(mount_factory, temu, pki):
    m = mount_factory(url=temu.url, ak=STS_AK, sk=STS_SK, opts={"cafile": pki["ca"]},
                      env={"CLOUD_SDK_SECURITY_TOKEN": STS_TOKEN}, secrets=(STS_TOKEN,))
    job = run_job(m)
    want = emu_archive(temu, job)
    assert md5s(walk_files(m.job(job))) == md5s({k: v[0] for k, v in zip_entries(want).items()})
    assert read(m.archive(job), "rb") == want
    assert [e["status"] for e in temu.calls("submit")] == [200]


@pytest.mark.parametrize("case", ["wrong-ca", "system-store", "wrong-name"])
def test_unverifiable_server_is_refused(mount_factory, temu, pki, tmp_path, case):
    """The submit fails with EIO and a log line naming the certificate problem; no request
    reaches the server (the handshake is refused before anything is sent)."""
    url, opts = temu.url, {}
    other = None
    if case == "wrong-ca":
        opts["cafile"] = pki["other_ca"]
    elif case == "wrong-name":
        other = start_tls_emulator(tmp_path / "wrongname", pki["wrong_cert"], pki["wrong_key"])
        url, opts["cafile"] = other.url, pki["ca"]
    try:
        m = mount_factory(url=url, ak=STS_AK, sk=STS_SK, opts=opts,
                          env={"CLOUD_SDK_SECURITY_TOKEN": STS_TOKEN}, secrets=(STS_TOKEN,))
        err, reply = write_filter(m)
        assert err == errno.EIO, (err, reply)
        assert reply.startswith("error: "), reply
        log = m.read_log()
        want = {"wrong-ca": "certificate", "system-store": "certificate",
                "wrong-name": "match"}[case]
        assert want in reply.lower() and want in log.lower(), (reply, log[-2000:])
        assert os.listdir(m.exports()) == ["new"]
        assert (other or temu).calls("submit") == [], "a request got through an unverified TLS"
    finally:
        if other:
            other.stop()


@pytest.mark.parametrize("opt", ["insecure", "ssl_verify=0", "verify=0", "no_verify",
                                 "ssl_no_verify", "tls_verify=false", "cafile="])
def test_no_option_turns_verification_off(tmp_path, opt):
    mp = tmp_path / "mnt"
    mp.mkdir()
    env = dict(os.environ, CLOUD_SDK_AK=AK, CLOUD_SDK_SK=SK, HOME=str(tmp_path))
    r = subprocess.run([HCX_BIN, "-f", "-o", "endpoint=https://127.0.0.1:9,cache_dir=%s,%s"
                        % (tmp_path / "cache", opt), str(mp)], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    if os.path.ismount(str(mp)):
        subprocess.run(["fusermount3", "-u", "-z", str(mp)])
        raise AssertionError("mounted with -o %s" % opt)
    assert r.returncode == 1, (opt, r.returncode, r.stderr)


def test_source_never_disables_peer_or_host_checks():
    """The only TLS knob the code sets is CURLOPT_CAINFO (from -o cafile)."""
    hits = []
    for path in glob.glob(os.path.join(REPO, "src", "*.c")):
        text = read(path)
        for bad in ("SSL_VERIFYPEER", "SSL_VERIFYHOST", "SSL_VERIFYSTATUS", "PROXY_SSL_VERIFY",
                    "CAPATH"):
            if bad in text:
                hits.append((os.path.basename(path), bad))
    assert hits == [], hits


# ---- secrets ---------------------------------------------------------------------------

def assert_nowhere(m, secrets):
    cmdline = read("/proc/%d/cmdline" % m.proc.pid, "rb")
    for s in secrets:
        assert s.encode() not in cmdline, "a secret is on the command line"
        for i in range(len(m.logs)):
            assert s not in m.read_log(i), "a secret is in the log (debug level)"
        assert grep_tree(m.cache_dir, s) == [], "a secret is in the cache dir (journal...)"
        for j in os.listdir(m.exports()):
            if j != "new":
                assert s not in read(os.path.join(m.job(j), ".job.json"))
    assert "log_level=debug" in cmdline.decode(errors="replace")


def test_sts_secrets_over_tls_leak_nowhere(mount_factory, temu, pki):
    m = mount_factory(url=temu.url, ak=STS_AK, sk=STS_SK, opts={"cafile": pki["ca"]},
                      env={"CLOUD_SDK_SECURITY_TOKEN": STS_TOKEN}, secrets=(STS_TOKEN, STS_SK))
    job = run_job(m)
    os.listdir(m.job(job))
    assert all(e["auth"] == "aksk" for e in temu.calls("submit"))
    assert_nowhere(m, [STS_SK, STS_TOKEN])


def test_password_and_iam_token_leak_nowhere(mount_factory, temu, pki, tmp_path):
    cred = write_private(tmp_path / "cred.ini", "[basic]\nuser = %s\npassword = %s\ndomain = %s\n"
                        % (USER, PASSWORD, DOMAIN))
    m = mount_factory(url=temu.url, ak=None, sk=None,
                      opts={"cafile": pki["ca"], "credentials": cred})
    job = run_job(m)
    os.listdir(m.job(job))
    tokens = list(json.load(open(os.path.join(temu.state_dir, "tokens.json"))))
    assert tokens
    m.secrets += tokens
    assert_nowhere(m, [PASSWORD] + tokens)


@pytest.mark.parametrize("what", ["password", "token", "sk"])
def test_refused_secrets_are_not_echoed_in_errors(mount_factory, temu, pki, tmp_path, what):
    """A wrong secret is refused by the cloud: the error the writer reads and the log
    name the problem but never contain the secret."""
    opts, ak, sk, secret = {"cafile": pki["ca"]}, None, None, None
    if what == "password":
        secret = WRONG_PASSWORD
        opts["credentials"] = write_private(tmp_path / "cred.ini",
                                           "[basic]\nuser = %s\npassword = %s\ndomain = %s\n"
                                           % (USER, secret, DOMAIN))
    elif what == "token":
        secret = "wrong-token-Xy7Kp2Lq9Vm4Nb8Rc3Td"
        opts["token_file"] = write_private(tmp_path / "token", secret + "\n")
    else:
        secret = "WrongSecretKeyForTheStsPair000000000000x"
        ak, sk = STS_AK, secret
    m = mount_factory(url=temu.url, ak=ak, sk=sk, opts=opts, secrets=(secret,),
                      env={"CLOUD_SDK_SECURITY_TOKEN": STS_TOKEN} if what == "sk" else None)
    err, reply = write_filter(m)
    assert err == errno.EACCES, (err, reply)
    assert reply.startswith("error: ") and secret not in reply, reply
    assert secret not in m.read_log()
    assert grep_tree(m.cache_dir, secret) == []


@pytest.mark.parametrize("opt", ["sk", "password", "token", "security_token"])
def test_secret_on_command_line_is_refused_unechoed(tmp_path, opt):
    mp = tmp_path / "mnt"
    mp.mkdir()
    secret = "Cmdline-Secret-Value-8Hq2Zr5"
    r = subprocess.run([HCX_BIN, "-f", "-o", "endpoint=http://127.0.0.1:9,cache_dir=%s,%s=%s"
                        % (tmp_path / "cache", opt, secret), str(mp)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10,
                       env=dict(os.environ, HOME=str(tmp_path)))
    if os.path.ismount(str(mp)):
        subprocess.run(["fusermount3", "-u", "-z", str(mp)])
        raise AssertionError("mounted with -o %s=..." % opt)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, (r.returncode, out)
    assert secret not in out, out
    assert opt in out and "credentials=FILE" in out, out


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o660, 0o602])
@pytest.mark.parametrize("kind", ["credentials", "token_file", "profile"])
def test_non_private_secret_files_are_refused(tmp_path, kind, mode):
    """Exit status 2 (man page: credentials refused), a message naming the file and the
    fix, and no mount.  (0644 and a foreign owner are in test_fs_startup.py.)"""
    mp, home = tmp_path / "mnt", tmp_path / "home"
    mp.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HUAWEICLOUD_SDK_", "CLOUD_SDK_"))}
    env["HOME"] = str(home)
    opts = "endpoint=http://127.0.0.1:9,cache_dir=%s" % (tmp_path / "cache")
    if kind == "credentials":
        path = write_private(tmp_path / "cred.ini", "[basic]\nak = %s\nsk = %s\n" % (AK, SK), mode)
        opts += ",credentials=" + path
    elif kind == "token_file":
        path = write_private(tmp_path / "token", STATIC_TOKEN + "\n", mode)
        opts += ",token_file=" + path
    else:
        (home / ".huaweicloud").mkdir()
        path = write_private(home / ".huaweicloud" / "credentials",
                            "[basic]\nak = %s\nsk = %s\n" % (AK, SK), mode)
    r = subprocess.run([HCX_BIN, "-f", "-o", opts, str(mp)], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    if os.path.ismount(str(mp)):
        subprocess.run(["fusermount3", "-u", "-z", str(mp)])
        raise AssertionError("mounted with a %04o %s" % (mode, kind))
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 2, (r.returncode, out)
    assert path in out and "chmod 600" in out, out
    for s in (SK, STATIC_TOKEN):
        assert s not in out
