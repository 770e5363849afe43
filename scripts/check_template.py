#!/usr/bin/env python3
"""Cross-checks cloudformation/template.yaml against the code it deploys.

Run by `scripts/deploy --dry-run` (and so by scripts/test) on the SAM-transformed template,
i.e. on the very resources CloudFormation would create:

- every function's handler binary is a `[[bin]]` of lambda/Cargo.toml, every binary is
  deployed, and (with --artifacts) its built `bootstrap` is there for the chosen architecture;
- every environment variable that the code linked into the functions reads is set by the
  template, or is listed in DELIBERATELY_DEFAULTED with the reason; nothing set is unknown;
- the HTTP API's routes, the router's routes (http/src/routes.rs) and the contract's endpoints
  (PRODUCT.md) are the same set; POST routes go to the command function, GET to the query one;
- table and queue names are the code's (prefix + suffix), every consumed queue has a
  dead-letter queue, visibility timeouts are 6 × the consumer's timeout, every event source
  mapping reports partial batch failures, the stream mapping bisects, retries finitely and has
  an on-failure destination;
- least privilege: one role per function, no wildcard resource, only the projector writes read
  tables, the command function cannot touch them, the query function cannot write them nor
  send to a queue; every leading-key restriction names a stream or claim prefix the code uses;
- log groups with retention, alarms on every dead-letter/failure queue and on every function's
  errors, no hard-coded resource name, and the outputs the deploy and replay commands need.

Prints one line per check and ends with `N passed, N failed`; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

# No __pycache__ beside the scripts (it is not ignored by git).
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cfn_template  # noqa: E402

ROOT = cfn_template.ROOT
PRODUCT = ROOT.parent / "shared" / "PRODUCT.md"

# The REST contract's endpoints (PRODUCT.md, "REST contract"); compared with PRODUCT.md itself
# whenever it is beside the repository (it is in CI), so this copy cannot drift unnoticed.
CONTRACT = {
    ("POST", "/register"),
    ("POST", "/send-message"),
    ("POST", "/block-user"),
    ("POST", "/unblock-user"),
    ("POST", "/create-group"),
    ("POST", "/add-user-to-group"),
    ("POST", "/remove-user-from-group"),
    ("POST", "/send-group-message"),
    ("GET", "/get-new-messages"),
    ("GET", "/get-all-messages"),
    ("GET", "/health"),
}

# Routes beyond the contract's endpoints, served by the router and the HTTP API alike, with why.
EXTENSIONS = {
    ("POST", "/revoke-token"): "revokes the caller's token (PRODUCT.md: tokens can be revoked)",
    ("GET", "/openapi.json"): "the OpenAPI 3.1 document of the API (docs/openapi.json)",
}

# Variables the functions' code reads that the template deliberately leaves unset.
DELIBERATELY_DEFAULTED = {
    "MESSAGING_MAX_MESSAGE_BYTES": "contract default 4096 (events/src/values.rs Limits::default)",
    "MESSAGING_MAX_BODY_BYTES": "contract default 64 KiB",
    "MESSAGING_MAX_GROUP_NAME_CHARS": "contract default 128",
    "MESSAGING_MAX_GROUP_MEMBERS": "contract default 1,000",
    "MESSAGING_MAX_PAGE_SIZE": "contract default 100",
    "RUST_LOG": "the level comes from LoggingConfig.ApplicationLogLevel (AWS_LAMBDA_LOG_LEVEL)",
}
# Variables Lambda itself sets, and from what.
SET_BY_LAMBDA = {"AWS_LAMBDA_LOG_LEVEL": "LoggingConfig.ApplicationLogLevel"}
# Variables that only the local binary's tests read (feature `testing`), never a function.
NOT_IN_FUNCTIONS = {"MESSAGING_TEST_MOTO_ENDPOINT"}

# The crate the functions are built from.
LAMBDA_CRATE = "lambda"
# Read tables (dynamodb/src/read_tables.rs) and write-side tables (event_tables.rs, config.rs).
READ_TABLES_RS = ROOT / "dynamodb" / "src" / "read_tables.rs"
ENV_NAME = re.compile(r'"((?:MESSAGING|AWS_LAMBDA)_[A-Z0-9_]+|RUST_LOG)"')
FINITE_RETRIES = range(0, 10001)
# A replay's generation N of read table <suffix> is `<prefix>gN-<suffix>` (dynamodb/src/generations.rs),
# created outside the stack, so roles name them by pattern.
GENERATION_ARN = re.compile(
    r"arn:\$\{AWS::Partition\}:dynamodb:\$\{AWS::Region\}:\$\{AWS::AccountId\}:table/\$\{AWS::StackName\}-g\*-([a-z_]+)(?:/index/[a-z_]+)?"
)
FINITE_RECORD_AGE = range(60, 604801)
# The Management API of one WebSocket API stage: `POST @connections/{id}` (the notifier's push)
# and `DELETE @connections/{id}` (its close of a revoked token's connections).
MANAGE_CONNECTIONS_ARN = re.compile(
    r"arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:\$\{(\w+)\}/\$\{\w+\}/(?:POST|DELETE)/@connections/\*"
)
# Real-time delivery (lambda/src/notifier.rs): the binaries and what the notifier reads.
NOTIFIER_BIN = "messaging-notifier"
CONNECTIONS_BIN = "messaging-connections"


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            print(f"FAIL  {name}")
            for problem in problems:
                print(f"      - {problem}")
        else:
            self.passed += 1
            print(f"ok    {name}")


# ----------------------------------------------------------------------------------------------
# Reading the template


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == kind}


def ref_target(value: Any) -> str | None:
    """The logical id a `Ref` or `Fn::GetAtt` points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return target[0] if isinstance(target, list) else str(target).split(".")[0]
    return None


