# bulk.py -- owns seeding a project's event-log list with many files in one
# admin call (POST /_emulator/files/bulk): deterministic ids, object names,
# file names (with name clashes and empty names on demand) and timestamps, so
# that tests of long lists (thousands of files, paging, clashes) cost one
# call and give the same list after a reset.  Files are built on their first
# download, like every seeded file.
import hashlib

from . import archive, filters

MAX_COUNT = 100000
ALLOWED = ("project", "count", "origin", "timestamp", "step_ms", "rows", "format", "recent",
           "name_prefix", "name_suffix", "clash_every", "empty_every", "start", "build")


class BulkError(ValueError):
    pass


def _int(o, key, default, lo, hi=None):
    v = o.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        raise BulkError("'%s' must be an integer from %d%s" % (key, lo,
                                                                " to %d" % hi if hi else ""))
    return v


def _text(o, key, default):
    v = o.get(key, default)
    if not isinstance(v, str) or len(v) > 200:
        raise BulkError("'%s' must be a string of at most 200 characters" % key)
    return v


def file_name(i, prefix, suffix, clash_every, empty_every):
    """The listed `filename` of bulk file i: prefix + 5-digit number + suffix;
    every empty_every-th file (i % n == n - 1) has an empty name, and every
    clash_every-th one takes the name of the file before it."""
    if empty_every and i % empty_every == empty_every - 1:
        return ""
    if clash_every and i % clash_every == clash_every - 1 and i > 0:
        i -= 1
    return "%s%05d%s" % (prefix, i, suffix)


def ids(pid, i):
    """(job id, file id) of bulk file i of project pid: 32 hex digits each."""
    h = lambda what: hashlib.md5(("bulk-%s:%s:%d" % (what, pid, i)).encode()).hexdigest()
    return h("job"), h("file")


def seed(app, o, valid_pid):
    """Adds the files; returns a summary {project, count, first, last, files: [ids]}."""
    for k in o:
        if k not in ALLOWED:
            raise BulkError("unknown key '%s' (allowed: %s)" % (k, ", ".join(ALLOWED)))
    pid = o.get("project")
    if pid is None and len(app.projects) == 1:
        pid = next(iter(app.projects))
    if not isinstance(pid, str) or not valid_pid(pid):
        raise BulkError("'project' (32 letters/digits) is required")
    if "count" not in o:
        raise BulkError("'count' (1 to %d) is required" % MAX_COUNT)
    count = _int(o, "count", None, 1, MAX_COUNT)
    origin = o.get("origin", "daily")
    if origin not in ("daily", "foreign"):
        raise BulkError("origin must be daily or foreign")
    start = _int(o, "start", 0, 0, 10 ** 9)
    newest = _int(o, "timestamp", app.now_ms() - 60000, 0)
    step = _int(o, "step_ms", 60000, 0)
    rows = _int(o, "rows", 3, 0, 10 ** 6)
    fmt = o.get("format", "csv")
    if fmt not in ("csv", "zip", "gzip", "empty"):
        raise BulkError("format must be csv, zip, gzip or empty")
    recent = o.get("recent", "yesterday")
    if recent not in filters.RECENT:
        raise BulkError("recent must be one of %s" % ", ".join(filters.RECENT))
    prefix = _text(o, "name_prefix", "waf-bulk-")
    suffix = _text(o, "name_suffix", ".csv")
    clash_every = _int(o, "clash_every", 0, 0)
    empty_every = _int(o, "empty_every", 0, 0)
    build = o.get("build", False)
    if not isinstance(build, bool):
        raise BulkError("'build' must be a boolean")
    flt = {"recent": recent, "dump_columns": ["id", "time", "sip", "attack"]}
    app.seed(pid)
    out = []
    for n in range(count):
        i = start + n
        ts = newest - n * step
        job_id, file_id = ids(pid, i)
        name = file_name(i, prefix, suffix, clash_every, empty_every)
        rec = app.new_waf_record(pid, flt, ts - 1000, origin, job_id=job_id, file_ts=ts,
                                 link="none", fmt="csv" if fmt == "empty" else fmt, rows=rows,
                                 hostile=False, hostile_kind="")
        if fmt == "empty":  # a 0-byte object, as storage may hold one
            rec["params"]["empty"] = True
        rec["file_id"] = rec["file"]["id"] = file_id
        rec["file_name"] = rec["file"]["filename"] = name
        rec["file"]["obsname"] = "waf/%s/bulk/%s-%05d" % (pid, file_id, i)
        rec["file"]["description"] = "bulk file %d" % i
        if build:  # now, so that timing a client's first reads measures the client
            archive.build(rec, app.store.archive_path(rec))
        app.add_record(rec)
        out.append(file_id)
    return {"project": pid, "count": count, "files": out}
