# archive.py -- owns building a record's file on disk (streamed, never whole in
# memory): a WAF file (CSV, gzipped CSV or zip of CSVs), an HSS zip of CSVs, the
# hostile archives, and the background builder that builds each file once.
import datetime
import gzip
import io
import json
import os
import struct
import threading
import time
import warnings
import zipfile
import zlib

from . import events, hss, rawzip


def _date_time(submit_ms):
    d = datetime.datetime.fromtimestamp(submit_ms / 1000.0, datetime.timezone.utc)
    if d.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (d.year, d.month, d.day, d.hour, d.minute, d.second - d.second % 2)


def _zinfo(name, dt, level, mode=0o100644):
    zi = zipfile.ZipInfo(name, dt)
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.create_system = 3
    zi.external_attr = mode << 16
    try:
        zi.compress_level = level  # Python >= 3.13
    except AttributeError:
        zi._compresslevel = level  # Python <= 3.12
    return zi


def csv_names(files, folders, stem="events"):
    names = []
    for i in range(files):
        base = stem + ".csv" if files == 1 else "%s-%04d.csv" % (stem, i + 1)
        if folders > 0:
            base = "part-%03d/%s" % (i % folders + 1, base)
        names.append(base)
    return names


def ext_of(job):
    """File extension of a record's file: zip (HSS, hostile, or waf_file_format zip),
    csv or csv.gz."""
    return job.get("ext") or "zip"


def build(job, path):
    """Write the file of `job` (a state record dict) to `path` atomically."""
    tmp = path + ".tmp"
    if job["params"].get("empty"):
        open(tmp, "wb").close()
        os.replace(tmp, path)
        return
    kind = job["params"].get("hostile_kind")
    if kind:
        with open(tmp, "wb") as f:
            build_hostile_kind(kind, job, f)
        os.replace(tmp, path)
        return
    if job["params"].get("hostile"):
        data = build_hostile(job)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    if job.get("service") == "hss":
        build_hss(job, tmp)
    elif ext_of(job) == "csv":
        with open(tmp, "wb") as f:
            write_waf_csv(job, f)
    elif ext_of(job) == "csv.gz":
        with open(tmp, "wb") as raw:
            # mtime pinned and no name: rebuilding gives the same bytes
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                               compresslevel=max(1, int(job["params"]["compresslevel"])),
                               mtime=job["submit_ms"] // 1000) as f:
                write_waf_csv(job, f)
    else:
        build_waf_zip(job, tmp)
    os.replace(tmp, path)


def generator(job):
    return events.Generator(job["job_id"], job["project_id"], job["filter"], job["submit_ms"],
                            int(job["params"]["rows"]))


def write_waf_csv(job, f):
    gen = generator(job)
    f.write(gen.header().encode())
    for chunk in gen.chunks(0, gen.rows):
        f.write(chunk.encode())


def build_hss(job, tmp):
    p = job["params"]
    level = int(p["compresslevel"])
    nfiles = max(1, int(p["files"]))
    names = csv_names(nfiles, int(p["folders"]), "hss-events")
    dt = _date_time(job["submit_ms"])
    cols = job["columns"]
    rows = list(hss.rows(job["job_id"], job["project_id"], job["filter"], job["submit_ms"],
                         int(p["rows"])))
    hdr = hss.header(cols).encode("utf-8")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True,
                         compresslevel=level) as zf:
        for i, name in enumerate(names):
            lo, hi = i * len(rows) // nfiles, (i + 1) * len(rows) // nfiles
            with zf.open(_zinfo(name, dt, level), "w", force_zip64=(hi - lo) * 600 > 0x7FFFFFFF) as w:
                w.write(hdr)
                for r in rows[lo:hi]:
                    w.write(hss.line(cols, r).encode("utf-8"))