def sub_text(value: Any) -> str | None:
    """The format string of an `Fn::Sub` (either form)."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None


def stack_suffix(value: Any) -> str | None:
    """`x` for a name written `${AWS::StackName}-x`, else None."""
    text = sub_text(value)
    prefix = "${AWS::StackName}-"
    if text is not None and text.startswith(prefix):
        return text[len(prefix):]
    return None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of(template, "AWS::Lambda::Function")


def function_binary(function: dict[str, Any]) -> str | None:
    key = function["Properties"].get("Code", {}).get("S3Key")
    text = sub_text(key)
    match = re.fullmatch(r"\$\{ArtifactPrefix\}([a-z0-9-]+)\.zip", text or "")
    return match.group(1) if match else None


def function_env(function: dict[str, Any]) -> dict[str, Any]:
    return function["Properties"].get("Environment", {}).get("Variables", {})


def role_statements(template: dict[str, Any], function: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    role_id = ref_target(function["Properties"].get("Role"))
    role = template["Resources"].get(role_id or "", {})
    statements: list[dict[str, Any]] = []
    for policy in role.get("Properties", {}).get("Policies", []):
        statements.extend(as_list(policy["PolicyDocument"]["Statement"]))
    return role_id, statements


def statement_targets(statement: dict[str, Any], generation_tables: dict[str, str]) -> list[tuple[str | None, str]]:
    """(logical id, what) for each resource of a statement: what is `table`, `index:<name>`,
    `stream`, `streams`, `queue`, `log`, or `*`/`other`."""
    targets = []
    for resource in as_list(statement.get("Resource", [])):
        if resource == "*" or (isinstance(resource, str) and "*" == resource.strip()):
            targets.append((None, "*"))
        elif isinstance(resource, dict) and "Fn::GetAtt" in resource:
            logical, attribute = resource["Fn::GetAtt"]
            kind = {"Arn": "arn", "StreamArn": "stream"}.get(attribute, attribute)
            targets.append((logical, kind))
        elif sub_text(resource):
            text = sub_text(resource) or ""
            match = re.fullmatch(r"\$\{(\w+)\.Arn\}/(index|stream)/(.+)", text)
            generation = GENERATION_ARN.fullmatch(text)
            manage = MANAGE_CONNECTIONS_ARN.fullmatch(text)
            if manage:
                # Posting to the connections of one WebSocket API stage of the stack.
                targets.append((manage.group(1), "connections"))
            elif match:
                logical, what, name = match.groups()
                targets.append((logical, f"{what}:{name}"))
            elif generation and generation.group(1) in generation_tables:
                # A replay's generation of a read table: treated as that table.
                targets.append((generation_tables[generation.group(1)], "generation"))
            else:
                targets.append((None, "other"))
        else:
            targets.append((None, "other"))
    return targets


# ----------------------------------------------------------------------------------------------
# Reading the code


def lambda_bins() -> set[str]:
    manifest = tomllib.loads((ROOT / LAMBDA_CRATE / "Cargo.toml").read_text())
    return {b["name"] for b in manifest.get("bin", [])}


def linked_crate_dirs() -> list[Path]:
    """The workspace crates linked into the functions: lambda/ and its messaging-* dependencies,
    transitively (normal dependencies only)."""
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    paths = {
        name: ROOT / spec["path"]
        for name, spec in workspace["workspace"]["dependencies"].items()
        if isinstance(spec, dict) and "path" in spec
    }
    seen: list[Path] = []
    todo = [ROOT / LAMBDA_CRATE]
    while todo:
        crate = todo.pop()
        if crate in seen:
            continue
        seen.append(crate)
        manifest = tomllib.loads((crate / "Cargo.toml").read_text())
        for name in manifest.get("dependencies", {}):
            if name in paths:
                todo.append(paths[name])
    return seen


def without_tests(source: str) -> str:
    """The source up to its `#[cfg(test)]` module (by convention the last item of a file)."""
    index = source.find("#[cfg(test)]")
    return source if index < 0 else source[:index]


def env_vars_read() -> dict[str, list[str]]:
    """Every environment variable name that the functions' code mentions, with where."""
    found: dict[str, list[str]] = {}
    for crate in linked_crate_dirs():
        for path in sorted((crate / "src").rglob("*.rs")):
            relative = path.relative_to(ROOT).as_posix()
            if path.name == "testing.rs":  # behind the `testing` feature, tests only
                continue
            for name in ENV_NAME.findall(without_tests(path.read_text())):
                found.setdefault(name, []).append(relative)
    return found


