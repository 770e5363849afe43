#!/usr/bin/env python3
"""Deploys the template's data resources (every DynamoDB table and SQS queue, exactly as
written in cloudformation/template.yaml) with moto's CloudFormation, then runs the local
binary on them, without letting it create anything, and drives a smoke test over HTTP.

    MESSAGING_TEST_MOTO_ENDPOINT=http://127.0.0.1:PORT scripts/moto_stack_test.py --server target/debug/messaging

The binary runs with MESSAGING_BACKEND=dynamodb, MESSAGING_TABLE_PREFIX=<the stack's
TablePrefix output>, MESSAGING_CREATE_RESOURCES unset, AWS_ENDPOINT_URL=<moto>, dummy
credentials and AWS_REGION=us-east-1: if the stack's tables, indexes, stream or queues were
not what the code expects, the server would fail to start or the messages would not arrive.

Functions, roles, the HTTP API and alarms are left out: moto cannot run Lambda functions
without Docker, and the local binary stands in for them. Ends with `N passed, N failed`.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

# No __pycache__ beside the scripts (it is not ignored by git).
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cfn_template  # noqa: E402

DATA_TYPES = {"AWS::DynamoDB::Table", "AWS::SQS::Queue"}
REGION = "us-east-1"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def references(value: Any) -> set[str]:
    """Logical ids and parameters a fragment refers to (Ref, GetAtt, ${X} in Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref":
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if not isinstance(inner, str):
                    found |= references(inner[1])
            elif key == "Fn::If":
                found |= references(inner[1:])
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found


def conditions_used(value: Any) -> set[str]:
    """Condition names a fragment's Fn::If use."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Fn::If":
                found.add(inner[0])
            found |= conditions_used(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= conditions_used(inner)
    return found


def data_template(template: dict[str, Any]) -> dict[str, Any]:
    """The tables and queues of the template, with the parameters, conditions and outputs
    they need, unchanged."""
    resources = {k: v for k, v in template["Resources"].items() if v["Type"] in DATA_TYPES}
    conditions = {k: v for k, v in template.get("Conditions", {}).items() if k in conditions_used(resources)}
    needed = references(resources) | references(conditions)
    parameters = {k: v for k, v in template.get("Parameters", {}).items() if k in needed}
    allowed = set(resources) | set(parameters) | {p for p in needed if p.startswith("AWS::")}
    outputs = {k: v for k, v in template.get("Outputs", {}).items() if references(v["Value"]) <= allowed}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "messaging: the data resources of cloudformation/template.yaml (moto test)",
        "Parameters": parameters,
        "Conditions": conditions,
        "Resources": resources,
        "Outputs": outputs,
    }


def create_data_stack(cfn: Any, stack: str, endpoint: str) -> dict[str, Any]:
    """Creates the template's tables and queues (data_template) as stack `stack` with moto's
    CloudFormation at `endpoint`, waits, and returns the described stack (its outputs hold
    TablePrefix). Also used by scripts/lambda_runtime_test.py."""
    template = data_template(cfn_template.load())
    kinds = sorted(f"{k} ({v['Type'].split('::')[-1]})" for k, v in template["Resources"].items())
    print(f"==> creating stack {stack} in moto ({endpoint}): {', '.join(kinds)}")
    cfn.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(template),
        # Teardown in a test must work; the switch itself is part of what is deployed.
        Parameters=[{"ParameterKey": "DeletionProtection", "ParameterValue": "false"}],
    )
    cfn.get_waiter("stack_create_complete").wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    return cfn.describe_stacks(StackName=stack)["Stacks"][0]


def delete_stack(cfn: Any, stack: str) -> None:
    cfn.delete_stack(StackName=stack)
    cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name}{': ' + detail if detail else ''}")
        return ok


def http(base: str, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def start_server(binary: Path, env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[str], str]:
    log = open(log_path, "w", encoding="utf-8")
    process = subprocess.Popen(
        [str(binary)], env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        match = re.match(r"listening on (http://\S+)", line)
        if match:
            return process, match.group(1)
    process.kill()
    raise RuntimeError(f"the server did not start; its log ({log_path}):\n{log_path.read_text()[-4000:]}")


def smoke(base: str, results: Results) -> None:
    status, _ = http(base, "GET", "/health")
    results.check("GET /health is 200", status == 200, str(status))
    users = []
    for _ in range(3):
        status, body = http(base, "POST", "/register")
        if not results.check("POST /register is 201", status == 201, str(body)):
            return
        users.append((body["user_id"], body["token"]))
    (alice, alice_token), (bob, bob_token), (carol, carol_token) = users
    status, body = http(base, "POST", "/send-message", alice_token, {"sender_id": alice, "receiver_id": bob, "message": "hi bob"})
    results.check("POST /send-message is 202", status == 202, str(body))
    status, body = http(base, "POST", "/block-user", bob_token, {"user_id": bob, "blocked_user_id": carol})
    results.check("POST /block-user is 200", status == 200, str(body))
    status, body = http(base, "POST", "/send-message", carol_token, {"sender_id": carol, "receiver_id": bob, "message": "blocked"})
    results.check("a blocked sender still gets 202", status == 202, str(body))
    status, body = http(base, "POST", "/create-group", alice_token, {"group_name": "smoke", "creator_id": alice, "members": [bob]})
    ok = results.check("POST /create-group is 201", status == 201, str(body))
    group = body["group_id"] if ok else None
    if group:
        status, body = http(base, "POST", "/send-group-message", alice_token, {"sender_id": alice, "group_id": group, "message": "hi group"})
        results.check("POST /send-group-message is 202", status == 202, str(body))

    # Delivery runs through SQS (the processors) and the stream (the projector), asynchronously.
    wanted = {"hi bob", "hi group"} if group else {"hi bob"}
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and {m.get("message") for m in received} < wanted:
        status, body = http(base, "GET", f"/get-new-messages?user_id={bob}", bob_token)
        if status != 200:
            break
        received.extend(body["messages"])
        time.sleep(0.5)
    texts = [m.get("message") for m in received]
    results.check("GET /get-new-messages delivers the direct and the group message", set(texts) >= wanted, f"{status} {texts}")
    results.check("the blocked sender's message is not delivered", "blocked" not in texts, str(texts))
    status, body = http(base, "GET", f"/get-all-messages?user_id={alice}", alice_token)
    history = [m.get("message") for m in body["messages"]] if status == 200 else body
    results.check("GET /get-all-messages has the sender's history", status == 200 and set(history) >= wanted, str(history))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", type=Path, help="the messaging binary (default: debug/messaging in cargo's target directory)")
    parser.add_argument("--keep", action="store_true", help="leave the stack in moto")
    args = parser.parse_args()
    endpoint = os.environ.get("MESSAGING_TEST_MOTO_ENDPOINT")
    if not endpoint:
        print("MESSAGING_TEST_MOTO_ENDPOINT is not set: start moto (scripts/test does) and export its URL", file=sys.stderr)
        return 2
    if args.server is None:
        metadata = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=cfn_template.ROOT,
                                  capture_output=True, text=True, check=True).stdout
        args.server = Path(json.loads(metadata)["target_directory"]) / "debug" / "messaging"
    if not args.server.is_file():
        print(f"{args.server} not found: cargo build --bin messaging first", file=sys.stderr)
        return 2
    import boto3  # from the deploy venv

    session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    cfn = session.client("cloudformation", endpoint_url=endpoint)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    results = Results()

    stack = f"msgtest-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    described = create_data_stack(cfn, stack, endpoint)
    results.check(f"moto's CloudFormation created the stack ({time.monotonic() - started:.1f}s)",
                  described["StackStatus"] == "CREATE_COMPLETE", described["StackStatus"])
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    prefix = outputs.get("TablePrefix", "")
    results.check("output TablePrefix is '<stack>-'", prefix == f"{stack}-", prefix)

    events = dynamodb.describe_table(TableName=f"{prefix}events")["Table"]
    results.check("the event table streams NEW_IMAGE",
                  events.get("StreamSpecification", {}).get("StreamViewType") == "NEW_IMAGE", str(events.get("StreamSpecification")))
    pending = dynamodb.describe_table(TableName=f"{prefix}pending")["Table"]
    results.check("the pending table has its unsettled index",
                  [i["IndexName"] for i in pending.get("GlobalSecondaryIndexes", [])] == ["unsettled"])
    for name in ("direct.fifo", "group.fifo"):
        url = sqs.get_queue_url(QueueName=f"{prefix}{name}")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes.get("RedrivePolicy", "{}"))
        results.check(f"queue {name} is FIFO with a dead-letter queue",
                      attributes.get("FifoQueue") == "true" and redrive.get("deadLetterTargetArn", "").endswith("-dlq.fifo"),
                      str(attributes))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESSAGING_", "AWS_"))}
    env.update(DUMMY_CREDENTIALS)
    env.update({
        "MESSAGING_BACKEND": "dynamodb",
        "MESSAGING_TABLE_PREFIX": prefix,
        "MESSAGING_ADDR": "127.0.0.1:0",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "RUST_LOG": env.get("RUST_LOG", "info"),
    })
    log_path = args.server.parent.parent / "moto-stack-server.log"
    log_path.parent.mkdir(exist_ok=True)
    print(f"==> serving from the stack's resources (log: {log_path})")
    process, base = start_server(args.server, env, log_path)
    try:
        smoke(base, results)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    stack_resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    stack_tables = {r["PhysicalResourceId"] for r in stack_resources if r["ResourceType"] == "AWS::DynamoDB::Table"}
    stack_queues = {r["PhysicalResourceId"].rsplit("/", 1)[-1] for r in stack_resources if r["ResourceType"] == "AWS::SQS::Queue"}
    tables_now = {t for t in all_tables(dynamodb) if t.startswith(prefix)}
    queues_now = [u.rsplit("/", 1)[-1] for u in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])]
    results.check("the server used the stack's resources without creating any",
                  tables_now == stack_tables and set(queues_now) == stack_queues,
                  f"tables {sorted(tables_now ^ stack_tables)}, queues {sorted(set(queues_now) ^ stack_queues)}")

    if not args.keep:
        delete_stack(cfn, stack)
        left = [t for t in all_tables(dynamodb) if t.startswith(prefix)]
        results.check("deleting the stack removes its tables", not left, str(left))
    if results.failed:
        print(f"server log: {log_path}")
    print(f"moto stack test: {results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


def all_tables(dynamodb):
    """Every table name: ListTables answers 100 at a time, and the shared test server holds
    the tables of every other test too."""
    names = []
    for page in dynamodb.get_paginator("list_tables").paginate():
        names.extend(page["TableNames"])
    return names


if __name__ == "__main__":
    sys.exit(main())
