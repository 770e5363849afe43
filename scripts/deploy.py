#!/usr/bin/env python3
"""Builds, validates, packages and deploys the messaging backend (cloudformation/template.yaml).

Run it through `scripts/deploy`, which installs the pinned tools first.

    scripts/deploy --stack-name messaging-dev --region eu-west-1         deploy or update, wait, print the API URL
    scripts/deploy --dry-run [--arch x86_64]                             build + lint + SAM transform + cross-check, no AWS call
    scripts/deploy --delete --stack-name messaging-dev --region eu-west-1   tear down (asks first; --yes to skip)

Deploying = cargo lambda build of every function (release, stripped) → one zip per binary →
cfn-lint on the template and on its SAM transform → cross-check against the code → upload of
the zips and the template to an S3 bucket (given with --bucket, else
`messaging-deploy-<account>-<region>`, created once and reused) → a CloudFormation change set
(create or update) → execute → wait, printing the stack's events → print the outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

# No __pycache__ beside the scripts (it is not ignored by git).
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cfn_template  # noqa: E402
import check_template  # noqa: E402

ROOT = cfn_template.ROOT
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
FINAL_FAILED = {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE",
                "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_FAILED"}


class DeployError(Exception):
    """A step failed; the message says what to do."""


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    print("    $ " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise DeployError(f"{command[0]} {command[1] if len(command) > 1 else ''} failed (exit {result.returncode})")


def tool(name: str) -> str:
    """A tool from the deploy venv (next to this Python), else from PATH; missing = an error."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise DeployError(f"{name} not found: run this through scripts/deploy, which installs it")
    return found


# ----------------------------------------------------------------------------------------------
# Build, package, validate (no AWS)


def target_dir() -> Path:
    output = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return Path(json.loads(output)["target_directory"])


def build(arch: str) -> Path:
    """cargo lambda build of every binary of lambda/; returns the directory of `<bin>/bootstrap`."""
    step(f"building every Lambda function (cargo lambda build --release, {arch})")
    tool("cargo-lambda")
    env = dict(os.environ)
    # Deployable sizes: the release profile keeps debug info for profiling.
    env.update({"CARGO_PROFILE_RELEASE_DEBUG": "0", "CARGO_PROFILE_RELEASE_STRIP": "symbols"})
    lambda_dir = target_dir() / "lambda"
    shutil.rmtree(lambda_dir, ignore_errors=True)
    flag = "--arm64" if arch == "arm64" else "--x86-64"
    started = time.monotonic()
    run(["cargo", "lambda", "build", "--release", flag, "--package", "messaging-lambda", "--locked",
         "--lambda-dir", str(lambda_dir)], env)
    print(f"    built in {time.monotonic() - started:.0f}s: {', '.join(sorted(p.name for p in lambda_dir.iterdir()))}")
    return lambda_dir


def package(lambda_dir: Path, out: Path) -> tuple[dict[str, Path], str]:
    """One zip per binary (`bootstrap`, mode 755, fixed timestamp, so equal builds give equal
    zips); returns them and a hash of them all (the S3 key prefix of this build)."""
    step("packaging")
    out.mkdir(parents=True, exist_ok=True)
    zips: dict[str, Path] = {}
    digest = hashlib.sha256()
    for binary in sorted(check_template.lambda_bins()):
        bootstrap = lambda_dir / binary / "bootstrap"
        if not bootstrap.is_file():
            raise DeployError(f"{bootstrap} was not built")
        path = out / f"{binary}.zip"
        info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o100755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(info, bootstrap.read_bytes(), compresslevel=9)
        digest.update(binary.encode() + hashlib.sha256(path.read_bytes()).digest())
        zips[binary] = path
        print(f"    {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({path.stat().st_size / 1e6:.1f} MB)")
    return zips, digest.hexdigest()[:16]