def router_routes() -> set[tuple[str, str]]:
    source = (ROOT / "http" / "src" / "routes.rs").read_text()
    routes = set()
    for path, chain in re.findall(r'\.route\(\s*"([^"]+)"\s*,\s*([^;]*?)\)\s*(?=\.|\n)', source):
        for method in re.findall(r"\b(get|post|put|delete|patch)\(", chain):
            routes.add((method.upper(), path))
    return routes


def product_routes() -> set[tuple[str, str]] | None:
    if not PRODUCT.is_file():
        return None
    return set(re.findall(r"^\| `(GET|POST|PUT|DELETE|PATCH) (/[^` ]*)`", PRODUCT.read_text(), re.M))


def code_table_suffixes() -> dict[str, str]:
    """Table suffix → which side, from the code."""
    suffixes = {"events": "write", "claims": "write", "checkpoints": "write"}
    config = (ROOT / "dynamodb" / "src" / "config.rs").read_text()
    tables = (ROOT / "dynamodb" / "src" / "event_tables.rs").read_text()
    for suffix in ("events", "claims"):
        if f'self.name("{suffix}")' not in config:
            suffixes.pop(suffix)
    if 'names.name("checkpoints")' not in tables:
        suffixes.pop("checkpoints")
    generations = ROOT / "dynamodb" / "src" / "generations.rs"
    if generations.is_file() and re.search(r'const GENERATIONS: &str = "generations";', generations.read_text()):
        suffixes["generations"] = "write"
    connections = ROOT / "dynamodb" / "src" / "connections.rs"
    if connections.is_file() and re.search(r'pub const CONNECTIONS: &str = "connections";', connections.read_text()):
        suffixes["connections"] = "realtime"
    read = READ_TABLES_RS.read_text()
    for suffix in re.findall(r'pub\(crate\) const [A-Z_]+: &str = "([a-z_]+)";', read):
        if re.search(rf'const [A-Z_]+: &str = "{suffix}";', read) and suffix not in (
            "unsettled", "unsettled_shard", "p", "accepted_at"
        ):
            suffixes[suffix] = "read"
    return suffixes


def code_queue_names() -> set[str]:
    config = (ROOT / "dynamodb" / "src" / "config.rs").read_text()
    queues = set(re.findall(r'self\.name\("([a-z]+\.fifo)"\)', config))
    dlqs = {q.removesuffix(".fifo") + "-dlq.fifo" for q in queues}
    return queues | dlqs


def code_key_prefixes() -> set[str]:
    """Stream id prefixes (events/src/ids.rs) and claim key prefixes (commands/src)."""
    ids = (ROOT / "events" / "src" / "ids.rs").read_text()
    prefixes = {p + "-" for p in re.findall(r'format!\("([a-z]+)-\{', ids)}
    for path in (ROOT / "commands" / "src").rglob("*.rs"):
        prefixes |= {p + ":" for p in re.findall(r'format!\("([a-z]+):\{', without_tests(path.read_text()))}
    return prefixes


# ----------------------------------------------------------------------------------------------
# The checks


