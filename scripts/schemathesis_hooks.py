"""Schemathesis hooks for scripts/schemathesis: a real caller, and ids that name real things.

At import, registers the caller (whose bearer token every authenticated request carries), a
second user, and a group the caller administers with the second user as a member. Generated
ids that are well-formed UUIDs are then mapped to these, so that schema-valid requests reach
the handlers' logic instead of stopping at 403 (somebody else's id) or 404 (an id that names
nothing); ids that are not UUIDs are left alone, so the negative cases stay negative.

`POST /revoke-token` gets a freshly registered user's token on every call, so that revoking it
does not lock the rest of the run out.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import urllib.request
from typing import Any

import schemathesis

BASE_URL = os.environ["ST_BASE_URL"].rstrip("/")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Fields that must name the caller; fields that name another user; the group.
SELF_FIELDS = {"sender_id", "creator_id"}
OTHER_FIELDS = {"receiver_id", "blocked_user_id"}
# `user_id` names the member added or removed on these; the caller everywhere else.
MEMBER_PATHS = {"/add-user-to-group", "/remove-user-from-group"}


def call(method: str, path: str, body: Any = None, token: str | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE_URL + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def register() -> dict[str, Any]:
    return call("POST", "/register")


CALLER = register()
OTHER = register()
GROUP = call(
    "POST",
    "/create-group",
    {"group_name": "schemathesis", "creator_id": CALLER["user_id"], "members": [OTHER["user_id"]]},
    CALLER["token"],
)["group_id"]


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and UUID.match(value) is not None


def real_ids(path: str, data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    for key, value in list(data.items()):
        if key == "members" and isinstance(value, list):
            data[key] = [OTHER["user_id"] if is_uuid(item) else item for item in value]
        elif not is_uuid(value):
            continue
        elif key in SELF_FIELDS or (key == "user_id" and path not in MEMBER_PATHS):
            data[key] = CALLER["user_id"]
        elif key in OTHER_FIELDS or key == "user_id":
            data[key] = OTHER["user_id"]
        elif key == "group_id":
            data[key] = GROUP
    return data


@schemathesis.hook
def before_call(context, case, kwargs):
    # Here rather than in map_body/map_query: this runs for the cases of every phase.
    path = case.operation.path
    if isinstance(case.body, dict):
        real_ids(path, case.body)
    if isinstance(case.query, dict):
        real_ids(path, case.query)
        # A valid long poll waits for up to a second, not 20: the run stays short.
        wait = case.query.get("wait")
        if isinstance(wait, int) and not isinstance(wait, bool) and wait > 1:
            case.query["wait"] = 1


@schemathesis.auth()
class Bearer:
    """The caller's token; a throwaway one for the request that revokes it."""

    def get(self, case, context):
        return CALLER["token"]

    def set(self, case, data, context):
        token = register()["token"] if case.operation.path == "/revoke-token" else data
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {token}"


# What the run got, per operation and status: printed at exit, to show that the generated
# requests reached the handlers' logic (2xx) as well as their refusals (4xx).
STATUSES: dict[str, dict[int, int]] = {}


@schemathesis.hook
def after_call(context, case, response):
    label = f"{case.method.upper()} {case.operation.path}"
    tally = STATUSES.setdefault(label, {})
    tally[response.status_code] = tally.get(response.status_code, 0) + 1


def _report() -> None:
    print("responses by operation and status:")
    for label in sorted(STATUSES):
        counts = ", ".join(f"{status}: {n}" for status, n in sorted(STATUSES[label].items()))
        print(f"  {label:32} {counts}")


atexit.register(_report)