def validate(out: Path, lambda_dir: Path | None, arch: str) -> None:
    """cfn-lint on the template, the SAM transform, cfn-lint on its output, the cross-check."""
    step("cfn-lint cloudformation/template.yaml")
    run([tool("cfn-lint"), "--", str(cfn_template.TEMPLATE.relative_to(ROOT))])
    step("SAM transform (aws-sam-translator)")
    transformed = cfn_template.sam_transform(cfn_template.load(), {"Architecture": arch})
    out.mkdir(parents=True, exist_ok=True)
    transformed_path = out / "template.transformed.json"
    transformed_path.write_text(json.dumps(transformed, indent=2))
    print(f"    {len(transformed['Resources'])} resources → {transformed_path}")
    step("cfn-lint on the transformed template")
    run([tool("cfn-lint"), "--", str(transformed_path)])
    step("cross-checking the template against the code")
    checks = check_template.run(transformed, {"prefixes": check_template.code_key_prefixes()}, lambda_dir, arch)
    print(f"template cross-check: {checks.passed} passed, {checks.failed} failed")
    if checks.failed:
        raise DeployError("the template and the code disagree (see FAIL lines above)")


# ----------------------------------------------------------------------------------------------
# AWS


def session(args: argparse.Namespace) -> Any:
    import boto3
    import botocore.exceptions

    sess = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    if not sess.region_name:
        raise DeployError("no region: pass --region (or set AWS_REGION / a profile's region)")
    try:
        identity = sess.client("sts").get_caller_identity()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise DeployError(f"no usable AWS credentials ({error}); configure them (aws configure, AWS_PROFILE, ...)")
    print(f"    account {identity['Account']}, region {sess.region_name}, as {identity['Arn']}")
    sess.account_id = identity["Account"]  # type: ignore[attr-defined]
    return sess


def ensure_bucket(sess: Any, name: str | None) -> str:
    s3 = sess.client("s3")
    bucket = name or f"messaging-deploy-{sess.account_id}-{sess.region_name}"
    try:
        s3.head_bucket(Bucket=bucket)
        return bucket
    except s3.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise DeployError(f"bucket {bucket}: {error}")
    if name:
        raise DeployError(f"bucket {bucket} does not exist")
    step(f"creating the artifact bucket {bucket}")
    config = {} if sess.region_name == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": sess.region_name}}
    s3.create_bucket(Bucket=bucket, **config)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.get_waiter("bucket_exists").wait(Bucket=bucket)
    return bucket


def upload(sess: Any, bucket: str, prefix: str, zips: dict[str, Path]) -> str:
    """Uploads the zips (unless this build is there already) and the template; returns the
    template's URL."""
    s3 = sess.client("s3")
    step(f"uploading to s3://{bucket}/{prefix}")
    for binary, path in zips.items():
        key = f"{prefix}{binary}.zip"
        try:
            s3.head_object(Bucket=bucket, Key=key)
            print(f"    {key} already there")
        except s3.exceptions.ClientError:
            s3.upload_file(str(path), bucket, key)
            print(f"    {key}")
    key = f"{prefix}template.yaml"
    s3.upload_file(str(cfn_template.TEMPLATE), bucket, key)
    return f"https://{bucket}.s3.{sess.region_name}.amazonaws.com/{key}"


