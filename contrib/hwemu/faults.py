# faults.py -- owns the runtime fault-injection knobs (validation, defaults,
# merge/replace), the per-kind call counters and the hang/cut/corrupt decisions.
import threading

KINDS = ("submit", "query", "list", "download", "token")

# What each generic kind covers (documented in EMULATOR.md):
#   submit   WAF POST /v1/{p}/waf/event/job/export and HSS POST /v5/{p}/event/export
#   query    WAF GET /v1/{p}/waf/async-job/{id} and HSS GET /v5/{p}/event/export-task/{id}
#   list     WAF GET /v1/{p}/waf/event/dump
#   download storage GET {base}/_obs/{bucket}/{object}?... and HSS GET /v5/{p}/download/{id}
#   token    IAM POST /v3/auth/tokens
STORAGE_FAULTS = ("expired", "denied", "500", "503")
# How storage answers HEAD (knob `storage_head`): "signed" checks the URL's
# signature against HEAD like any method, as OBS does (the verb is part of the
# string to sign), so the GET-signed URLs of the list are refused; "any" also
# takes a GET signature for HEAD; "refuse" answers 405 to every HEAD.
STORAGE_HEAD = ("signed", "any", "refuse")

DEFAULTS = {
    "latency_ms": 0,
    "every_nth": 0,
    "nth_status": 503,
    "retry_after": None,
    "nth_calls": list(KINDS),
    "nth_commit": False,
    "reset_every_nth": 0,
    "reset_calls": list(KINDS),
    "hang_calls": [],
    "cut_downloads": 0,
    "slow_download_bps": 0,
    "corrupt_downloads": 0,
    "range": True,
    "hostile": False,
    "hostile_kind": "",
    "bad_reply": "",
    "bad_reply_calls": ["query"],
    "bad_reply_count": 0,
    "storage_fault": "",
    "storage_fault_count": 0,
    "storage_head": "signed",
    "range_416_content_range": True,
}

# Malformed answers (knob `bad_reply`), sent after authentication in place of
# the real one; documented in EMULATOR.md.
BAD_REPLIES = ("not_json", "wrong_types", "missing_fields", "unknown_status", "giant_body",
               "giant_header", "redirect")


class FaultError(ValueError):
    pass


def _check(key, val):
    if key not in DEFAULTS:
        raise FaultError("unknown fault knob '%s'" % key)
    if key == "bad_reply":
        if val in ("", None):
            return ""
        if val not in BAD_REPLIES:
            raise FaultError("knob 'bad_reply' must be one of %s" % ", ".join(BAD_REPLIES))
        return val
    if key == "storage_fault":
        if val in ("", None):
            return ""
        if isinstance(val, int) and not isinstance(val, bool):
            val = str(val)
        if val not in STORAGE_FAULTS:
            raise FaultError("knob 'storage_fault' must be one of %s" % ", ".join(STORAGE_FAULTS))
        return val
    if key == "storage_head":
        if val not in STORAGE_HEAD:
            raise FaultError("knob 'storage_head' must be one of %s" % ", ".join(STORAGE_HEAD))
        return val
    if key in ("nth_calls", "reset_calls", "hang_calls", "bad_reply_calls"):
        if isinstance(val, str):
            val = [v for v in val.split(",") if v]
        if not isinstance(val, list) or any(v not in KINDS for v in val):
            raise FaultError("knob '%s' must be a list of %s" % (key, "/".join(KINDS)))
        return list(val)
    if key in ("range", "hostile", "nth_commit", "range_416_content_range"):
        if not isinstance(val, bool):
            raise FaultError("knob '%s' must be a boolean" % key)
        return val
    if key == "hostile_kind":
        if val in ("", None):
            return ""
        if not isinstance(val, str):
            raise FaultError("knob 'hostile_kind' must be a string")
        from . import archive
        try:
            return archive.check_kind(val)
        except ValueError as e:
            raise FaultError(str(e))
    if key == "retry_after":
        if val is None:
            return None
        if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
            raise FaultError("knob 'retry_after' must be a number of seconds or null")
        return val
    if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
        raise FaultError("knob '%s' must be a non-negative number" % key)
    if key == "nth_status" and not (val == 429 or 500 <= val <= 599):
        raise FaultError("knob 'nth_status' must be 429 or 5xx")
    return int(val) if key != "latency_ms" else val


class Faults:
    def __init__(self):
        self.cond = threading.Condition()
        self.knobs = dict(DEFAULTS)
        self.nth_count = 0
        self.reset_count = 0
        self.generation = 0

    def snapshot(self):
        with self.cond:
            return dict(self.knobs)

    def replace(self, new):
        knobs = dict(DEFAULTS)
        for k, v in new.items():
            knobs[k] = _check(k, v)
        with self.cond:
            self.knobs = knobs
            self.nth_count = self.reset_count = 0
            self.generation += 1
            self.cond.notify_all()

    def merge(self, new):
        checked = {k: _check(k, v) for k, v in new.items()}
        with self.cond:
            self.knobs.update(checked)
            if "every_nth" in checked or "nth_calls" in checked:
                self.nth_count = 0
            if "reset_every_nth" in checked or "reset_calls" in checked:
                self.reset_count = 0
            self.generation += 1
            self.cond.notify_all()

    def wait_hang(self, kind, stopping):
        """Block while `kind` is in hang_calls (until cleared or the server stops).
        Returns True if it hung at all."""
        hung = False
        with self.cond:
            while kind in self.knobs["hang_calls"] and not stopping.is_set():
                hung = True
                self.cond.wait(0.5)
        return hung

    def reset_now(self, kind):
        with self.cond:
            n = self.knobs["reset_every_nth"]
            if n <= 0 or kind not in self.knobs["reset_calls"]:
                return False
            self.reset_count += 1
            return self.reset_count % n == 0

    def nth_now(self, kind):
        """-> (status, retry_after, commit) when this call must fail, else None."""
        with self.cond:
            n = self.knobs["every_nth"]
            if n <= 0 or kind not in self.knobs["nth_calls"]:
                return None
            self.nth_count += 1
            if self.nth_count % n:
                return None
            return self.knobs["nth_status"], self.knobs["retry_after"], self.knobs["nth_commit"]

    def bad_reply_now(self, kind):
        """-> the bad_reply kind when this call must get one, else None.
        bad_reply_count 0 means every call; N > 0 the next N (then it turns off)."""
        with self.cond:
            k = self.knobs
            if not k["bad_reply"] or kind not in k["bad_reply_calls"]:
                return None
            what = k["bad_reply"]
            if k["bad_reply_count"] > 0:
                k["bad_reply_count"] -= 1
                if k["bad_reply_count"] == 0:
                    k["bad_reply"] = ""
            return what

    def storage_fault_now(self):
        """-> the storage fault for this storage request, else None (count 0 = every
        request while set; N > 0 = the next N, then the knob turns itself off)."""
        with self.cond:
            k = self.knobs
            if not k["storage_fault"]:
                return None
            what = k["storage_fault"]
            if k["storage_fault_count"] > 0:
                k["storage_fault_count"] -= 1
                if k["storage_fault_count"] == 0:
                    k["storage_fault"] = ""
            return what

    def take_download(self):
        """-> (cut, corrupt, bps, range_ok) for a download starting now."""
        with self.cond:
            k = self.knobs
            cut = k["cut_downloads"] > 0
            if cut:
                k["cut_downloads"] -= 1
            corrupt = k["corrupt_downloads"] > 0
            if corrupt:
                k["corrupt_downloads"] -= 1
            return cut, corrupt, k["slow_download_bps"], k["range"]
