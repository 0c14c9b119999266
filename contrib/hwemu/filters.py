# filters.py -- owns validation of the WAF export-job filter (the submit body),
# mirroring what the cloud rejects with 400 (WAF.00011001 for a body that is
# not a JSON object, WAF.00011003 for a field or column it does not accept).
RECENT = ("yesterday", "today", "3days", "1week", "1month")

# The columns the generator fills (events.py); the order of `ALL` in tests.
COLUMNS = ("id", "time", "policyid", "sip", "host", "host_id", "url", "attack", "rule",
           "action", "payload", "payload_location", "request_line", "status", "region",
           "process_time", "response_time", "response_size", "cookie", "request_body")
# Every column name the cloud accepts in dump_columns (cloud-api.md section 2).
KNOWN_COLUMNS = COLUMNS + ("headers", "response_body", "policy_id", "body",
                           "enterprise_project_id", "enterprise_project_name")

ARRAY_FIELDS = ("ids", "nids", "attacks", "nattacks", "rules", "nrules", "sips", "nsips",
                "urls", "nurls", "actions", "nactions", "hosts", "instances")
STRING_FIELDS = ("sip", "url")
KNOWN = ("recent", "dump_columns") + ARRAY_FIELDS + STRING_FIELDS

FAIL_HOST = "fail.example.com"


BAD_BODY = "WAF.00011001"
BAD_PARAM = "WAF.00011003"


class FilterError(Exception):
    def __init__(self, msg, code=BAD_PARAM):
        super().__init__(msg)
        self.code = code


def validate(obj):
    """Raise FilterError(message naming the field and problem) if obj is not a valid filter."""
    if not isinstance(obj, dict):
        raise FilterError("request body must be a JSON object, got %s" % type(obj).__name__,
                          BAD_BODY)
    for k in obj:
        if k not in KNOWN:
            raise FilterError("unknown field '%s'" % k)
    if "recent" not in obj:
        raise FilterError("field 'recent' is required")
    r = obj["recent"]
    if not isinstance(r, str):
        raise FilterError("field 'recent' must be a string")
    if r not in RECENT:
        raise FilterError("field 'recent' must be one of %s, got '%s'" % ("/".join(RECENT), r))
    if "dump_columns" not in obj:
        raise FilterError("field 'dump_columns' is required")
    dc = obj["dump_columns"]
    if not isinstance(dc, list):
        raise FilterError("field 'dump_columns' must be an array of strings")
    if not dc:
        raise FilterError("field 'dump_columns' must not be empty")
    for i, c in enumerate(dc):
        if not isinstance(c, str):
            raise FilterError("field 'dump_columns' element %d must be a string" % i)
        if not c:
            raise FilterError("field 'dump_columns' element %d must not be empty" % i)
        if c not in KNOWN_COLUMNS:
            raise FilterError("field 'dump_columns' has unknown column '%s'" % c)
    for f in ARRAY_FIELDS:
        if f in obj:
            v = obj[f]
            if not isinstance(v, list):
                raise FilterError("field '%s' must be an array of strings" % f)
            for i, e in enumerate(v):
                if not isinstance(e, str):
                    raise FilterError("field '%s' element %d must be a string" % (f, i))
    for f in STRING_FIELDS:
        if f in obj and not isinstance(obj[f], str):
            raise FilterError("field '%s' must be a string" % f)


def is_failure(obj):
    return FAIL_HOST in (obj.get("hosts") or [])