def build_waf_zip(job, tmp):
    p = job["params"]
    level = int(p["compresslevel"])
    gen = generator(job)
    nfiles = max(1, int(p["files"]))
    names = csv_names(nfiles, int(p["folders"]))
    dt = _date_time(job["submit_ms"])
    manifest = {"job_id": job["job_id"], "project_id": job["project_id"],
                "filter": job["filter"], "rows": gen.count(), "files": names,
                "columns": gen.cols, "generated_by": "hwcloud-emulator"}
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True,
                         compresslevel=level) as zf:
        zf.writestr(_zinfo("manifest.json", dt, level),
                    json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        hdr = gen.header().encode()
        for i, name in enumerate(names):
            lo, hi = i * gen.rows // nfiles, (i + 1) * gen.rows // nfiles
            est = len(hdr) + (hi - lo) * gen.max_row_len()
            with zf.open(_zinfo(name, dt, level), "w",
                         force_zip64=est > 0x7FFFFFFF) as w:
                w.write(hdr)
                for chunk in gen.chunks(lo, hi):
                    w.write(chunk.encode())


class _RawName(zipfile.ZipInfo):
    """A ZipInfo whose name is written as raw bytes with the UTF-8 flag off."""
    __slots__ = ("raw_name",)

    def _encodeFilenameFlags(self):
        return self.raw_name, self.flag_bits & ~0x800


LIAR = "liar.csv"
LIAR_DECLARED = 16

# (name, content or None, kind, what a safe reader should do) -- documented in EMULATOR.md
HOSTILE_ENTRIES = [
    ("events.csv", "legit", "file", "show it (a normal file)"),
    ("../x", "escape 1", "file", "never write/show outside the job dir: drop or sanitise"),
    ("../../etc/evil", "escape 2", "file", "never write/show outside the job dir"),
    ("/abs/path.csv", "absolute", "file", "strip the leading '/' or drop"),
    ("link", "/etc/passwd", "symlink", "do not follow; drop or show as a plain file"),
    ("up", "../../..", "symlink", "do not follow; drop or show as a plain file"),
    ("dup.csv", "first copy\n", "file", "duplicate: the last one wins"),
    ("dup.csv", "second copy wins\n", "file", "duplicate: this one is shown"),
    ("status", "not the status\n", "file", "must not shadow the control file"),
    (".job.json", "{}\n", "file", "must not shadow the control file"),
    (".wait", "no\n", "file", "must not shadow the control file"),
    (b"bad\xff\xfe.csv", "invalid utf-8 name\n", "rawname", "show it under some safe name or drop; no crash"),
    ("new\nline.csv", "newline in name\n", "file", "show (a newline is legal in a file name) or drop"),
    (LIAR, "x" * 4096, "liar", "declared size 16, real 4096: reject (EIO) or cap; never overflow"),
]


def build_hostile(job):
    dt = _date_time(job["submit_ms"])
    bio = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, content, kind, _ in HOSTILE_ENTRIES:
                if kind == "rawname":
                    zi = _RawName(name.decode("latin-1"), dt)
                    zi.raw_name = name
                    zi.compress_type = zipfile.ZIP_DEFLATED
                    zi.create_system = 3
                    zi.external_attr = 0o100644 << 16
                elif kind == "symlink":
                    zi = _zinfo(name, dt, 6, 0o120777)
                    zi.compress_type = zipfile.ZIP_STORED
                else:
                    zi = _zinfo(name, dt, 6)
                zf.writestr(zi, content)
    data = bytearray(bio.getvalue())
    _patch_size(data, LIAR.encode(), LIAR_DECLARED)
    return bytes(data)


def _patch_size(data, name, declared):
    """Overwrite the uncompressed size of entry `name` in its local and central headers."""
    eocd = data.rfind(b"PK\x05\x06")
    count, cd_size, cd_off = struct.unpack_from("<HII", data, eocd + 10)
    pos = cd_off
    for _ in range(count):
        (sig,) = struct.unpack_from("<I", data, pos)
        assert sig == 0x02014B50
        nlen, xlen, clen = struct.unpack_from("<HHH", data, pos + 28)
        lho = struct.unpack_from("<I", data, pos + 42)[0]
        if bytes(data[pos + 46:pos + 46 + nlen]) == name:
            struct.pack_into("<I", data, pos + 24, declared)
            struct.pack_into("<I", data, lho + 22, declared)
        pos += 46 + nlen + xlen + clen


class Builder:
    """Builds archives in background threads (at most `workers` at once), once per job."""

    def __init__(self, store, log, workers=2):
        self.store = store
        self.log = log
        self.sem = threading.Semaphore(workers)
        self.lock = threading.Lock()
        self.events = {}   # job_id -> threading.Event (set when build finished)
        self.errors = {}

    def ensure(self, job):
        """Start building `job` unless built or building; returns its Event."""
        jid = job["job_id"]
        with self.lock:
            ev = self.events.get(jid)
            if ev is not None:
                return ev
            ev = self.events[jid] = threading.Event()
            if os.path.exists(self.store.archive_path(job)):
                ev.set()
                return ev
        threading.Thread(target=self._run, args=(job, ev), daemon=True,
                         name="build-" + jid[:8]).start()
        return ev

    def _run(self, job, ev):
        jid = job["job_id"]
        try:
            with self.sem:
                t0 = time.time()
                build(job, self.store.archive_path(job))
                self.log("built archive %s (%d bytes) in %.2fs" % (
                    jid, os.path.getsize(self.store.archive_path(job)),
                    time.time() - t0))
        except Exception as e:  # keep serving; the download reports 500
            self.errors[jid] = repr(e)
            self.log("building archive %s failed: %r" % (jid, e))
        finally:
            ev.set()

    def quiesce(self, timeout=30):
        """Wait for running builds to end, then forget every build (admin reset)."""
        with self.lock:
            evs = list(self.events.values())
        for ev in evs:
            ev.wait(timeout)
        with self.lock:
            self.events.clear()
            self.errors.clear()

    def is_built(self, job):
        return os.path.exists(self.store.archive_path(job))

    def forget(self, jid):
        with self.lock:
            self.events.pop(jid, None)


# ---- more hostile archives (knob `hostile_kind`), written with rawzip -------
# Each kind's entries and what a safe reader should do are in EMULATOR.md.
HOSTILE_KINDS = ("names", "deep", "entries", "bomb", "zip64", "many")
BOMB_SIZE = 20 << 30         # one deflated entry of zeros, ~21 MB compressed
ZIP64_SIZE = 4608 << 20      # 4.5 GiB, ~4.6 MB compressed
MANY_DEFAULT = 1000000


def check_kind(kind):
    """Raises ValueError unless `kind` names a hostile archive ("many:N" included)."""
    name, _, n = kind.partition(":")
    if name not in HOSTILE_KINDS or (n and (name != "many" or not n.isdigit()
                                            or not 1 <= int(n) <= 5000000)):
        raise ValueError("hostile_kind must be one of %s (or many:N, N <= 5000000)"
                         % ", ".join(HOSTILE_KINDS))
    return kind


def _c(s):
    return s.encode() if isinstance(s, str) else s


def names_entries():
    """(raw name, content, unix mode) of the `names` kind; content is unique."""
    out = [
        (b"ok.csv", b"ok\n", 0o100644),
        (b"tab\there.csv", b"tab\n", 0o100644),
        (b"esc\x1b[31mred.csv", b"esc\n", 0o100644),
        (b"cr\rret.csv", b"cr\n", 0o100644),
        (b"del\x7f.csv", b"del\n", 0o100644),
        (b"bell\x07.csv", b"bell\n", 0o100644),
        (b"nul\x00hidden.csv", b"nul\n", 0o100644),
        (b"..\\..\\win.csv", b"backslash\n", 0o100644),
        (b"a/./b/../c.csv", b"dots\n", 0o100644),
        (b"./dot.csv", b"dot\n", 0o100644),
        (b"//double//slash.csv", b"double\n", 0o100644),
        (b"..", b"dotdot-only\n", 0o100644),
        (b"/", b"slash-only\n", 0o100644),
        (b"", b"empty-name\n", 0o100644),
        (b"clash", b"clash-file\n", 0o100644),
        (b"clash/inner.csv", b"clash-inner\n", 0o100644),
        (b"pct\xff.csv", b"pct-raw\n", 0o100644),
        (b"pct%FF.csv", b"pct-literal\n", 0o100644),
        (b"status/inner.csv", b"status-dir\n", 0o100644),
        (b"chardev", b"", 0o020644),
        (b"fifo", b"", 0o010644),
        (b"socket", b"", 0o140644),
        (b"longlink", b"t" * 5000, 0o120777),
        (b"caf\xc3\xa9.csv", b"nfc\n", 0o100644),
        (b"cafe\xcc\x81.csv", b"nfd\n", 0o100644),
    ]
    return out


def deep_entries():
    return [
        (b"ok.csv", b"ok\n"),
        (b"d/" * 9999 + b"deep10000.csv", b"10000 deep\n"),
        (b"d/" * 255 + b"deep256.csv", b"256 deep\n"),
        (b"d/" * 256 + b"deep257.csv", b"257 deep\n"),
        (b"L" * 300 + b".csv", b"long component\n"),
        (b"/".join([b"p" * 250] * 20) + b"/long-path.csv", b"path of 5000 bytes\n"),
    ]


def _entries_kind(w):
    ok = b"id,time\n1,2\n"
    w.add(b"ok.csv", ok)
    ok_off = 0
    # encrypted (general purpose flag bit 0): 12-byte header + "ciphertext"
    w.add(b"encrypted.csv", b"\x13" * 12 + b"secret\n", crc=zlib.crc32(b"secret\n"),
          usize=7, flags=0x801)
    # unknown compression methods
    for m in (77, 99):
        w.add(b"method%d.csv" % m, b"opaque bytes\n", method=m, usize=13,
              crc=zlib.crc32(b"opaque bytes\n"))
    # declared size far above the real one (deflate of 100 bytes says 1 GiB)
    real = b"b" * 100
    d = zlib.compressobj(6, zlib.DEFLATED, -15)
    comp = d.compress(real) + d.flush()
    w.add(b"bigliar.csv", comp, method=8, usize=1 << 30, crc=zlib.crc32(real))
    # stored entry whose compressed size runs past the end of the file
    w.add(b"csizeliar.csv", b"short\n", usize=1 << 30, csize=1 << 30)
    # wrong CRC
    w.add(b"badcrc.csv", b"crc mismatch\n", crc=zlib.crc32(b"crc mismatch\n") ^ 0xDEADBEEF)
    # deflate stream cut in the middle (sizes consistent with the cut bytes)
    real = bytes(range(256)) * 64
    d = zlib.compressobj(6, zlib.DEFLATED, -15)
    comp = (d.compress(real) + d.flush())[:-20]
    w.add(b"truncated.csv", comp, method=8, usize=len(real), crc=zlib.crc32(real))
    w.add(b"after.csv", b"after the broken ones\n")
    return ok_off


def build_hostile_kind(kind, job, f):
    dt = _date_time(job["submit_ms"])
    w = rawzip.Writer(f, dt)
    name, _, n = kind.partition(":")
    if name == "names":
        for raw, content, mode in names_entries():
            w.add(raw, content, mode=mode)
    elif name == "deep":
        for raw, content in deep_entries():
            w.add(raw, content)
    elif name == "entries":
        _entries_kind(w)
    elif name == "bomb":
        w.add(b"readme.csv", b"the next entry inflates 1000:1 to 20 GiB\n")
        w.add_zeros(b"bomb.bin", BOMB_SIZE)
        w.add(b"after.csv", b"after the bomb\n")
    elif name == "zip64":
        w.add_zeros(b"big.bin", ZIP64_SIZE)
        w.add(b"after.csv", b"after the 4.5 GiB entry\n")
    elif name == "many":
        count = int(n) if n else MANY_DEFAULT
        for i in range(count):
            nm = b"d%04d/f%07d" % (i // 1000, i)
            w.add(nm, nm[-4:] + b"\n")
    else:
        raise ValueError("unknown hostile kind %r" % kind)
    w.close()
