"""Reading cloudformation/template.yaml, and the SAM transform, for scripts/deploy.py,
scripts/check_template.py and scripts/moto_stack_test.py (no AWS call in here)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "cloudformation" / "template.yaml"

# Parameter values used wherever the template is transformed without a real deployment.
PLACEHOLDER_PARAMETERS = {
    "ArtifactBucket": "example-artifacts",
    "ArtifactPrefix": "example-stack/0000/",
}


class _CfnLoader(yaml.SafeLoader):
    """PyYAML loader that turns CloudFormation's short-form tags into their long form."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long (JSON) form."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise ValueError(f"{path}: not a CloudFormation template")
    return data


class _NoManagedPolicies:
    """The template names no managed policy (every function has its own role), so the SAM
    translator never needs IAM's list of them: this loader answers without calling AWS."""

    def load(self) -> dict[str, str]:
        return {}


def sam_transform(template: dict[str, Any], parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The plain CloudFormation that `AWS::Serverless-2016-10-31` expands to, computed locally
    by aws-sam-translator (the library CloudFormation's SAM transform runs)."""
    # The translator builds ARNs from a region; any region gives the same resources.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform  # imported late: slow import

    values = dict(PLACEHOLDER_PARAMETERS)
    values.update(parameters or {})
    return transform(copy.deepcopy(template), values, _NoManagedPolicies())
