# The manual pages: lint-clean for mandoc, and in step with the program:
# every option --help lists is documented with the same default, the exit
# codes are main.c's, the emulator page covers every emulator option, and the
# shell-script example of hcexportfs(1) runs as printed against a real mount.
import os
import re
import shutil
import subprocess

import pytest

from fshelpers import HCX_BIN, PROJECT, REPO

MAN = os.path.join(REPO, "man")
PAGES = ("hcexportfs.1", "hwcloud-emulator.1")


def source(page):
    with open(os.path.join(MAN, page)) as f:
        return f.read()


def section(text, name):
    """The roff source of section .SH name, up to the next .SH."""
    m = re.search(r"^\.SH \"?%s\"?\n(.*?)(?=^\.SH |\Z)" % re.escape(name), text, re.M | re.S)
    assert m, "no section %s" % name
    return m.group(1)


def unescape(roff):
    """Text of a no-fill block as printed (font changes, \\- and \\e resolved)."""
    t = re.sub(r"\\f[BIRP]", "", roff)
    return t.replace("\\-", "-").replace("\\e", "\\")


def plain(roff):
    """Roff source to rough text: escapes, font macros and their quotes dropped."""
    t = unescape(roff)
    t = re.sub(r"^\.(BI|BR|IR|RB|RI|IB|B|I) (.*)$", lambda m: m.group(2).replace('"', ""),
               t, flags=re.M)
    return t


@pytest.mark.parametrize("page", PAGES)
def test_mandoc_lint_reports_nothing(page):
    if not shutil.which("mandoc"):
        pytest.fail("mandoc is not installed (contrib/install-deps installs it)")
    r = subprocess.run(["mandoc", "-T", "lint", os.path.join(MAN, page)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and out == "", out


def help_options():
    """{name: help line} of the -o options --help lists (one line each)."""
    r = subprocess.run([HCX_BIN, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert r.returncode == 0
    text = r.stdout.decode().split("\n\n    -h")[0]  # ours, before libfuse's
    opts = {}
    for line in text.splitlines():
        m = re.match(r"^\s+-o ([a-z_]+)=\S+\s+(.*)$", line)
        if m:
            assert m.group(1) not in opts, "option %s listed twice" % m.group(1)
            opts[m.group(1)] = m.group(2)
    return opts


def test_every_option_is_documented_with_its_default():
    opts = help_options()
    spec = open(os.path.join(REPO, "src", "main.c")).read()
    in_code = set(re.findall(r'OPT\("([a-z_]+)=%s"', spec))
    assert set(opts) == in_code, "--help and the option table differ: %s" % (
        set(opts) ^ in_code)
    text = section(source("hcexportfs.1"), "OPTIONS")
    for name, line in opts.items():
        m = re.search(r"^\.BI %s= [^\n]*\n(.*?)(?=^\.TP|^\.PP|\Z)" % name, text, re.M | re.S)
        assert m, "hcexportfs.1 OPTIONS does not document %s=" % name
        para = plain(m.group(1))
        d = re.search(r"\(default (\d+)", line)
        if d:
            assert re.search(r"default %s\b" % d.group(1), para), (name, d.group(1), para)
        if "no bound" in line or "default: none" in line:
            assert re.search(r"default: (no bound|none)", para), (name, para)


def test_exit_codes_match_main():
    code = open(os.path.join(REPO, "src", "main.c")).read()
    m = re.search(r"enum \{ (EXIT_USAGE = 1[^}]*)\}", code)
    values = sorted(int(v) for v in re.findall(r"= (\d+)", m.group(1)))
    text = section(source("hcexportfs.1"), "EXIT STATUS")
    documented = sorted(int(v) for v in re.findall(r"^\.TP\n(\d+)$", text, re.M))
    assert documented == [0] + values


@pytest.mark.parametrize("name", ["SYNOPSIS", "TREE", "SUBMITTING", "ARCHIVE ENTRY NAMES",
                                  "OPTIONS", "CREDENTIALS", "ENVIRONMENT", "LOGGING",
                                  "EXIT STATUS", "ERRORS", "FILES", "SECURITY", "EXAMPLES"])
def test_hcexportfs_page_has_section(name):
    assert section(source("hcexportfs.1"), name).strip()


def test_examples_cover_every_kind_of_user():
    text = section(source("hcexportfs.1"), "EXAMPLES")
    subsections = re.findall(r"^\.SS (.*)$", text, re.M)
    for want in ("Browsing", "A script that submits and waits", "A backup with rsync",
                 "An fstab line", "A systemd unit"):
        assert want in subsections, subsections
    fstab = unescape(re.search(r"^\.SS An fstab line\n\.nf\n(.*?)^\.fi", text, re.M | re.S)
                  .group(1)).replace("\\\n  ", "")
    fields = fstab.split()
    assert len(fields) == 6 and fields[2] == "fuse.hcexportfs", fields
    for o in ("noauto", "_netdev", "allow_other", "credentials=", "cache_dir="):
        assert o in fields[3], (o, fields[3])


def test_every_control_file_is_described():
    text = plain(section(source("hcexportfs.1"), "TREE"))
    for f in (".stats", "new", "status", ".job.json", ".wait", "archives/"):
        assert re.search(r"^\.TP\n%s" % re.escape(f), text, re.M), f
    # .job.json keys the spec promises
    for key in ("job_id", "project_id", "filter", "task_name", "task_status", "file_id",
                "file_name", "message", "submitted_at", "polled_at", "download", "error"):
        assert key in text, key


def test_emulator_page_covers_every_emulator_option():
    with open(os.path.join(REPO, "contrib", "hwemu", "server.py")) as f:
        flags = set(re.findall(r'add_argument\("(--[a-z-]+)"', f.read()))
    assert len(flags) > 10
    text = plain(section(source("hwcloud-emulator.1"), "OPTIONS"))
    documented = set(re.findall(r"(--[a-z-]+)", text))
    assert flags <= documented, "undocumented: %s" % (flags - documented)


def test_script_example_runs_as_printed(mnt, emu):
    """The man page's shell script, with /mnt/hc and $P pointing at a test mount."""
    text = section(source("hcexportfs.1"), "EXAMPLES")
    script = unescape(re.search(r"^\.SS A script that submits and waits\n\.nf\n(.*?)^\.fi", text,
                             re.M | re.S).group(1))
    assert script.startswith("#!/bin/sh\n")
    script = script.replace("/mnt/hc", mnt.mountpoint)
    emu.config(rows=300)
    r = subprocess.run(["sh", "-c", script], env=dict(os.environ, P=PROJECT),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    rows = r.stdout.decode().splitlines()
    # "count sip" lines, most frequent first; the counts add up to at most the rows.
    assert rows and all(re.match(r"^\s*\d+ \S+$", x) for x in rows), rows
    counts = [int(x.split()[0]) for x in rows]
    assert counts == sorted(counts, reverse=True)
    assert len(emu.calls("submit")) == 1
    assert [j["filter"].get("attacks") for j in emu.jobs()][-1] == ["sqli"]
