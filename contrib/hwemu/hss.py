# hss.py -- owns the HSS side: validation of the event-export call's query
# parameters and column body (cloud-api.md section 6, 400 HSS.0001 naming the
# parameter), the HSS event columns, and the deterministic synthetic HSS events
# (filter-honouring CSV rows written into the task's zip by archive.py).
import hashlib
import json
import random

from . import events

BAD = "HSS.0001"          # invalid parameter
BAD_BODY = "HSS.0011"     # malformed request body

CATEGORIES = ("host", "container")
SEVERITIES = ("Security", "Low", "Medium", "High", "Critical")
HANDLE_STATUS = ("unhandled", "handled")
ATTACK_TAGS = ("attack_success", "attack_attempt", "attack_blocked", "abnormal_behavior",
               "collapsible_host", "system_vulnerability")
ASSET_VALUES = ("important", "common", "test")
STRING_PARAMS = ("host_name", "host_id", "private_ip", "public_ip", "container_name",
                 "cluster_id", "event_name")
ARRAY_PARAMS = ("severity_list", "event_types", "event_class_ids")
SINGLE_PARAMS = ("category", "enterprise_project_id", "last_days", "begin_time", "end_time",
                 "severity", "handle_status", "attack_tag", "asset_value") + STRING_PARAMS
KNOWN_PARAMS = SINGLE_PARAMS + ARRAY_PARAMS
MAX_SPAN_MS = 2 * 86400 * 1000
DEFAULT_LAST_DAYS = 1
FAIL_HOST = "fail.example.com"   # host_name=fail.example.com -> the task ends in failure

# key -> default header (the HSS console's English column titles)
COLUMNS = {
    "event_id": "Event ID", "event_name": "Event Name", "event_type": "Event Type",
    "event_class_id": "Event Class", "severity": "Severity", "handle_status": "Status",
    "attack_tag": "Attack Tag", "asset_value": "Asset Importance", "host_name": "Server Name",
    "host_id": "Server ID", "private_ip": "Private IP", "public_ip": "EIP",
    "container_name": "Container", "cluster_id": "Cluster ID", "occur_time": "Occurred",
    "recent_occur_time": "Last Occurred", "event_count": "Occurrences",
    "category": "Category", "description": "Description", "enterprise_project_id":
    "Enterprise Project",
}
DEFAULT_COLUMNS = [[k, COLUMNS[k]] for k in (
    "event_id", "event_name", "event_type", "severity", "handle_status", "host_name",
    "private_ip", "occur_time")]

# event_type -> (event_class_id, event_name)
EVENT_TYPES = {
    1001: ("malware_0001", "Malware"), 1010: ("rootkit_0001", "Rootkit"),
    2001: ("vul_exp_0001", "Vulnerability exploit"), 3002: ("abnormal_shell_0001", "Reverse shell"),
    3007: ("process_0001", "Abnormal process behavior"), 4004: ("login_0001", "Brute-force attack"),
    4006: ("login_0002", "Abnormal login"), 4014: ("user_0001", "Suspicious account"),
    5001: ("webshell_0001", "Web shell"), 6001: ("k8s_0001", "Container escape"),
}
HOSTS = (("ecs-web-01", "192.168.0.11", "203.0.113.21"), ("ecs-db-01", "192.168.0.12", ""),
         ("ecs-app-02", "192.168.1.20", "203.0.113.22"), ("bastion", "192.168.9.9", "198.51.100.5"))
CONTAINERS = (("nginx-7f9c", "cce-prod"), ("redis-0", "cce-prod"), ("api-5d4b", "cce-test"))


class ParamError(Exception):
    def __init__(self, msg, code=BAD):
        super().__init__(msg)
        self.code = code


def _int(name, v):
    try:
        if not v or v.strip() != v or not (v.lstrip("-").isdigit()):
            raise ValueError
        return int(v)
    except ValueError:
        raise ParamError("parameter '%s' must be an integer, got '%s'" % (name, v))


def validate_params(pairs):
    """pairs: [(name, value)] from the query string.  Returns the normalised filter
    {name: value (int/str) or [values]}; raises ParamError naming the parameter."""
    out = {}
    for k, v in pairs:
        if k not in KNOWN_PARAMS:
            raise ParamError("unknown parameter '%s'" % k)
        if k in SINGLE_PARAMS and k in out:
            raise ParamError("parameter '%s' given more than once" % k)
        if not 1 <= len(v) <= 256:
            raise ParamError("parameter '%s' must be 1 to 256 characters" % k)
        if k in ARRAY_PARAMS:
            out.setdefault(k, []).append(v)
        else:
            out[k] = v
    if "category" not in out:
        raise ParamError("parameter 'category' is required")
    if out["category"] not in CATEGORIES:
        raise ParamError("parameter 'category' must be host or container, got '%s'" % out["category"])
    for k in ("last_days", "begin_time", "end_time"):
        if k in out:
            out[k] = _int(k, out[k])
    if "last_days" in out:
        if not 1 <= out["last_days"] <= 30:
            raise ParamError("parameter 'last_days' must be 1 to 30")
        if "begin_time" in out or "end_time" in out:
            raise ParamError("parameter 'last_days' cannot be used with begin_time/end_time")
    if ("begin_time" in out) != ("end_time" in out):
        raise ParamError("parameters 'begin_time' and 'end_time' must be given together")
    if "begin_time" in out:
        b, e = out["begin_time"], out["end_time"]
        if b < 0:
            raise ParamError("parameter 'begin_time' must not be negative")
        if e < b:
            raise ParamError("parameter 'end_time' must not be before 'begin_time'")
        if e - b > MAX_SPAN_MS:
            raise ParamError("parameters 'begin_time' and 'end_time' are more than 2 days apart")
    for k, allowed in (("severity", SEVERITIES), ("handle_status", HANDLE_STATUS),
                       ("attack_tag", ATTACK_TAGS), ("asset_value", ASSET_VALUES)):
        if k in out and out[k] not in allowed:
            raise ParamError("parameter '%s' must be one of %s, got '%s'"
                             % (k, "/".join(allowed), out[k]))
    for s in out.get("severity_list", []):
        if s not in SEVERITIES:
            raise ParamError("parameter 'severity_list' must hold %s, got '%s'"
                             % ("/".join(SEVERITIES), s))
    if "event_types" in out:
        out["event_types"] = [_int("event_types", v) for v in out["event_types"]]
    return out


