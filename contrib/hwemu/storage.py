# storage.py -- owns the object-storage side of WAF downloads: the bucket and
# object names of event-log files, pre-signed URLs (OBS/S3 V2 query signing:
# AWSAccessKeyId, Expires, Signature = base64 HMAC-SHA1 of
# "GET\n\n\n{Expires}\n/{bucket}/{object}" keyed with the storage secret), their
# verification, and the XML error bodies storage answers with.
import base64
import hashlib
import hmac
import urllib.parse
from xml.sax.saxutils import escape

ACCESS_KEY = "HWEMUSTORAGEAK0000001"
PREFIX = "/_obs/"
# Request headers that carry credentials: storage refuses them (cloud-api.md section 5).
CREDENTIAL_HEADERS = ("authorization", "x-auth-token", "x-sdk-date", "x-security-token",
                      "x-project-id")


def bucket_of(project_id):
    return "hwemu-waf-logs-%s" % project_id[:12].lower()


def string_to_sign(method, expires, bucket, obj):
    return "%s\n\n\n%d\n/%s/%s" % (method, expires, bucket, obj)


def signature(secret, method, expires, bucket, obj):
    mac = hmac.new(secret.encode(), string_to_sign(method, expires, bucket, obj).encode(),
                   hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def presign(base, secret, bucket, obj, expires, method="GET"):
    sig = signature(secret, method, expires, bucket, obj)
    return "%s%s%s/%s?AWSAccessKeyId=%s&Expires=%d&Signature=%s" % (
        base.rstrip("/"), PREFIX, bucket, urllib.parse.quote(obj, safe="/-_.~"), ACCESS_KEY,
        expires, urllib.parse.quote(sig, safe=""))


def split_path(raw_path):
    """'/_obs/{bucket}/{object}' -> (bucket, object) decoded, or None."""
    if not raw_path.startswith(PREFIX):
        return None
    bucket, _, obj = raw_path[len(PREFIX):].partition("/")
    if not bucket or not obj:
        return None
    return urllib.parse.unquote(bucket), urllib.parse.unquote(obj)


class StorageError(Exception):
    def __init__(self, status, code, msg, headers=None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


def xml_error(code, msg, resource=""):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<Resource>%s</Resource><RequestId>0000018C</RequestId></Error>\n'
            % (escape(code), escape(msg), escape(resource))).encode()


def verify(secret, method, bucket, obj, qpairs, now):
    """Check a pre-signed request; raises StorageError (403) when it is not valid."""
    q = {}
    for k, v in qpairs:
        if k in q:
            raise StorageError(400, "InvalidArgument", "duplicate query parameter %s" % k)
        q[k] = v
    if "AWSAccessKeyId" not in q or "Signature" not in q or "Expires" not in q:
        raise StorageError(403, "AccessDenied", "Anonymous access is forbidden for this operation")
    if q["AWSAccessKeyId"] != ACCESS_KEY:
        raise StorageError(403, "InvalidAccessKeyId",
                           "The access key Id you provided does not exist in our records.")
    try:
        expires = int(q["Expires"])
    except ValueError:
        raise StorageError(403, "AccessDenied", "Invalid date (should be seconds since epoch)")
    want = signature(secret, method, expires, bucket, obj)
    if not hmac.compare_digest(want.encode(), q["Signature"].encode()):
        raise StorageError(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature "
                           "you provided. Check your key and signing method.")
    if now > expires:
        raise StorageError(403, "AccessDenied", "Request has expired")
    return expires
