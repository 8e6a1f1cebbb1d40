"""The AWS resources of template.yaml, created locally (moto or the in-memory stand-ins), and the
environment the functions read to find them.

`provision` creates the table, the KMS key, the queues (with their redrive policies) and the state
machines, in the order their references need; `function_environment` is every variable the template
sets, with the local value of each (it fails on one the template adds and this module does not know).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3

from localdev import template

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
CLIENT_ID = "solarnexus-local"
CLIENT_SECRET = "local-cronofy-client-secret"  # the emulator's: signs push notifications
SIGNING_KEY = "local-state-signing-key"
# Failed messages come back at once (quick local retries) unless the handler hands them back for
# later with ChangeMessageVisibility, as a throttled function does.
LOCAL_VISIBILITY_TIMEOUT = 0


def function_arn(function_id: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_id}"


@dataclass
class Resources:
    """What `provision` created: names, URLs and ARNs by the template's logical ids."""

    table_name: str = ""
    kms_key_id: str = ""
    queue_urls: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)
    state_machine_arns: dict[str, str] = field(default_factory=dict)
    function_ids: frozenset[str] = frozenset()

    def resolve(self, value: Any) -> str:
        """The local value of a template reference (state machines and Lambda ARNs)."""
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in self.state_machine_arns:
            return self.state_machine_arns[value["Ref"]]
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target, attribute = value["Fn::GetAtt"]
            if attribute == "Arn" and target in self.function_ids:
                return function_arn(target)
        if isinstance(value, str):
            return value
        raise RuntimeError(f"the local stack cannot resolve {value!r}")


def provision(doc: dict[str, Any], function_ids: frozenset[str]) -> Resources:
    """Create the template's table, key, queues and state machines (AWS clients must be mocked)."""
    resources = Resources(function_ids=function_ids)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    _, table_kwargs = template.table_definition(doc)
    resources.table_name = f"calendar-sync-local-{uuid.uuid4().hex[:6]}"
    dynamodb.create_table(TableName=resources.table_name, **table_kwargs)
    resources.kms_key_id = boto3.client("kms", region_name=REGION).create_key(
        Description="local token key")["KeyMetadata"]["KeyId"]
    _create_queues(doc, resources)
    _create_state_machines(doc, resources)
    return resources


def _create_queues(doc: dict[str, Any], resources: Resources) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    for logical_id, props in template.queues(doc).items():
        attributes = {"VisibilityTimeout": str(LOCAL_VISIBILITY_TIMEOUT)}
        redrive = props.get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": resources.queue_arns[target],
                                                      "maxReceiveCount": str(redrive["maxReceiveCount"])})
        url = sqs.create_queue(QueueName=f"{logical_id}-local", Attributes=attributes)["QueueUrl"]
        resources.queue_urls[logical_id] = url
        resources.queue_arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]


def _create_state_machines(doc: dict[str, Any], resources: Resources) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    for logical_id, machine in template.state_machines(doc).items():
        definition = machine["definition"]
        for name, value in machine["substitutions"].items():
            definition = definition.replace("${" + name + "}", resources.resolve(value))
        resources.state_machine_arns[logical_id] = sfn.create_state_machine(
            name=f"{logical_id}-local", definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/local-stepfunctions")["stateMachineArn"]


def function_environment(doc: dict[str, Any], resources: Resources, *, api_url: str,
                         cronofy_url: str) -> dict[str, str]:
    """Every variable the functions read, with its local value (the template's globals and each
    function's own); a global the template sets that is not known here is an error."""
    local_env = {
        "STAGE": "local",
        "TABLE_NAME": resources.table_name,
        "KMS_KEY_ID": resources.kms_key_id,
        "PUBLIC_API_URL": api_url,
        "WEB_APP_URL": f"{api_url}/app",
        "CRONOFY_CLIENT_ID": CLIENT_ID,
        "CRONOFY_DATA_CENTER": "us",
        "CRONOFY_SECRET_ARN": "",  # local: the secret comes from the two variables below
        "CRONOFY_CLIENT_SECRET": CLIENT_SECRET,
        "STATE_SIGNING_KEY": SIGNING_KEY,
        "CRONOFY_API_URL": cronofy_url,
        "CRONOFY_APP_URL": cronofy_url,
        "CALENDAR_CHANGES_QUEUE_URL": resources.queue_urls["CalendarChangesQueue"],
        "CLEANUP_QUEUE_URL": resources.queue_urls["CleanupQueue"],
        "NOTIFICATIONS_QUEUE_URL": resources.queue_urls["NotificationsQueue"],
        "RATE_LIMIT_PER_SECOND": os.environ.get("RATE_LIMIT_PER_SECOND", "50"),
        "RATE_LIMIT_PER_MINUTE": os.environ.get("RATE_LIMIT_PER_MINUTE", "500"),
        "RECONCILE_REQUEST_BUDGET": os.environ.get("RECONCILE_REQUEST_BUDGET", "1000"),
        "BUSY_STALE_AFTER_MINUTES": os.environ.get("BUSY_STALE_AFTER_MINUTES", "180"),
        "POWERTOOLS_SERVICE_NAME": "calendar-sync",
        "POWERTOOLS_METRICS_NAMESPACE": "SolarNexus/CalendarSync",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
    }
    missing = template.global_env_names(doc) - set(local_env)
    if missing:
        raise RuntimeError(f"template.yaml sets variables the local stack does not: {sorted(missing)}")
    for variables in template.function_env(doc).values():
        local_env.update({name: resources.resolve(value) for name, value in variables.items()})
    # EMF metrics are recorded but not printed locally (they would drown the demo's narration);
    # POWERTOOLS_METRICS_DISABLED=false shows them.
    local_env["POWERTOOLS_METRICS_DISABLED"] = os.environ.get("POWERTOOLS_METRICS_DISABLED", "true")
    return local_env
