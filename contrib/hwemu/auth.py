# auth.py -- owns authentication: the SDK-HMAC-SHA256 (AK/SK) canonical request,
# signer and verifier, the emulator clock used for X-Sdk-Date checks, the
# IAM password login and the issued/static token store.
import datetime
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import urllib.parse

ALGORITHM = "SDK-HMAC-SHA256"
DATE_WINDOW = 15 * 60  # seconds


def sdk_date(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def parse_sdk_date(s):
    """'YYYYMMDDTHHMMSSZ' -> epoch seconds, or None if malformed."""
    try:
        d = datetime.datetime.strptime(s, "%Y%m%dT%H%M%SZ")
    except (ValueError, TypeError):
        return None
    return d.replace(tzinfo=datetime.timezone.utc).timestamp()


def rfc3339(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.000000Z")


class Clock:
    """The emulator's notion of 'now': wall clock + offset, or a fixed instant."""

    def __init__(self, offset=0.0, fixed=None):
        self.offset = float(offset)
        self.fixed = fixed  # epoch seconds or None

    def now(self):
        if self.fixed is not None:
            return self.fixed
        return time.time() + self.offset


def _enc(s):
    return urllib.parse.quote(s, safe="-_.~")


def canonical_uri(raw_path):
    path = urllib.parse.unquote(raw_path)
    out = "/".join(_enc(seg) for seg in path.split("/"))
    if not out.endswith("/"):
        out += "/"
    return out


def canonical_query(pairs):
    enc = sorted((_enc(k), _enc(v)) for k, v in pairs)
    return "&".join("%s=%s" % kv for kv in enc)


def canonical_request(method, raw_path, query_pairs, headers, signed, body):
    """headers: dict lower-case name -> value. signed: list of lower-case names."""
    ch = "".join("%s:%s\n" % (h, headers.get(h, "").strip()) for h in signed)
    return "\n".join([
        method.upper(),
        canonical_uri(raw_path),
        canonical_query(query_pairs),
        ch,
        ";".join(signed),
        hashlib.sha256(body).hexdigest(),
    ])


def signature(sk, date, creq):
    sts = "%s\n%s\n%s" % (ALGORITHM, date, hashlib.sha256(creq.encode()).hexdigest())
    return hmac.new(sk.encode(), sts.encode(), hashlib.sha256).hexdigest()


def sign(ak, sk, method, raw_path, query_pairs, headers, body):
    """Returns the Authorization header value; headers must hold every header to sign."""
    low = {k.lower(): v for k, v in headers.items()}
    signed = sorted(low)
    creq = canonical_request(method, raw_path, query_pairs, low, signed, body)
    sig = signature(sk, low["x-sdk-date"], creq)
    return "%s Access=%s, SignedHeaders=%s, Signature=%s" % (ALGORITHM, ak, ";".join(signed), sig)


def parse_authorization(value):
    """-> (ak, [signed headers], signature) or None."""
    if not value or not value.startswith(ALGORITHM + " "):
        return None
    fields = {}
    for part in value[len(ALGORITHM) + 1:].split(","):
        k, sep, v = part.strip().partition("=")
        if not sep:
            return None
        fields[k.strip()] = v.strip()
    try:
        signed = fields["SignedHeaders"].split(";")
        return fields["Access"], [s for s in signed if s], fields["Signature"]
    except KeyError:
        return None


class AuthError(Exception):
    def __init__(self, status, code, msg):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


class Authenticator:
    """Holds accepted credentials and issued tokens; verifies requests."""

    def __init__(self, clock, keys=(), static_tokens=(), users=(), token_ttl=86400,
                 token_file=None):
        self.clock = clock
        self.keys = {}  # ak -> (sk, security_token or None)
        for ak, sk, st in keys:
            self.keys[ak] = (sk, st)
        self.static_tokens = set(static_tokens)
        self.users = list(users)  # (user, password, domain)
        self.token_ttl = float(token_ttl)
        self.token_file = token_file
        self.lock = threading.Lock()
        self.tokens = {}  # token -> {"project":..., "expires":..., "issued":..., "user":..., "domain":...}
        if token_file and os.path.exists(token_file):
            try:
                with open(token_file) as f:
                    self.tokens = json.load(f)
            except (OSError, ValueError):
                self.tokens = {}

    def _save_tokens(self):
        if not self.token_file:
            return
        tmp = self.token_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.tokens, f)
        os.replace(tmp, self.token_file)

    # ---- IAM -----------------------------------------------------------
    def login(self, user, password, domain, project):
        ok = any(hmac.compare_digest(u.encode(), user.encode()) and
                 hmac.compare_digest(p.encode(), password.encode()) and
                 hmac.compare_digest(d.encode(), domain.encode())
                 for u, p, d in self.users)
        if not ok:
            raise AuthError(401, "IAM.0004", "The username or password is wrong.")
        now = self.clock.now()
        tok = "MIIT" + secrets.token_urlsafe(384)
        rec = {"project": project, "issued": now, "expires": now + self.token_ttl,
               "user": user, "domain": domain}
        with self.lock:
            # drop long-expired tokens
            for t in [t for t, r in self.tokens.items() if r["expires"] < now - 86400]:
                del self.tokens[t]
            self.tokens[tok] = rec
            self._save_tokens()
        return tok, rec

    # ---- request verification --------------------------------------------
    def verify(self, method, raw_path, query_pairs, headers, body, project,
               require_project_header=False):
        """headers: dict lower-case -> value.  Returns 'token' or 'aksk'; raises AuthError.
        An X-Project-Id header must name the path's project; with
        require_project_header an AK/SK call must sign one (project-level calls)."""
        token = headers.get("x-auth-token")
        authz = headers.get("authorization")
        if token:
            kind = self._verify_token(token, project)
        elif authz:
            signed = self._verify_aksk(method, raw_path, query_pairs, headers, body, authz)
            if require_project_header and project is not None and "x-project-id" not in signed:
                raise AuthError(401, "APIG.0301",
                                "Incorrect IAM authentication information: "
                                "X-Project-Id header is required and must be signed")
            kind = "aksk"
        else:
            kind = None
        if kind:
            pidh = headers.get("x-project-id")
            if pidh is not None and project is not None and pidh.strip() != project:
                raise AuthError(401, "APIG.0301",
                                "Incorrect IAM authentication information: X-Project-Id '%s' "
                                "does not match the project in the URI" % pidh.strip())
            return kind
        raise AuthError(401, "APIG.0301",
                        "Incorrect IAM authentication information: no X-Auth-Token or Authorization header")

    def _verify_token(self, token, project):
        for st in self.static_tokens:
            if hmac.compare_digest(st.encode(), token.encode()):
                return "token"
        with self.lock:
            rec = self.tokens.get(token)
        if rec is None:
            raise AuthError(401, "APIG.0301", "Incorrect IAM authentication information: verify token failed")
        if rec["expires"] <= self.clock.now():
            raise AuthError(401, "APIG.0301", "Incorrect IAM authentication information: token expired")
        if project is not None and rec["project"] != project:
            raise AuthError(403, "APIG.0302",
                            "The IAM or enterprise project authorization is invalid: token scoped to another project")
        return "token"

    def _verify_aksk(self, method, raw_path, query_pairs, headers, body, authz):
        parsed = parse_authorization(authz)
        if parsed is None:
            raise AuthError(401, "APIG.0301",
                            "Incorrect IAM authentication information: malformed Authorization header")
        ak, signed, sig = parsed
        if "host" not in signed or "x-sdk-date" not in signed:
            raise AuthError(401, "APIG.0301",
                            "Incorrect IAM authentication information: SignedHeaders must include host and x-sdk-date")
        for h in signed:
            if h != h.lower() or h not in headers:
                raise AuthError(401, "APIG.0301",
                                "Incorrect IAM authentication information: signed header '%s' missing" % h)
        date = headers.get("x-sdk-date", "")
        ts = parse_sdk_date(date)
        if ts is None:
            raise AuthError(401, "APIG.0301",
                            "Incorrect IAM authentication information: invalid X-Sdk-Date date format")
        if abs(ts - self.clock.now()) > DATE_WINDOW:
            raise AuthError(401, "APIG.0301",
                            "Incorrect IAM authentication information: X-Sdk-Date date is more than 15 minutes from server time")
        entry = self.keys.get(ak)
        if entry is None:
            raise AuthError(401, "APIG.0301",
                            "Incorrect IAM authentication information: access key (AK) does not exist")
        sk, sectok = entry
        if sectok is not None:
            got = headers.get("x-security-token", "")
            if not hmac.compare_digest(got.encode(), sectok.encode()):
                raise AuthError(401, "APIG.0301",
                                "Incorrect IAM authentication information: X-Security-Token missing or wrong")
        creq = canonical_request(method, raw_path, query_pairs, headers, signed, body)
        want = signature(sk, date, creq)
        if not hmac.compare_digest(want.encode(), sig.encode()):
            raise AuthError(401, "APIG.0301",
                            "Incorrect IAM authentication information: verify aksk signature fail "
                            "(signature does not match)")
        return signed
