"""EKS bearer tokens as AWS makes them, with botocore: the independent oracle for the
worker's Rust token code, and the check the local world's authentication webhook
applies (aws-iam-authenticator's server rules).

`presign_url` produces what `aws eks get-token` produces: botocore's STS client
presigns GetCallerIdentity (ExpiresIn=60, GET) with the `x-k8s-aws-id` header signed.
The signing time can be fixed, so a token can be recomputed from its own X-Amz-Date.
"""
import base64
import re
import datetime
import threading
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import botocore.auth
import botocore.session

PREFIX = "k8s-aws-v1."
MAX_TOKEN_BYTES = 4096
LIFETIME = datetime.timedelta(minutes=15)
ALLOWED_PARAMS = {
    "action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date",
    "x-amz-expires", "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders",
}
_clock_lock = threading.Lock()
_session = botocore.session.get_session()


def presign_url(access_key, secret_key, session_token, region, cluster, amz_date=None):
    """The presigned GetCallerIdentity URL `aws eks get-token` makes; `amz_date`
    (YYYYMMDDTHHMMSSZ) fixes the signing time."""
    client = _session.create_client(
        "sts", region_name=region, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, aws_session_token=session_token,
        endpoint_url=f"https://sts.{region}.amazonaws.com",
    )

    def add_cluster_header(request, **_):
        request.headers["x-k8s-aws-id"] = cluster

    client.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    with _clock_lock:
        if amz_date is None:
            return client.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
        fixed = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: fixed):
            return client.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")


def encode(url):
    return PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


class Rejected(Exception):
    """A token the server refuses; the message says which rule."""


def parse(token, cluster, now=None, lifetime=LIFETIME):
    """Applies aws-iam-authenticator's server checks to `token` for `cluster`, all but
    the signature; `lifetime` is how long after its X-Amz-Date a token is accepted
    (15 minutes on EKS). Returns (url, params by lower-case name, access key id, region)."""
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if len(token) > MAX_TOKEN_BYTES:
        raise Rejected(f"token is {len(token)} bytes, over {MAX_TOKEN_BYTES}")
    if not token.startswith(PREFIX):
        raise Rejected("token is missing the k8s-aws-v1. prefix")
    b64 = token[len(PREFIX):]
    if "=" in b64:
        raise Rejected("token is padded base64; base64url without padding is expected")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", b64):
        raise Rejected("token is not base64url: characters outside A-Z a-z 0-9 - _")
    try:
        url = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).decode()
    except Exception as e:  # noqa: BLE001 - any decoding failure is a rejection
        raise Rejected(f"token is not base64url: {e}") from e
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise Rejected(f"unexpected scheme {parts.scheme!r}")
    host = parts.hostname or ""
    labels = host.split(".")
    if not (len(labels) >= 4 and labels[0] == "sts" and (host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn"))) and host != "sts.amazonaws.com":
        raise Rejected(f"unexpected hostname {host!r}: not an STS host")
    if parts.path != "/":
        raise Rejected(f"unexpected path {parts.path!r}")
    params = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        lk = k.lower()
        if lk not in ALLOWED_PARAMS:
            raise Rejected(f"non-whitelisted query parameter {k!r}")
        if lk in params:
            raise Rejected(f"query parameter {k!r} given more than once")
        params[lk] = v
    if params.get("action") != "GetCallerIdentity":
        raise Rejected("unexpected action parameter in pre-signed URL")
    if params.get("version") != "2011-06-15":
        raise Rejected("unexpected version parameter")
    signed = params.get("x-amz-signedheaders", "").split(";")
    if "x-k8s-aws-id" not in signed:
        raise Rejected("x-k8s-aws-id is not among the signed headers")
    try:
        expires = int(params.get("x-amz-expires", ""))
    except ValueError as e:
        raise Rejected("X-Amz-Expires is not a number") from e
    if not 0 <= expires <= 900:
        raise Rejected(f"X-Amz-Expires {expires} is outside 0..900")
    try:
        date = datetime.datetime.strptime(params.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ")
    except ValueError as e:
        raise Rejected("X-Amz-Date is malformed") from e
    if now > date + lifetime:
        raise Rejected(f"token expired: X-Amz-Date {params['x-amz-date']} is more than {lifetime} ago")
    if date > now + datetime.timedelta(minutes=5):
        raise Rejected("X-Amz-Date is in the future")
    cred = params.get("x-amz-credential", "").split("/")
    if len(cred) != 5 or cred[3] != "sts" or cred[4] != "aws4_request":
        raise Rejected("X-Amz-Credential is malformed")
    region = cred[2]
    if not host == "sts.amazonaws.com" and labels[1] != region:
        raise Rejected(f"the credential scope's region {region} is not the host's {labels[1]}")
    return url, params, cred[0], region


def verify(token, cluster, secret_for, now=None, lifetime=LIFETIME):
    """Checks `token` for `cluster` entirely: the server rules, then the signature,
    recomputed by botocore with the secret `secret_for(access_key)` returns (a pair
    secret, session token, or None for an unknown key). Returns the presigned URL."""
    url, params, access_key, region = parse(token, cluster, now, lifetime)
    found = secret_for(access_key)
    if found is None:
        raise Rejected(f"unknown access key {access_key}")
    secret, session_token = found
    if params.get("x-amz-security-token") != session_token and (session_token or params.get("x-amz-security-token")):
        raise Rejected("the security token does not belong to the access key")
    expected = presign_url(access_key, secret, session_token, region, cluster, params["x-amz-date"])
    want = dict((k.lower(), v) for k, v in parse_qsl(urlsplit(expected).query))["x-amz-signature"]
    import hmac
    if not hmac.compare_digest(want, params.get("x-amz-signature", "")):
        raise Rejected("signature mismatch (wrong secret, cluster name, host or date)")
    return url


if __name__ == "__main__":
    # Oracle for tests: eks_token.py ACCESS_KEY SECRET SESSION_TOKEN|- REGION CLUSTER AMZ_DATE
    import sys
    ak, sk, st, region, cluster, amz_date = sys.argv[1:7]
    print(encode(presign_url(ak, sk, None if st == "-" else st, region, cluster, amz_date)))