def describe(cfn: Any, stack: str) -> dict[str, Any] | None:
    try:
        return cfn.describe_stacks(StackName=stack)["Stacks"][0]
    except cfn.exceptions.ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def wait(cfn: Any, stack: str, since: float, goal: str) -> dict[str, Any] | None:
    """Prints the stack's events until it settles; returns the stack (None once deleted)."""
    seen: set[str] = set()
    while True:
        current = describe(cfn, stack)
        if current is None:
            return None
        try:
            events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
        except cfn.exceptions.ClientError:
            events = []
        for event in reversed(events):
            if event["EventId"] in seen or event["Timestamp"].timestamp() < since:
                continue
            seen.add(event["EventId"])
            reason = f" ({event['ResourceStatusReason']})" if event.get("ResourceStatusReason") else ""
            print(f"    {event['Timestamp']:%H:%M:%S} {event['ResourceStatus']:<28} {event['LogicalResourceId']}{reason}", flush=True)
        status = current["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            if status != goal:
                raise DeployError(f"stack {stack} ended {status} (not {goal}); the events above say why")
            return current
        time.sleep(5)


def parameters(args: argparse.Namespace, existing: dict[str, Any] | None, bucket: str, prefix: str) -> list[dict[str, Any]]:
    given = {"ArtifactBucket": bucket, "ArtifactPrefix": prefix, "Architecture": args.arch}
    for pair in args.parameter:
        key, sep, value = pair.partition("=")
        if not sep:
            raise DeployError(f"--parameter {pair}: expected KEY=VALUE")
        given[key] = value
    known = set(cfn_template.load().get("Parameters", {}))
    unknown = set(given) - known
    if unknown:
        raise DeployError(f"unknown template parameters {sorted(unknown)}; known: {sorted(known)}")
    result = [{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()]
    # On an update, whatever was set before and is not given now stays as it was.
    previous = {p["ParameterKey"] for p in (existing or {}).get("Parameters", [])}
    result += [{"ParameterKey": k, "UsePreviousValue": True} for k in sorted(previous & known - set(given))]
    return result


def deploy(args: argparse.Namespace, zips: dict[str, Path], build_hash: str) -> None:
    step("connecting to AWS")
    sess = session(args)
    cfn = sess.client("cloudformation")
    bucket = ensure_bucket(sess, args.bucket)
    prefix = f"{args.stack_name}/{build_hash}/"
    template_url = upload(sess, bucket, prefix, zips)

    existing = describe(cfn, args.stack_name)
    if existing and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        raise DeployError(f"stack {args.stack_name} failed its first creation (ROLLBACK_COMPLETE) and cannot be "
                          f"updated: remove it with --delete, then deploy again")
    creating = existing is None or existing["StackStatus"] == "REVIEW_IN_PROGRESS"
    change_set = f"deploy-{int(time.time())}"
    step(f"{'creating' if creating else 'updating'} stack {args.stack_name} (change set {change_set})")
    cfn.create_change_set(
        StackName=args.stack_name,
        ChangeSetName=change_set,
        ChangeSetType="CREATE" if creating else "UPDATE",
        TemplateURL=template_url,
        Parameters=parameters(args, None if creating else existing, bucket, prefix),
        Capabilities=CAPABILITIES,
        Tags=[{"Key": "messaging:stack", "Value": args.stack_name}],
    )
    while True:
        described = cfn.describe_change_set(StackName=args.stack_name, ChangeSetName=change_set)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
            break
        time.sleep(3)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        cfn.delete_change_set(StackName=args.stack_name, ChangeSetName=change_set)
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            print("    no changes: the stack is up to date")
        else:
            raise DeployError(f"the change set failed: {reason}")
    else:
        for change in described.get("Changes", []):
            rc = change["ResourceChange"]
            print(f"    {rc['Action']:<8} {rc['LogicalResourceId']} ({rc['ResourceType']})"
                  + (f" replacement={rc['Replacement']}" if rc.get("Replacement") not in (None, "False") else ""))
        started = time.time() - 5
        cfn.execute_change_set(StackName=args.stack_name, ChangeSetName=change_set)
        step("waiting for CloudFormation")
        wait(cfn, args.stack_name, started, "CREATE_COMPLETE" if creating else "UPDATE_COMPLETE")
    stack = describe(cfn, args.stack_name) or {}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    step("outputs")
    for key in sorted(outputs):
        print(f"    {key:<26} {outputs[key]}")
    if "ApiUrl" not in outputs:
        raise DeployError(f"stack {args.stack_name} has no ApiUrl output")
    print(f"\nAPI URL: {outputs['ApiUrl']}")


def delete(args: argparse.Namespace) -> None:
    step("connecting to AWS")
    sess = session(args)
    cfn = sess.client("cloudformation")
    existing = describe(cfn, args.stack_name)
    if existing is None:
        print(f"    stack {args.stack_name} does not exist in {sess.region_name}: nothing to delete")
        return
    if not args.yes:
        if not sys.stdin.isatty():
            raise DeployError("deleting needs --yes when not run interactively")
        answer = input(f"Delete stack {args.stack_name} in {sess.region_name} with ALL its data "
                       f"(events, users, messages)? Type the stack name to confirm: ")
        if answer.strip() != args.stack_name:
            raise DeployError("not confirmed; nothing deleted")
    params = {p["ParameterKey"]: p.get("ParameterValue") for p in existing.get("Parameters", [])}
    if params.get("DeletionProtection") == "true" and existing["StackStatus"] != "ROLLBACK_COMPLETE":
        step("turning off the tables' deletion protection")
        started = time.time() - 5
        cfn.update_stack(
            StackName=args.stack_name, UsePreviousTemplate=True, Capabilities=CAPABILITIES,
            # The other values as described (the template has no NoEcho parameter to hide them).
            Parameters=[{"ParameterKey": k, "ParameterValue": "false" if k == "DeletionProtection" else v}
                        for k, v in params.items()],
        )
        wait(cfn, args.stack_name, started, "UPDATE_COMPLETE")
    step(f"deleting stack {args.stack_name}")
    started = time.time() - 5
    cfn.delete_stack(StackName=args.stack_name)
    wait(cfn, args.stack_name, started, "DELETE_COMPLETE")
    # Generations of the read models that `messaging replay` created live outside the stack.
    dynamodb = sess.client("dynamodb")
    generation = re.compile(rf"^{re.escape(args.stack_name)}-g[1-9][0-9]*-")
    for page in dynamodb.get_paginator("list_tables").paginate():
        for table in page["TableNames"]:
            if generation.match(table):
                print(f"    deleting {table} (a replay's generation)")
                dynamodb.delete_table(TableName=table)
    print(f"\nDeleted {args.stack_name}. The artifact bucket is kept for other stacks; remove this "
          f"stack's zips with: aws s3 rm --recursive s3://{args.bucket or f'messaging-deploy-{sess.account_id}-{sess.region_name}'}/{args.stack_name}/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack-name", default="messaging-dev",
                        help="CloudFormation stack, also the prefix of every table and queue (default messaging-dev)")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
    parser.add_argument("--profile", help="AWS profile (default: the SDK's usual chain)")
    parser.add_argument("--arch", choices=["arm64", "x86_64"], default="arm64", help="Lambda architecture (default arm64)")
    parser.add_argument("--bucket", help="existing S3 bucket for the artifacts (default: messaging-deploy-<account>-<region>, created)")
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="template parameter, repeatable (e.g. DeletionProtection=false, AlarmEmail=ops@example.com)")
    parser.add_argument("--dry-run", action="store_true", help="build and validate everything; no AWS call, no credentials needed")
    parser.add_argument("--skip-build", action="store_true", help="reuse the functions built last time (target/lambda)")
    parser.add_argument("--delete", action="store_true", help="tear the stack down (all its data) instead of deploying")
    parser.add_argument("--yes", action="store_true", help="with --delete: do not ask")
    args = parser.parse_args()
    if not STACK_NAME.match(args.stack_name):
        print(f"--stack-name {args.stack_name!r}: letters, digits and dashes, starting with a letter, at most 64 "
              f"(the longest queue name, <stack>-direct-dlq.fifo, must fit SQS's 80)", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        if args.delete:
            delete(args)
            return 0
        out = target_dir() / "cloudformation"
        lambda_dir = target_dir() / "lambda" if args.skip_build else build(args.arch)
        zips, build_hash = package(lambda_dir, out / "artifacts")
        validate(out, lambda_dir, args.arch)
        if args.dry_run:
            print(f"\ndry run ok in {time.monotonic() - started:.0f}s: {len(zips)} functions built for {args.arch} "
                  f"and packaged (build {build_hash}), template linted, transformed, linted again and "
                  f"cross-checked; nothing was sent to AWS")
            return 0
        deploy(args, zips, build_hash)
    except DeployError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted (CloudFormation goes on with whatever it had started)", file=sys.stderr)
        return 130
    print(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