def validate_columns(body, ctype):
    """The optional body: [[key, header], ...].  Returns the columns (default when
    there is no body); raises ParamError."""
    if not body.strip():
        return [list(c) for c in DEFAULT_COLUMNS]
    if ctype != "application/json":
        raise ParamError("Content-Type must be application/json for a body", BAD_BODY)
    try:
        cols = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ParamError("invalid JSON body: %s" % e, BAD_BODY)
    if not isinstance(cols, list) or not cols:
        raise ParamError("body must be a non-empty array of [key, header] pairs", BAD_BODY)
    for i, c in enumerate(cols):
        if not (isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) and x for x in c)):
            raise ParamError("body element %d must be a [key, header] pair of non-empty strings" % i)
        if c[0] not in COLUMNS:
            raise ParamError("body element %d has unknown column '%s'" % (i, c[0]))
    return cols


def is_failure(flt):
    return flt.get("host_name") == FAIL_HOST


def window(flt, submit_ms):
    """[begin, end] in ms of the events of the task."""
    if "begin_time" in flt:
        return flt["begin_time"], flt["end_time"]
    days = flt.get("last_days", DEFAULT_LAST_DAYS)
    return submit_ms - days * events.DAY_MS, submit_ms


def rows(task_id, project_id, flt, submit_ms, n):
    """Yield dict rows (deterministic in the arguments) honouring the filter."""
    rng = random.Random("hss:" + task_id)
    sev = list(SEVERITIES)
    if "severity" in flt:
        sev = [flt["severity"]]
    if "severity_list" in flt:
        sev = [s for s in sev if s in flt["severity_list"]]
    types = list(EVENT_TYPES)
    if "event_types" in flt:
        types = [t for t in flt["event_types"]]
    if "event_class_ids" in flt:
        cls = set(flt["event_class_ids"])
        types = [t for t in types if EVENT_TYPES.get(t, ("custom_%d" % t,))[0] in cls]
    if not sev or not types:
        return
    b, e = window(flt, submit_ms)
    prefix = hashlib.md5(("hss:" + project_id).encode()).hexdigest()[:20]
    for i in range(n):
        t = rng.choice(types)
        cls, name = EVENT_TYPES.get(t, ("custom_%d" % t, "Event type %d" % t))
        host, pip, eip = rng.choice(HOSTS)
        cont, cluster = rng.choice(CONTAINERS)
        ts = b + (e - b) * i // max(n, 1)
        r = {"event_id": "%s%012x" % (prefix, i), "event_name": flt.get("event_name", name),
             "event_type": str(t), "event_class_id": cls, "severity": rng.choice(sev),
             "handle_status": flt.get("handle_status", rng.choice(HANDLE_STATUS)),
             "attack_tag": flt.get("attack_tag", rng.choice(ATTACK_TAGS)),
             "asset_value": flt.get("asset_value", rng.choice(ASSET_VALUES)),
             "host_name": flt.get("host_name", host),
             "host_id": flt.get("host_id", hashlib.md5(host.encode()).hexdigest()),
             "private_ip": flt.get("private_ip", pip), "public_ip": flt.get("public_ip", eip),
             "container_name": "", "cluster_id": "",
             "occur_time": str(ts), "recent_occur_time": str(ts + rng.randint(0, 60000)),
             "event_count": str(rng.randint(1, 20)), "category": flt["category"],
             "description": "%s on %s, see \"details\", code %d" % (name, host, t),
             "enterprise_project_id": flt.get("enterprise_project_id", "0")}
        if flt["category"] == "container":
            r["container_name"] = flt.get("container_name", cont)
            r["cluster_id"] = flt.get("cluster_id", cluster)
        yield r


def header(columns):
    return ",".join(events.csvq(h) for _, h in columns) + "\n"


def line(columns, row):
    return ",".join(events.csvq(row[k]) for k, _ in columns) + "\n"


def count(flt, n):
    """Rows that rows() yields for these arguments (the task's record_total_num)."""
    if "severity" in flt and "severity_list" in flt and flt["severity"] not in flt["severity_list"]:
        return 0
    if "event_class_ids" in flt:
        cls = set(flt["event_class_ids"])
        types = flt.get("event_types", list(EVENT_TYPES))
        if not [t for t in types if EVENT_TYPES.get(t, ("custom_%d" % t,))[0] in cls]:
            return 0
    return n
