#!/usr/bin/env python3
"""Runs the deployable Lambda binaries (the `bootstrap` files `scripts/deploy --dry-run`
builds) the way Lambda runs them, over the template's tables and queues in moto, and checks
that no function's peak memory exceeds its MemorySize (issue 7: 128 MB).

    scripts/deploy --dry-run --arch x86_64      # builds <target>/lambda/<binary>/bootstrap
    MESSAGING_TEST_MOTO_ENDPOINT=http://127.0.0.1:PORT .tools/deploy-venv/bin/python scripts/lambda_runtime_test.py

Every function of the SAM-transformed template (what CloudFormation would create) runs as its
own process, with the environment the template gives it, polling a Lambda Runtime API emulated
here. The script plays the rest of AWS: API Gateway (HTTP API v2 events, to the function the
template routes them to; the WebSocket API's $connect/$disconnect), the SQS event source
mappings (receive, invoke, delete unless reported failed), the stream mappings (GetRecords on
the event table's stream, each mapping's FilterCriteria applied), the sweeper's schedule, and
the WebSocket Management API (a stub recording the notifier's pushes and closes). Messages go through in
rounds, so that the peak reflects warm use and full batches, not just the cold start; every
one must reach the recipient. Each process's peak resident set (VmHWM in /proc/<pid>/status)
is read just before it is stopped. Logs: <target>/lambda-runtime-test/<function>.log.
Ends with `N passed, N failed`.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import platform
import queue
import re
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

# No __pycache__ beside the scripts (it is not ignored by git).
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cfn_template  # noqa: E402
import check_template  # noqa: E402
import deploy  # noqa: E402
from moto_stack_test import REGION, Results, create_data_stack, delete_stack  # noqa: E402

ACCOUNT = "123456789012"
API = "/2018-06-01/runtime"
# Direct messages per round (each round also sends one group message): rounds that fill the
# direct queue's batches of 10, then a burst that fills the stream's batches of 100.
ROUNDS = [10] * 9 + [60]
TEXT_PADDING = "|" + "x" * 4000  # near the contract's 4096-byte limit: realistic worst-case payloads


class FunctionFailed(Exception):
    """An invocation errored or timed out, or a process died."""


class Runtime(ThreadingHTTPServer):
    """One function: its process and the Runtime API it polls. The notifier's Management API
    endpoint is its own runtime's `/stage`, which records the pushes."""

    daemon_threads = True

    def __init__(self, name: str, memory_mb: int) -> None:
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.name, self.memory_mb = name, memory_mb
        self.events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: dict[str, tuple[str, bytes]] = {}
        self.changed = threading.Condition()
        self.ready = False  # its first GET /next: the cold start is over
        self.init_error: bytes | None = None
        self.pushes: list[dict[str, Any]] = []
        self.closes: list[str] = []
        self.invocations = 0
        self.peak_mb: float | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def update(self, change: Callable[[], Any]) -> None:
        with self.changed:
            change()
            self.changed.notify_all()

    def wait_for(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done():
                if self.init_error is not None:
                    raise FunctionFailed(f"{self.name}: init error {self.init_error.decode(errors='replace')}")
                if self.process is not None and self.process.poll() is not None:
                    raise FunctionFailed(f"{self.name} exited (status {self.process.returncode}) {what}")
                if time.monotonic() > deadline:
                    raise FunctionFailed(f"{self.name} timed out ({timeout:.0f}s) {what}")
                self.changed.wait(0.1)

    def invoke(self, payload: Any) -> Any:
        request_id = str(uuid.uuid4())
        self.invocations += 1
        self.events.put((request_id, json.dumps(payload).encode()))
        self.wait_for(lambda: request_id in self.results, 30, "during an invocation")
        kind, body = self.results.pop(request_id)
        if kind == "error":
            raise FunctionFailed(f"{self.name} answered an error: {body.decode(errors='replace')}")
        return json.loads(body)

    def stop(self) -> None:
        """Reads the peak resident set while the process still runs, then stops it."""
        assert self.process is not None
        if self.process.poll() is None:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
            self.peak_mb = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.shutdown()


class RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open
    server: Runtime

    def log_message(self, *args: Any) -> None:
        pass

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        runtime = self.server
        if self.path != f"{API}/invocation/next":
            return self.answer(404)
        runtime.update(lambda: setattr(runtime, "ready", True))
        request_id, event = runtime.events.get()  # a long poll, as on Lambda
        self.answer(200, event, {
            "content-type": "application/json",
            "lambda-runtime-aws-request-id": request_id,
            "lambda-runtime-deadline-ms": str(int(time.time() * 1000) + 30_000),
            "lambda-runtime-invoked-function-arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{runtime.name}",
            "lambda-runtime-trace-id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
        })

    def do_POST(self) -> None:
        # Buffered responses (lambda_runtime's `run`, not its streaming mode) carry a length.
        runtime, body = self.server, self.rfile.read(int(self.headers.get("content-length") or 0))
        finished = re.fullmatch(rf"{API}/invocation/([^/]+)/(response|error)", self.path)
        if finished:
            runtime.update(lambda: runtime.results.__setitem__(finished.group(1), (finished.group(2), body)))
        elif self.path == f"{API}/init/error":
            runtime.update(lambda: setattr(runtime, "init_error", body))
        elif "/@connections/" in self.path:  # the notifier's PostToConnection
            runtime.pushes.append(json.loads(body))
            return self.answer(200)
        else:
            return self.answer(404)
        self.answer(202, b'{"status":"OK"}', {"content-type": "application/json"})

    def do_DELETE(self) -> None:
        # The notifier's DeleteConnection (a revoked token's connection).
        closed = re.fullmatch(r"/[^/]+/@connections/([^/?]+)", self.path)
        if not closed:
            return self.answer(404)
        self.server.closes.append(urllib.parse.unquote(closed.group(1)))
        self.answer(204)


def runnable(path: Path) -> bool:
    """Built, for this machine (ELF e_machine): the deploy's default build is arm64."""
    if not path.is_file():
        return False
    with path.open("rb") as binary:
        return binary.read(20)[18:] == {"x86_64": b"\x3e\x00", "aarch64": b"\xb7\x00"}.get(platform.machine())


def resolve(value: Any, refs: dict[str, str]) -> str:
    """A template value whose Ref or ${...} names a parameter, pseudo-parameter or stack resource."""
    if not isinstance(value, dict):
        return str(value)
    if "Ref" in value:
        return refs[value["Ref"]]
    return re.sub(r"\$\{([^}]+)\}", lambda m: refs[m.group(1)], check_template.sub_text(value) or "")


def matches(pattern: Any, value: Any) -> bool:
    """Lambda's event filtering, as far as the template uses it: nested keys, lists of values."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and matches(p, value[k]) for k, p in pattern.items())
    return value in pattern


def wire_json(value: Any) -> Any:
    """What boto3 decoded back into the JSON Lambda would pass on (timestamps, binary values)."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(type(value))


class Aws:
    """API Gateway, the event source mappings and the schedule, as the template wires them."""

    def __init__(self, template: dict[str, Any], runtimes: dict[str, Runtime], refs: dict[str, str], clients: Any) -> None:
        self.runtimes = runtimes
        self.sqs, self.streams = clients["sqs"], clients["dynamodbstreams"]
        self.routes: dict[tuple[str, str], str] = {}  # POST routes → command, GET → query, $default → query
        for api in check_template.resources_of(template, "AWS::ApiGatewayV2::Api").values():
            for path, methods in api["Properties"].get("Body", {}).get("paths", {}).items():
                for method, spec in methods.items():
                    target = re.search(r"\$\{(\w+)\.Arn\}", check_template.sub_text(spec["x-amazon-apigateway-integration"]["uri"]) or "")
                    if target:
                        self.routes[(method.upper(), path)] = target.group(1)
        mappings = [m["Properties"] for m in check_template.resources_of(template, "AWS::Lambda::EventSourceMapping").values()]
        self.queues = [(refs[m["EventSourceArn"]["Fn::GetAtt"][0]], m["FunctionName"]["Ref"], m["BatchSize"])
                       for m in mappings if m["EventSourceArn"]["Fn::GetAtt"][1] == "Arn"]
        self.stream_consumers = [(m["FunctionName"]["Ref"], [json.loads(f["Pattern"]) for f in m.get("FilterCriteria", {}).get("Filters", [])])
                                 for m in mappings if m["EventSourceArn"]["Fn::GetAtt"][1] == "StreamArn"]
        self.stream_arn = clients["dynamodb"].describe_table(TableName=refs["EventsTable"])["Table"]["LatestStreamArn"]
        self.scheduled = [check_template.ref_target(t["Arn"]) for rule in check_template.resources_of(template, "AWS::Events::Rule").values()
                          for t in rule["Properties"]["Targets"]]
        self.iterators: dict[str, str | None] = {}
        self.batches: dict[str, int] = {}  # batches handed to each mapped function, none failed

    def http(self, method: str, path: str, token: str | None = None, body: Any = None, query: str = "") -> tuple[int, Any]:
        headers = {"host": "local.execute-api.us-east-1.amazonaws.com", "user-agent": "lambda_runtime_test"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if body is not None:
            headers["content-type"] = "application/json"
        now = time.time()
        event = {"version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": query, "headers": headers,
                 "requestContext": {"accountId": ACCOUNT, "apiId": "local", "domainName": headers["host"], "domainPrefix": "local",
                                    "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                             "userAgent": headers["user-agent"]},
                                    "requestId": uuid.uuid4().hex, "routeKey": f"{method} {path}", "stage": "$default",
                                    "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000)},
                 "isBase64Encoded": False}
        if query:
            event["queryStringParameters"] = dict(urllib.parse.parse_qsl(query))
        if body is not None:
            event["body"] = json.dumps(body)
        function = self.routes.get((method, path)) or self.routes[("X-AMAZON-APIGATEWAY-ANY-METHOD", "/$default")]
        answer = self.runtimes[function].invoke(event)
        text = answer.get("body") or ""
        text = base64.b64decode(text).decode() if answer.get("isBase64Encoded") else text
        return answer["statusCode"], json.loads(text) if text.startswith(("{", "[")) else text

    def websocket(self, route: str, connection: str, token: str | None = None) -> int:
        now = int(time.time() * 1000)
        event = {"headers": {"authorization": f"Bearer {token}"} if token else {}, "isBase64Encoded": False,
                 "requestContext": {"routeKey": route, "eventType": route.strip("$").upper(), "connectionId": connection,
                                    "connectedAt": now, "requestTimeEpoch": now, "stage": "production", "apiId": "ws",
                                    "requestId": uuid.uuid4().hex, "domainName": "ws.execute-api.us-east-1.amazonaws.com",
                                    "messageDirection": "IN", "identity": {"sourceIp": "127.0.0.1"}}}
        return self.runtimes["ConnectionsFunction"].invoke(event)["statusCode"]

    def batch(self, function: str, records: list[dict[str, Any]]) -> None:
        failures = self.runtimes[function].invoke({"Records": records}).get("batchItemFailures")
        if failures:
            raise FunctionFailed(f"{function} reported failures in a batch of {len(records)}: {failures}")
        self.batches[function] = self.batches.get(function, 0) + 1

    def drain(self) -> None:
        """The SQS mappings until the queues are empty, then the stream mappings to its end."""
        for url, function, batch_size in self.queues:
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{url.rsplit('/', 1)[-1]}"
            while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(batch_size, 10),
                                                       AttributeNames=["All"]).get("Messages", []):
                self.batch(function, [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                                       "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                                       "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": REGION} for m in messages])
                self.sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                                     for i, m in enumerate(messages)])
        for shard in self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]:
            if shard["ShardId"] not in self.iterators:
                self.iterators[shard["ShardId"]] = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for shard_id, iterator in self.iterators.items():
            while iterator:
                page = self.streams.get_records(ShardIterator=iterator, Limit=100)
                iterator = self.iterators[shard_id] = page.get("NextShardIterator")
                records = [dict(json.loads(json.dumps(r, default=wire_json)), eventSourceARN=self.stream_arn) for r in page["Records"]]
                if not records:
                    break
                for function, patterns in self.stream_consumers:
                    if chosen := [r for r in records if not patterns or any(matches(p, r) for p in patterns)]:
                        self.batch(function, chosen)

    def tick(self) -> None:
        """The schedule fires (EventBridge's scheduled event)."""
        for function in self.scheduled:
            report = self.runtimes[function].invoke({
                "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                "account": ACCOUNT, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": REGION,
                "resources": [], "detail": {}})
            if not isinstance(report, dict) or "re_enqueued" not in report:
                raise FunctionFailed(f"{function} answered {report}")


def flow(aws: Aws, results: Results) -> None:
    """Two users, a group, a WebSocket connection; messages in rounds, each fully delivered."""
    def expect(answer: tuple[int, Any], status: int, what: str) -> Any:
        if answer[0] != status:
            raise FunctionFailed(f"{what}: {answer[0]} {answer[1]}")
        return answer[1]

    alice, bob = (expect(aws.http("POST", "/register", body={"display_name": n}), 201, "POST /register") for n in ("Alice", "Bob"))
    results.check("$connect without a token is 401", aws.websocket("$connect", "conn-anon=") == 401)
    results.check("$connect with Bob's token is 200", aws.websocket("$connect", "conn-bob=", bob["token"]) == 200)
    group = expect(aws.http("POST", "/create-group", alice["token"], {"group_name": "runtime", "creator_id": alice["user_id"],
                                                                     "members": [bob["user_id"]]}), 201, "POST /create-group")["group_id"]
    sent, received = [], []
    for round_, size in enumerate(ROUNDS):
        for i in range(size):
            body = {"sender_id": alice["user_id"], "receiver_id": bob["user_id"], "message": f"direct {round_}.{i}{TEXT_PADDING}"}
            expect(aws.http("POST", "/send-message", alice["token"], body), 202, "POST /send-message")
            sent.append(f"direct {round_}.{i}")
        body = {"sender_id": alice["user_id"], "group_id": group, "message": f"group {round_}{TEXT_PADDING}"}
        expect(aws.http("POST", "/send-group-message", alice["token"], body), 202, "POST /send-group-message")
        sent.append(f"group {round_}")
        aws.drain()
        aws.tick()
        query = urllib.parse.urlencode({"user_id": bob["user_id"]})
        while page := expect(aws.http("GET", "/get-new-messages", bob["token"], query=query), 200, "GET /get-new-messages")["messages"]:
            received += [m["message"].split("|")[0] for m in page]
    mapped = {f for _, f, _ in aws.queues} | {f for f, _ in aws.stream_consumers}
    results.check(f"{len(sent)} messages sent (202 each) in {len(ROUNDS)} rounds; batches, none with failures: "
                  + ", ".join(f"{f} {n}" for f, n in aws.batches.items()), set(aws.batches) == mapped)
    results.check("GET /get-new-messages returned every message to Bob, once", sorted(received) == sorted(sent),
                  f"missing {sorted(set(sent) - set(received))[:5]}, {len(received)} received")
    pushed = {p.get("message", "").split("|")[0] for p in aws.runtimes["NotifierFunction"].pushes}
    results.check("the notifier pushed every message to Bob's connection", pushed >= set(sent),
                  f"{len(pushed)} pushed, missing {sorted(set(sent) - pushed)[:5]}")
    # Revoking a token closes the connections opened with it (and no other).
    carol = expect(aws.http("POST", "/register", body={"display_name": "Carol"}), 201, "POST /register")
    results.check("$connect with Carol's token is 200", aws.websocket("$connect", "conn-carol=", carol["token"]) == 200)
    expect(aws.http("POST", "/revoke-token", carol["token"], {}), 200, "POST /revoke-token")
    aws.drain()
    closes = aws.runtimes["NotifierFunction"].closes
    results.check("the notifier closed the revoked token's connection, and only it", closes == ["conn-carol="], f"closed {closes}")
    results.check("$disconnect is 200", aws.websocket("$disconnect", "conn-bob=") == 200)


def start(name: str, function: dict[str, Any], binary: Path, refs: dict[str, str], endpoint: str, log_dir: Path) -> Runtime:
    props = function["Properties"]
    runtime = Runtime(f"{refs['AWS::StackName']}-{name}", int(props["MemorySize"]))
    logging = props.get("LoggingConfig", {})
    env = {"PATH": "/usr/bin:/bin", "TZ": ":UTC", "LANG": "en_US.UTF-8",  # a clean environment, as on Lambda
           "AWS_LAMBDA_RUNTIME_API": runtime.address, "AWS_LAMBDA_FUNCTION_NAME": runtime.name,
           "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(runtime.memory_mb),
           "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{runtime.name}",
           "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
           "AWS_LAMBDA_LOG_FORMAT": logging.get("LogFormat", "Text"),
           "AWS_LAMBDA_LOG_LEVEL": resolve(logging.get("ApplicationLogLevel", "INFO"), refs),
           "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": endpoint,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
    for variable, value in check_template.function_env(function).items():
        # The WebSocket API is not in moto: the notifier pushes to its own runtime's stub.
        env[variable] = f"http://{runtime.address}/stage" if variable == "MESSAGING_WEBSOCKET_ENDPOINT" else resolve(value, refs)
    runtime.log_path = log_dir / f"{name}.log"
    with open(runtime.log_path, "wb") as log:
        runtime.process = subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT)
    return runtime


def main() -> int:
    endpoint = os.environ.get("MESSAGING_TEST_MOTO_ENDPOINT")
    if not endpoint:
        print("MESSAGING_TEST_MOTO_ENDPOINT is not set: start moto (scripts/test does) and export its URL", file=sys.stderr)
        return 2
    started = time.monotonic()
    # What CloudFormation would create: Globals merged into each function, events into mappings.
    template = cfn_template.sam_transform(cfn_template.load(), {"Architecture": "x86_64"})
    functions = check_template.functions(template)
    target = deploy.target_dir()
    binaries = {name: target / "lambda" / str(check_template.function_binary(fn)) / "bootstrap" for name, fn in functions.items()}
    missing = sorted({str(path) for path in binaries.values() if not runnable(path)})
    if missing:
        arch = "arm64" if platform.machine() == "aarch64" else "x86_64"
        print(f"FAIL  the Lambda binaries are not built for this machine: {', '.join(missing)}\n"
              f"      build them first: scripts/deploy --dry-run --arch {arch}", file=sys.stderr)
        return 2
    import boto3  # from the deploy venv

    session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    clients = {s: session.client(s, endpoint_url=endpoint) for s in ("cloudformation", "dynamodb", "dynamodbstreams", "sqs")}
    cfn, results = clients["cloudformation"], Results()
    stack = f"msglambda-{uuid.uuid4().hex[:8]}"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in create_data_stack(cfn, stack, endpoint).get("Outputs", [])}
    results.check("the stack's TablePrefix is what the functions derive from the stack name",
                  outputs.get("TablePrefix") == f"{stack}-", str(outputs.get("TablePrefix")))
    refs = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
    refs.update({r["LogicalResourceId"]: r["PhysicalResourceId"] for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]})
    refs.update({"AWS::StackName": stack, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com"})
    log_dir = target / "lambda-runtime-test"
    log_dir.mkdir(parents=True, exist_ok=True)
    runtimes = {name: start(name, fn, binaries[name], refs, endpoint, log_dir) for name, fn in functions.items()}
    print(f"==> {len(runtimes)} functions started from {target / 'lambda'} (logs: {log_dir})")
    crashed = False
    try:
        for runtime in runtimes.values():
            runtime.wait_for(lambda: runtime.ready, 60, "during its cold start")  # noqa: B023
        results.check(f"all {len(runtimes)} functions finished their cold start", True)
        flow(Aws(template, runtimes, refs, clients), results)
    except Exception as error:  # reported as a failure, with the functions' logs below
        crashed = True
        if not isinstance(error, FunctionFailed):
            traceback.print_exc()
        results.check("the flow ran through every function", False, f"{type(error).__name__}: {error}")
    finally:
        for runtime in runtimes.values():
            runtime.stop()
        delete_stack(cfn, stack)
    print(f"\n{'function':<26}{'binary':<28}{'peak RSS MB':>12}{'MemorySize':>12}{'invocations':>13}")
    for name, runtime in runtimes.items():
        peak = "exited" if runtime.peak_mb is None else f"{runtime.peak_mb:.1f}"
        print(f"{name:<26}{check_template.function_binary(functions[name]):<28}{peak:>12}{runtime.memory_mb:>12}{runtime.invocations:>13}")
    for name, runtime in runtimes.items():
        log = runtime.log_path.read_text(errors="replace")
        errors = [line for line in log.splitlines() if '"level":"ERROR"' in line]
        within = runtime.peak_mb is not None and runtime.peak_mb <= runtime.memory_mb
        ok = results.check(f"{name}: peak within MemorySize ({runtime.memory_mb} MB), no error logged", within and not errors,
                           (errors or [""])[0] if within else "it exited" if runtime.peak_mb is None else f"peak {runtime.peak_mb:.1f} MB")
        if log and (crashed or not ok):
            print(f"---- {runtime.log_path} (the end)\n{log[-3000:]}")
    print(f"lambda runtime test ({time.monotonic() - started:.0f}s): {results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
