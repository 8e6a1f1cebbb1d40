"""Reads template.yaml so the local stack is built from the same definitions as production:
the DynamoDB table, the queues with their redrive policies, the HTTP routes and the SQS
subscriptions of every function. Nothing here is deployed; it feeds moto and the router."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser where PyYAML has it
    """SafeLoader that keeps CloudFormation short-form tags as {"Tag": value} dicts."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


_parsed: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    """The parsed template, a copy of its own for each caller. It is parsed once per process while the
    file is unchanged: every local stack (one per test) reads it, and parsing 60 KB of YAML took longer
    than starting the rest of the stack."""
    stat = path.stat()
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _parsed.get(path)
    if cached is None or cached[0] != key:
        cached = _parsed[path] = (key, yaml.load(path.read_text(), Loader=_CfnLoader))  # noqa: S506 - SafeLoader
    return copy.deepcopy(cached[1])


@dataclass
class Route:
    method: str
    path: str
    function: str
    authorized: bool
    pattern: re.Pattern = field(init=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


@dataclass
class Function:
    logical_id: str
    module: str  # importable module path, e.g. functions.calendar_api.app
    handler: str
    queues: list[str]  # logical ids of the SQS queues feeding it


def functions(template: dict[str, Any]) -> dict[str, Function]:
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        module_file, handler = props["Handler"].rsplit(".", 1)
        code_dir = props["CodeUri"].strip("/").replace("/", ".")
        queues = [
            event["Properties"]["Queue"]["Fn::GetAtt"][0]
            for event in (props.get("Events") or {}).values()
            if event["Type"] == "SQS"
        ]
        found[logical_id] = Function(logical_id, f"{code_dir}.{module_file}", handler, queues)
    return found


def routes(template: dict[str, Any]) -> list[Route]:
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in (resource["Properties"].get("Events") or {}).values():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            auth = (props.get("Auth") or {}).get("Authorizer")
            found.append(Route(props["Method"].upper(), props["Path"], logical_id, authorized=auth != "NONE"))
    return found


def table_definition(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(logical id, create_table kwargs) of the single DynamoDB table."""
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::DynamoDB::Table":
            props = resource["Properties"]
            kwargs = {key: props[key] for key in ("AttributeDefinitions", "KeySchema", "BillingMode")}
            if "GlobalSecondaryIndexes" in props:
                kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            return logical_id, kwargs
    raise LookupError("template.yaml has no DynamoDB table")


def queues(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Queue logical id -> properties, dead-letter queues first."""
    resources = template["Resources"]
    found = {lid: r.get("Properties") or {} for lid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    return dict(sorted(found.items(), key=lambda kv: "RedrivePolicy" in kv[1]))


def global_env_names(template: dict[str, Any]) -> set[str]:
    return set(template["Globals"]["Function"]["Environment"]["Variables"])


def state_machines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """State machine logical id -> {"definition": ASL text with substitutions left in, "substitutions": {...}}."""
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            props = resource["Properties"]
            found[logical_id] = {
                "definition": (ROOT / props["DefinitionUri"]).read_text(),
                "substitutions": props.get("DefinitionSubstitutions") or {},
            }
    return found


def function_env(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Function logical id -> its own (non-global) environment variables, unresolved."""
    return {
        lid: ((r["Properties"].get("Environment") or {}).get("Variables") or {})
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
