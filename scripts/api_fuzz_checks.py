"""Schemathesis checks of scripts/api-fuzz.sh (loaded through
SCHEMATHESIS_HOOKS): every error reply of the REST API is the JSON error
`{"error":{"code","message"}}` with the status its code names."""

import json

import schemathesis

STATUS_OF = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}


@schemathesis.check
def error_is_a_json_error(ctx, response, case):
    """4xx/5xx replies: application/json, {"error":{"code","message"}}, a known
    code, and the status that code names (405: code invalid)."""
    status = response.status_code
    if status < 400 or case.operation.path == "/readyz":
        return None
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if not ctype.startswith("application/json"):
        raise AssertionError(f"{status} with content-type {ctype!r}, not a JSON error")
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"{status} body is not JSON: {e}: {response.content[:200]!r}")
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict) or set(err) != {"code", "message"}:
        raise AssertionError(f"{status} body is not {{\"error\":{{\"code\",\"message\"}}}}: {body!r}")
    code, message = err["code"], err["message"]
    if code not in STATUS_OF or not isinstance(message, str) or not message:
        raise AssertionError(f"{status}: unknown code {code!r} or empty message")
    if status != STATUS_OF[code] and not (status == 405 and code == "invalid"):
        raise AssertionError(f"status {status} with code {code!r} (which means {STATUS_OF[code]})")
    return None