def run(template: dict[str, Any], source: dict[str, Any], artifacts: Path | None, arch: str) -> Checks:
    checks = Checks()
    fns = functions(template)
    resources = template["Resources"]
    tables = resources_of(template, "AWS::DynamoDB::Table")
    queues = resources_of(template, "AWS::SQS::Queue")
    mappings = resources_of(template, "AWS::Lambda::EventSourceMapping")

    # --- binaries
    bins = lambda_bins()
    problems = []
    deployed = {}
    for name, fn in fns.items():
        binary = function_binary(fn)
        deployed[name] = binary
        if binary is None:
            problems.append(f"{name}: code is not ${{ArtifactPrefix}}<binary>.zip")
        elif binary not in bins:
            problems.append(f"{name}: binary {binary} is not a [[bin]] of lambda/Cargo.toml ({sorted(bins)})")
        props = fn["Properties"]
        if props.get("Runtime") != "provided.al2023" or props.get("Handler") != "bootstrap":
            problems.append(f"{name}: runtime must be provided.al2023 with handler bootstrap")
    for binary in sorted(bins - set(deployed.values())):
        problems.append(f"binary {binary} is built but deployed by no function")
    checks.check(f"every function runs a lambda/ binary and every binary is deployed ({len(fns)} functions, {len(bins)} binaries)", problems)

    if artifacts is not None:
        problems = []
        machine = {"arm64": 0xB7, "x86_64": 0x3E}[arch]
        for binary in sorted(bins):
            bootstrap = artifacts / binary / "bootstrap"
            if not bootstrap.is_file() or bootstrap.stat().st_size == 0:
                problems.append(f"{bootstrap} is missing")
                continue
            header = bootstrap.read_bytes()[:20]
            if header[:4] != b"\x7fELF" or int.from_bytes(header[18:20], "little") != machine:
                problems.append(f"{bootstrap} is not a Linux {arch} executable")
        checks.check(f"every binary built for {arch} ({artifacts})", problems)

    # --- environment
    read = env_vars_read()
    problems = []
    all_set = {name for fn in fns.values() for name in function_env(fn)}
    for name, where in sorted(read.items()):
        if name in NOT_IN_FUNCTIONS:
            problems.append(f"{name} is read by function code ({', '.join(where)}) but listed as tests-only")
        elif name in DELIBERATELY_DEFAULTED:
            if name in all_set:
                problems.append(f"{name} is set but listed as deliberately defaulted: update the list")
        elif name in SET_BY_LAMBDA:
            missing = [f for f, fn in fns.items() if not fn["Properties"].get("LoggingConfig", {}).get("ApplicationLogLevel")]
            if missing:
                problems.append(f"{name} needs LoggingConfig.ApplicationLogLevel on {missing}")
        elif name not in all_set:
            problems.append(f"{name} is read by {', '.join(sorted(set(where)))} but set by no function and not listed as defaulted")
    for name in sorted(all_set - set(read)):
        problems.append(f"the template sets {name}, which no function's code reads")
    for fname, fn in fns.items():
        env = function_env(fn)
        if stack_suffix(env.get("MESSAGING_TABLE_PREFIX")) != "":
            problems.append(f"{fname}: MESSAGING_TABLE_PREFIX must be ${{AWS::StackName}}-")
        if ("MESSAGING_DIRECT_QUEUE_URL" in env) != ("MESSAGING_GROUP_QUEUE_URL" in env):
            problems.append(f"{fname}: the two queue URLs must be set together (lambda/src/config.rs)")
    sweepers = [f for f, b in deployed.items() if b == "messaging-sweeper"]
    for fname in sweepers:
        if "MESSAGING_SWEEP_AFTER_SECS" not in function_env(fns[fname]):
            problems.append(f"{fname}: MESSAGING_SWEEP_AFTER_SECS is the sweeper's parameter; set it")
    defaulted = ", ".join(sorted(DELIBERATELY_DEFAULTED))
    checks.check(f"every variable the code reads is set (defaulted on purpose: {defaulted})", problems)

    # --- routes
    problems = []
    api_routes: dict[tuple[str, str], str] = {}
    default_route = None
    for api_name, api in resources_of(template, "AWS::ApiGatewayV2::Api").items():
        for path, methods in api["Properties"].get("Body", {}).get("paths", {}).items():
            for method, spec in methods.items():
                uri = sub_text(spec["x-amazon-apigateway-integration"]["uri"]) or ""
                target = re.search(r"\$\{(\w+)\.Arn\}", uri)
                function = target.group(1) if target else "?"
                if path == "/$default":
                    default_route = function
                    continue
                method_name = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                api_routes[(method_name, path)] = function
                if spec["x-amazon-apigateway-integration"].get("payloadFormatVersion") != "2.0":
                    problems.append(f"{method_name} {path}: payload format must be 2.0 (lambda_http)")
    router = router_routes()
    served = CONTRACT | set(EXTENSIONS)
    for route in sorted(set(api_routes) - served):
        problems.append(f"API route {route} is not an endpoint of the contract nor a listed extension")
    for route in sorted(served - set(api_routes)):
        problems.append(f"endpoint {route} has no API route")
    if router != served:
        problems.append(f"http/src/routes.rs serves {sorted(router ^ served)} differently from the contract and its extensions")
    product = product_routes()
    if product is not None and product != CONTRACT:
        problems.append(f"PRODUCT.md's endpoints differ from this check's copy: {sorted(product ^ CONTRACT)}")
    for (method, path), function in sorted(api_routes.items()):
        want = "messaging-http"
        if deployed.get(function) != want:
            problems.append(f"{method} {path} goes to {function}, which does not run {want}")
        role = "Command" if method == "POST" else "Query"
        if not function.startswith(role):
            problems.append(f"{method} {path} goes to {function}, not the {role.lower()} function")
    if default_route is not None and not default_route.startswith("Query"):
        problems.append(f"$default goes to {default_route}: unknown routes must not reach a writer")
    source_of = "PRODUCT.md" if product is not None else "the contract copy (PRODUCT.md not beside the repository)"
    checks.check(f"API routes = router routes = {source_of} + {len(EXTENSIONS)} extensions ({len(api_routes)} routes + $default)", problems)

    # --- encryption at rest and in transit (SECURITY.md)
    problems = []
    for name, table in tables.items():
        sse = table["Properties"].get("SSESpecification", {})
        # DynamoDB encrypts every table at rest (AWS-owned key by default); only a KMS key of
        # one's own is a choice. Turning it "off" is not possible, but a KMS type without a
        # key is a misconfiguration worth catching.
        if sse.get("SSEType") == "KMS" and not sse.get("KMSMasterKeyId") and sse.get("SSEEnabled") is not True:
            problems.append(f"{name}: SSEType KMS without SSEEnabled")
    for name, queue in queues.items():
        props = queue["Properties"]
        if props.get("SqsManagedSseEnabled") is not True and not props.get("KmsMasterKeyId"):
            problems.append(f"{name}: not encrypted at rest (SqsManagedSseEnabled: true, or a KMS key)")
    for name, topic in resources_of(template, "AWS::SNS::Topic").items():
        if not topic["Properties"].get("KmsMasterKeyId"):
            problems.append(f"{name}: not encrypted at rest (KmsMasterKeyId)")
    for name, api in resources_of(template, "AWS::ApiGatewayV2::Api").items():
        # HTTP and WebSocket APIs serve their execute-api endpoints over TLS only; a custom
        # domain would need SecurityPolicy TLS_1_2. (SAM's HTTP API is imported from an OpenAPI
        # Body, without ProtocolType.)
        if api["Properties"].get("ProtocolType", "HTTP") not in ("HTTP", "WEBSOCKET"):
            problems.append(f"{name}: unexpected protocol {api['Properties'].get('ProtocolType')}")
    for name, domain in resources_of(template, "AWS::ApiGatewayV2::DomainName").items():
        for config in domain["Properties"].get("DomainNameConfigurations", []):
            if config.get("SecurityPolicy") != "TLS_1_2":
                problems.append(f"{name}: custom domain without SecurityPolicy TLS_1_2")
    checks.check(f"encrypted at rest and in transit ({len(tables)} tables, {len(queues)} queues, APIs over TLS only)", problems)

    problems = []
    websocket_apis = {
        n for n, a in resources_of(template, "AWS::ApiGatewayV2::Api").items()
        if a["Properties"].get("ProtocolType") == "WEBSOCKET"
    }
    all_stages = resources_of(template, "AWS::ApiGatewayV2::Stage")
    stages = {n: st for n, st in all_stages.items() if ref_target(st["Properties"].get("ApiId")) not in websocket_apis}
    websocket_stages = {n: st for n, st in all_stages.items() if n not in stages}
    if not stages:
        problems.append("no HTTP API stage")
    for name, stage in stages.items():
        props = stage["Properties"]
        if props.get("StageName") != "$default":
            ignoring = [f for f, fn in fns.items() if function_env(fn).get("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH") == "true"]
            if not ignoring:
                problems.append(f"{name}: stage {props.get('StageName')} prefixes paths; set AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true")
        throttling = props.get("DefaultRouteSettings", {})
        if "ThrottlingRateLimit" not in throttling or "ThrottlingBurstLimit" not in throttling:
            problems.append(f"{name}: no stage throttling")
        if "AccessLogSettings" not in props:
            problems.append(f"{name}: no access log")
    checks.check("the HTTP API stage is $default, throttled and logged", problems)

    # --- real-time delivery: WebSocket API, connections table, notifier
    problems = []
    notifiers = [f for f, b in deployed.items() if b == NOTIFIER_BIN]
    connectors = [f for f, b in deployed.items() if b == CONNECTIONS_BIN]
    if len(websocket_apis) != 1:
        problems.append(f"expected one WebSocket API, found {sorted(websocket_apis)}")
    if len(notifiers) != 1 or len(connectors) != 1:
        problems.append(f"expected one {NOTIFIER_BIN} and one {CONNECTIONS_BIN} function, found {notifiers}, {connectors}")
    integrations = resources_of(template, "AWS::ApiGatewayV2::Integration")
    routes = {
        r["Properties"].get("RouteKey"): r["Properties"]
        for r in resources_of(template, "AWS::ApiGatewayV2::Route").values()
        if ref_target(r["Properties"].get("ApiId")) in websocket_apis
    }
    for key in ("$connect", "$disconnect"):
        route = routes.get(key)
        if route is None:
            problems.append(f"the WebSocket API has no {key} route")
            continue
        integration_id = re.fullmatch(r"integrations/\$\{(\w+)\}", sub_text(route.get("Target")) or "")
        integration = integrations.get(integration_id.group(1) if integration_id else "", {})
        uri = sub_text(integration.get("Properties", {}).get("IntegrationUri")) or ""
        target = re.search(r"\$\{(\w+)\.Arn\}", uri)
        if not target or target.group(1) not in connectors:
            problems.append(f"{key} does not go to the {CONNECTIONS_BIN} function")
    if not websocket_stages:
        problems.append("the WebSocket API has no stage")
    for name, stage in websocket_stages.items():
        props = stage["Properties"]
        throttling = props.get("DefaultRouteSettings", {})
        if "ThrottlingRateLimit" not in throttling or "ThrottlingBurstLimit" not in throttling:
            problems.append(f"{name}: no stage throttling")
        if "AccessLogSettings" not in props:
            problems.append(f"{name}: no access log")
    permissions = resources_of(template, "AWS::Lambda::Permission")
    invocable = {ref_target(p["Properties"].get("FunctionName")) for p in permissions.values()
                 if p["Properties"].get("Principal") == "apigateway.amazonaws.com"}
    for fname in connectors:
        if fname not in invocable:
            problems.append(f"{fname}: API Gateway may not invoke it (AWS::Lambda::Permission)")
    for fname in notifiers:
        endpoint = sub_text(function_env(fns[fname]).get("MESSAGING_WEBSOCKET_ENDPOINT")) or ""
        if not any(f"${{{api}}}" in endpoint for api in websocket_apis) or not any(f"${{{st}}}" in endpoint for st in websocket_stages):
            problems.append(f"{fname}: MESSAGING_WEBSOCKET_ENDPOINT must name the WebSocket API's stage")
        stream_mappings = [m for m in mappings.values() if ref_target(m["Properties"].get("FunctionName")) == fname]
        if len(stream_mappings) != 1:
            problems.append(f"{fname}: expected one stream mapping, found {len(stream_mappings)}")
        for m in stream_mappings:
            patterns = [json.loads(f.get("Pattern", "{}")) for f in m["Properties"].get("FilterCriteria", {}).get("Filters", [])]
            wanted = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"type": {"S": ["MessageDelivered", "TokenRevoked"]}}}}
            if patterns != [wanted]:
                problems.append(f"{fname}: the stream mapping must filter MessageDelivered and TokenRevoked inserts, has {patterns}")
        _, statements = role_statements(template, fns[fname])
        pushes = [st for st in statements if "execute-api:ManageConnections" in as_list(st.get("Action", []))]
        if not pushes:
            problems.append(f"{fname}: may not post to connections (execute-api:ManageConnections)")
    connections_table = {stack_suffix(t["Properties"].get("TableName")): n for n, t in tables.items()}.get("connections")
    if connections_table is None:
        problems.append("no connections table")
    else:
        props = tables[connections_table]["Properties"]
        ttl = props.get("TimeToLiveSpecification", {})
        if ttl.get("AttributeName") != "expires_at" or ttl.get("Enabled") is not True:
            problems.append(f"{connections_table}: TTL on expires_at (dynamodb/src/connections.rs EXPIRES_AT) must be enabled")
        if "by_connection" not in {i.get("IndexName") for i in props.get("GlobalSecondaryIndexes", [])}:
            problems.append(f"{connections_table}: no by_connection index ($disconnect)")
    checks.check("real-time delivery: WebSocket API ($connect/$disconnect → connections function, throttled and logged stage), connections table with TTL, notifier filtered to MessageDelivered and TokenRevoked and allowed to post and close", problems)

    # --- names
    problems = []
    code_tables = code_table_suffixes()
    template_tables = {stack_suffix(t["Properties"].get("TableName")): n for n, t in tables.items()}
    if set(template_tables) != set(code_tables):
        problems.append(f"tables differ from the code's: template {sorted(map(str, template_tables))}, code {sorted(code_tables)}")
    template_queues = {stack_suffix(q["Properties"].get("QueueName")): n for n, q in queues.items()}
    for name in sorted(code_queue_names() - set(template_queues)):
        problems.append(f"queue {name} of the code is missing")
    for kind, named in (("AWS::Logs::LogGroup", "LogGroupName"),):
        for n, r in resources_of(template, kind).items():
            if "${AWS::StackName}" not in (sub_text(r["Properties"].get(named)) or "${AWS::StackName}"):
                problems.append(f"{n}: {named} is hard-coded")
    for n, r in {**tables, **queues}.items():
        key = "TableName" if n in tables else "QueueName"
        if stack_suffix(r["Properties"].get(key)) is None:
            problems.append(f"{n}: {key} is not ${{AWS::StackName}}-<suffix>")
    checks.check(f"table and queue names are the code's under ${{AWS::StackName}}- ({len(tables)} tables, {len(queues)} queues)", problems)

    problems = []
    events = template_tables.get("events")
    if events:
        props = tables[events]["Properties"]
        if props.get("StreamSpecification", {}).get("StreamViewType") != "NEW_IMAGE":
            problems.append("the event table's stream must be NEW_IMAGE")
        if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is not True:
            problems.append("the event table needs point-in-time recovery")
        if "DeletionProtectionEnabled" not in props:
            problems.append("the event table needs deletion protection (parameter)")
    for n, t in tables.items():
        if t["Properties"].get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{n}: not on-demand")
    checks.check("the event table: on-demand, stream NEW_IMAGE, point-in-time recovery, deletion protection", problems)

    # --- queues and mappings
    problems = []
    consumers: dict[str, str] = {}
    for name, mapping in mappings.items():
        props = mapping["Properties"]
        source_id = ref_target(props.get("EventSourceArn"))
        function = ref_target(props.get("FunctionName"))
        if "ReportBatchItemFailures" not in props.get("FunctionResponseTypes", []):
            problems.append(f"{name}: does not report partial batch failures")
        if source_id in queues:
            consumers[source_id] = function or "?"
        elif source_id in tables:
            if props.get("BisectBatchOnFunctionError") is not True:
                problems.append(f"{name}: BisectBatchOnFunctionError must be true")
            if props.get("MaximumRetryAttempts") not in FINITE_RETRIES:
                problems.append(f"{name}: MaximumRetryAttempts must be finite (0..10000)")
            if props.get("MaximumRecordAgeInSeconds") not in FINITE_RECORD_AGE:
                problems.append(f"{name}: MaximumRecordAgeInSeconds must be finite (60..604800)")
            destination = ref_target(props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
            if destination not in queues:
                problems.append(f"{name}: no on-failure destination queue")
        else:
            problems.append(f"{name}: unknown event source {source_id}")
    checks.check(f"every event source mapping reports partial failures; the stream one bisects, retries finitely, has an on-failure destination ({len(mappings)} mappings)", problems)

    problems = []
    dead_letter = set()
    for name, queue in queues.items():
        policy = queue["Properties"].get("RedrivePolicy")
        if policy:
            target = ref_target(policy.get("deadLetterTargetArn"))
            dead_letter.add(target)
            if target not in queues:
                problems.append(f"{name}: dead-letter target {target} is not a queue of the stack")
            if not 1 <= int(policy.get("maxReceiveCount", 0)) <= 10:
                problems.append(f"{name}: maxReceiveCount should be 1..10")
    failure_destinations = {
        ref_target(m["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
        for m in mappings.values()
    } - {None}
    for name, queue in queues.items():
        if name in consumers:
            if "RedrivePolicy" not in queue["Properties"]:
                problems.append(f"{name}: consumed by {consumers[name]} without a dead-letter queue")
            timeout = fns[consumers[name]]["Properties"].get("Timeout", 3)
            visibility = queue["Properties"].get("VisibilityTimeout", 30)
            if visibility != 6 * timeout:
                problems.append(f"{name}: visibility timeout {visibility}s is not 6 × {consumers[name]}'s {timeout}s")
        elif name not in dead_letter and name not in failure_destinations:
            problems.append(f"{name}: neither consumed, nor a dead-letter queue, nor a failure destination")
    checks.check(f"every consumed queue has a dead-letter queue and a visibility timeout of 6 × its function's timeout", problems)

    # --- IAM
    problems = []
    access: dict[str, dict[str, set[str]]] = {}
    generation_tables = {s: n for s, n in template_tables.items() if code_tables.get(s or "") == "read"}
    roles_seen: dict[str, str] = {}
    for fname, fn in fns.items():
        role_id, statements = role_statements(template, fn)
        if role_id is None or role_id not in resources:
            problems.append(f"{fname}: has no role of its own in the template")
            continue
        if role_id in roles_seen:
            problems.append(f"{fname} shares {role_id} with {roles_seen[role_id]}")
        roles_seen[role_id] = fname
        if resources[role_id]["Properties"].get("ManagedPolicyArns"):
            problems.append(f"{role_id}: managed policies are broader than needed")
        table_access: dict[str, set[str]] = {}
        for statement in statements:
            if statement.get("Effect") != "Allow":
                continue
            actions = set(as_list(statement["Action"]))
            if any("*" in a for a in actions):
                problems.append(f"{role_id}: wildcard action {sorted(actions)}")
            for logical, what in statement_targets(statement, generation_tables):
                if what in ("*", "other"):
                    problems.append(f"{role_id} ({statement.get('Sid')}): resource is not an ARN of the stack")
                    continue
                table_access.setdefault(logical, set()).update(actions)
            keys = statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys", [])
            for pattern in keys:
                if pattern.removesuffix("*") not in source["prefixes"]:
                    problems.append(f"{role_id}: leading key {pattern} matches no stream or claim prefix of the code ({sorted(source['prefixes'])})")
        access[fname] = table_access
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    read_tables = {n for s, n in template_tables.items() if code_tables.get(s or "") == "read"}
    for fname, table_access in access.items():
        binary = deployed.get(fname)
        touched_read = {t for t in table_access if t in read_tables}
        wrote_read = {t for t in touched_read if table_access[t] & writes}
        if binary != "messaging-projector" and wrote_read:
            problems.append(f"{fname} may write read tables {sorted(wrote_read)}: only the projector does")
        if fname.startswith("Command") and touched_read:
            problems.append(f"{fname} reaches read tables {sorted(touched_read)}")
        if fname.startswith("Query"):
            sends = [t for t, a in table_access.items() if t in queues and "sqs:SendMessage" in a]
            if sends:
                problems.append(f"{fname} may send to {sends}")
            claims = template_tables.get("claims")
            if claims in table_access and table_access[claims] & writes:
                problems.append(f"{fname} may write claims")
        connections_table = template_tables.get("connections")
        if connections_table in table_access and binary not in (NOTIFIER_BIN, CONNECTIONS_BIN):
            problems.append(f"{fname} reaches the connections table: only the WebSocket functions do")
        if any(what == "connections" for st in role_statements(template, fns[fname])[1] for _, what in statement_targets(st, generation_tables)) and binary != NOTIFIER_BIN:
            problems.append(f"{fname} may post to WebSocket connections: only the notifier does")
        if binary in ("messaging-direct-processor", "messaging-group-processor") and touched_read:
            problems.append(f"{fname} reaches read tables {sorted(touched_read)}: processors decide from events only")
    checks.check("one least-privilege role per function (no wildcard; only the projector writes read tables; command ⟂ read tables; query cannot enqueue or write claims)", problems)

    # --- logs and alarms
    problems = []
    log_groups = resources_of(template, "AWS::Logs::LogGroup")
    for fname, fn in fns.items():
        group = ref_target(fn["Properties"].get("LoggingConfig", {}).get("LogGroup"))
        if group not in log_groups:
            problems.append(f"{fname}: LoggingConfig.LogGroup is not a log group of the stack")
        elif "RetentionInDays" not in log_groups[group]["Properties"]:
            problems.append(f"{group}: no retention")
    checks.check("every function logs to its own log group with retention", problems)

    problems = []
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    watched: dict[str, set[str]] = {}
    for alarm in alarms.values():
        props = alarm["Properties"]
        for dimension in props.get("Dimensions", []):
            target = ref_target(dimension.get("Value"))
            if target:
                watched.setdefault(target, set()).add(props.get("MetricName"))
    for fname in fns:
        if "Errors" not in watched.get(fname, set()):
            problems.append(f"{fname}: no Errors alarm")
    for name in dead_letter | failure_destinations:
        if "ApproximateNumberOfMessagesVisible" not in watched.get(name or "", set()):
            problems.append(f"{name}: no depth alarm")
    checks.check(f"alarms on every dead-letter/failure queue's depth and every function's errors ({len(alarms)} alarms)", problems)

    problems = []
    outputs = template.get("Outputs", {})
    for wanted in ("ApiUrl", "TablePrefix", "Region", "EventsTableName", "DirectQueueUrl", "GroupQueueUrl"):
        if wanted not in outputs:
            problems.append(f"no output {wanted}")
    if stack_suffix(outputs.get("TablePrefix", {}).get("Value")) != "":
        problems.append("TablePrefix must be ${AWS::StackName}-")
    checks.check("outputs: API URL, region, table prefix, table and queue names", problems)
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transformed", type=Path, help="the SAM-transformed template (JSON); default: transform here")
    parser.add_argument("--artifacts", type=Path, help="cargo lambda's output directory (target/lambda) to check the builds")
    parser.add_argument("--arch", choices=["arm64", "x86_64"], default="arm64")
    args = parser.parse_args()
    if args.transformed:
        template = json.loads(args.transformed.read_text())
    else:
        template = cfn_template.sam_transform(cfn_template.load())
    source = {"prefixes": code_key_prefixes()}
    checks = run(template, source, args.artifacts, args.arch)
    print(f"template cross-check: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
