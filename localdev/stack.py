"""The local system: moto for AWS, the Cronofy emulator for Cronofy, and the real handlers behind
an API Gateway stand-in and Lambda's SQS event source mappings, as AWS would run them.

    with DevStack() as stack:
        stack.emulator.add_calendar_account("google", "jane@example.com", calendars=[...])
        session = stack.browser("u_jane", "org_1")        # requests.Session with a session JWT
        session.post(stack.url("/v1/calendar/connect"), json={"provider": "google"})
        stack.drain()                                        # deliver queued SQS messages

Everything runs in one process: moto's in-process mock (`mock_aws`), the emulator and the router
on 127.0.0.1 in daemon threads. Each function is called under its own lock, as one Lambda
container handles one event at a time. The parts: `provisioning` (the template's resources and
environment), `sqs_pump` (event source mappings), `api_gateway` (the HTTP router and local pages);
this module starts them, owns the functions and the Step Functions bridge, and drains.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.httpsession
import botocore.loaders
import botocore.session
import requests
from moto import mock_aws
from moto.kms import models as kms_models

from localdev import template
from localdev.api_gateway import ApiGateway, session_token
from localdev.emulator import CronofyEmulator
from localdev.invocation_logs import keys_per_invocation
from localdev.moto_limits import enforce_item_size
from localdev.moto_threads import serialize_dynamodb
from localdev.provisioning import (
    CLIENT_ID,
    CLIENT_SECRET,
    REGION,
    SIGNING_KEY,
    Resources,
    function_arn,
    function_environment,
    provision,
)
from localdev.sqs_pump import SqsPump

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "REGION", "SIGNING_KEY", "DevStack", "LambdaContext"]


_models = botocore.loaders.create_loader()


def _default_session_sharing_models() -> boto3.Session:
    """A new default boto3 session, as moto gives each mock, whose service models (botocore's JSON) come
    from one loader for the whole process: a stack per test no longer parses them again for every client."""
    session = botocore.session.get_session()
    session.register_component("data_loader", _models)
    return boto3.Session(botocore_session=session)


def _share_models(session: botocore.session.Session) -> None:
    session._components.register_component("data_loader", _models)


_unused_private_key: list[Any] = []


def _private_key_unless_symmetric(generate: Callable[[str], Any]) -> Callable[[str], Any]:
    """moto makes an RSA-2048 private key for every KMS key, symmetric ones too (which never use it):
    ~60 ms of every stack's provisioning. Symmetric keys share one; asymmetric keys get their own."""
    def private_key(key_spec: str) -> Any:
        if key_spec.startswith(("RSA_", "ECC_")):
            return generate(key_spec)
        if not _unused_private_key:
            _unused_private_key.append(generate(key_spec))
        return _unused_private_key[0]

    return private_key


_tls: list[Any] = []


def _shared_ssl_context(_http_session: Any) -> Any:
    """One TLS context for every botocore client in the process: moto answers before any connection is
    made, and a new context per client (OpenSSL's defaults loaded each time) cost a tenth of a test."""
    if not _tls:
        _tls.append(botocore.httpsession.create_urllib3_context())
    return _tls[0]


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = ""
    invoked_function_arn: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


class DevStack:
    def __init__(self, emulator_options: dict[str, Any] | None = None, router_port: int = 0,
                 run_state_machines: bool = True):
        self.template = template.load()
        self.functions = template.functions(self.template)
        self.routes = template.routes(self.template)
        self.emulator = CronofyEmulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                        **(emulator_options or {}))
        # Step Functions executions really run (moto's ASL parser); Lambda tasks reach the real
        # handlers through the patched no-Docker Lambda backend (see _route_lambda_invocations).
        # run_state_machines=False: executions are started and stay RUNNING, for a caller that plays the
        # state machine's steps itself (`make invoke` with a backfill event).
        self.run_state_machines = run_state_machines
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": run_state_machines},
                                      "lambda": {"use_docker": False}})
        self._handlers: dict[str, Callable] = {}
        self._locks: dict[str, threading.Lock] = {fid: threading.Lock() for fid in self.functions}
        self.invocations: dict[str, int] = {fid: 0 for fid in self.functions}
        self.resources = Resources(function_ids=frozenset(self.functions))
        # The router, the pump and the Step Functions bridge call `self.invoke` when they run, so a
        # wrapper put on the instance (bench/meters.py) sees every invocation.
        self.gateway = ApiGateway(self.routes, lambda fid, event: self.invoke(fid, event), port=router_port)
        self.sqs = SqsPump(self.functions, self.resources, lambda fid, event: self.invoke(fid, event))
        self._saved_env: dict[str, str | None] = {}
        self._original_lambda_invoke = None
        self._saved_session: boto3.Session | None = None
        self._saved_register_data_loader: Callable[..., None] | None = None
        self._saved_get_ssl_context: Callable[..., Any] | None = None
        self._saved_generate_private_key: Callable[[str], Any] | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._set_env({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
        serialize_dynamodb()  # moto's DynamoDB is not thread-safe: see moto_threads
        enforce_item_size()  # DynamoDB's 400 KB as DynamoDB counts it: see moto_limits
        self._mock.start()
        self._saved_session = boto3.DEFAULT_SESSION
        boto3.DEFAULT_SESSION = _default_session_sharing_models()
        # ... and so does every session the handlers make (calsync.wiring.aws_client: a new boto3 Session
        # per client, as in Lambda), which parsed the models and searched botocore's data for each client
        self._saved_register_data_loader = botocore.session.Session._register_data_loader
        botocore.session.Session._register_data_loader = _share_models  # type: ignore[method-assign]
        self._saved_generate_private_key = kms_models.generate_private_key
        kms_models.generate_private_key = _private_key_unless_symmetric(kms_models.generate_private_key)
        self._saved_get_ssl_context = botocore.httpsession.URLLib3Session._get_ssl_context
        botocore.httpsession.URLLib3Session._get_ssl_context = _shared_ssl_context  # type: ignore[method-assign]
        self.emulator.start()
        self.gateway.start()
        self._route_lambda_invocations()
        self.resources = provision(self.template, frozenset(self.functions))
        self.sqs.resources = self.resources
        self._set_env(function_environment(self.template, self.resources, api_url=self.base_url,
                                           cronofy_url=self.emulator.base_url))
        self._reset_wiring()
        self._load_handlers()

    def stop(self) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        self.stop_pump()
        if self._original_lambda_invoke is not None:
            LambdaSimpleBackend.invoke = self._original_lambda_invoke
        self.gateway.stop()
        self.emulator.stop()
        boto3.DEFAULT_SESSION = self._saved_session
        if self._saved_register_data_loader is not None:
            botocore.session.Session._register_data_loader = self._saved_register_data_loader  # type: ignore[method-assign]
            self._saved_register_data_loader = None
        if self._saved_generate_private_key is not None:
            kms_models.generate_private_key = self._saved_generate_private_key
            self._saved_generate_private_key = None
        if self._saved_get_ssl_context is not None:
            botocore.httpsession.URLLib3Session._get_ssl_context = self._saved_get_ssl_context  # type: ignore[method-assign]
            self._saved_get_ssl_context = None
        self._mock.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._reset_wiring()

    @staticmethod
    def _reset_wiring() -> None:
        """The handlers' per-container objects are rebuilt from the environment on next use."""
        from calsync import wiring

        wiring.reset()

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    @property
    def base_url(self) -> str:
        return self.gateway.base_url

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    # the provisioned resources, by the names tests and benchmarks use
    @property
    def table_name(self) -> str:
        return self.resources.table_name

    @property
    def kms_key_id(self) -> str:
        return self.resources.kms_key_id

    @property
    def queue_urls(self) -> dict[str, str]:
        return self.resources.queue_urls

    @property
    def queue_arns(self) -> dict[str, str]:
        return self.resources.queue_arns

    @property
    def state_machine_arns(self) -> dict[str, str]:
        return self.resources.state_machine_arns

    def _route_lambda_invocations(self) -> None:
        """moto's no-Docker Lambda only echoes; send Step Functions' invocations to the real handlers."""
        from moto.awslambda_simple.models import LambdaSimpleBackend

        stack = self
        self._original_lambda_invoke = LambdaSimpleBackend.invoke

        def invoke(backend, function_name, qualifier, body, headers, response_headers):
            function_id = function_name.split(":function:")[-1].split(":")[0]
            event = json.loads(body) if body else {}
            try:
                result = stack.invoke(function_id, event)
            except Exception as error:  # noqa: BLE001 - reported as Lambda reports an unhandled error
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}).encode()
            return json.dumps(result).encode()

        LambdaSimpleBackend.invoke = invoke

    def executions(self, status: str | None = None) -> list[dict[str, Any]]:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        found = []
        for arn in self.state_machine_arns.values():
            kwargs = {"stateMachineArn": arn} | ({"statusFilter": status} if status else {})
            found.extend(sfn.list_executions(**kwargs)["executions"])
        return found

    def wait_for_executions(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.run_state_machines and self.executions("RUNNING"):
            if time.monotonic() > deadline:
                raise TimeoutError("Step Functions executions still running")
            time.sleep(0.05)

    def _load_handlers(self) -> None:
        from calsync.observability import logger

        keys_per_invocation(logger)  # one process runs every function here: see invocation_logs
        for fid, fn in self.functions.items():
            module = importlib.import_module(fn.module)
            self._handlers[fid] = getattr(module, fn.handler)

    # ---- invoking functions ------------------------------------------------------------------------

    def invoke(self, function_id: str, event: dict[str, Any]) -> Any:
        context = LambdaContext(function_name=function_id, aws_request_id=str(uuid.uuid4()),
                                invoked_function_arn=function_arn(function_id))
        with self._locks[function_id]:
            self.invocations[function_id] += 1
            # A fresh context per invocation, as in Lambda: nothing a caller set (a step function started
            # from a route) leaks into the invoked function.
            return contextvars.Context().run(self._handlers[function_id], event, context)

    # ---- SQS event source mappings (sqs_pump) -------------------------------------------------------

    def send(self, queue_id: str, body: dict[str, Any] | str) -> None:
        self.sqs.send(queue_id, body)

    def sqs_event(self, queue_id: str, bodies: list[dict[str, Any] | str]) -> dict[str, Any]:
        """One SQS batch as Lambda receives it, for invoking a function directly with chosen messages."""
        return self.sqs.sqs_event(queue_id, bodies)

    def pump(self) -> int:
        """One round over every subscribed queue; returns how many messages were delivered."""
        return self.sqs.pump()

    def queue_messages(self, queue_id: str) -> list[dict[str, Any]]:
        """Read and delete every message on a queue (for queues no function consumes, e.g. the core
        platform's CalendarChangesQueue, and DLQs)."""
        return self.sqs.queue_messages(queue_id)

    def start_pump(self, interval: float = 0.2) -> None:
        """Deliver SQS batches in a background thread, as Lambda's event source mappings do, for
        callers that cannot call drain() at the right moment (a real browser driving the web app)."""
        self.sqs.start(interval)

    def stop_pump(self) -> None:
        self.sqs.stop()

    def drain(self, max_rounds: int = 200, timeout: float = 120) -> int:
        """Deliver until every subscribed queue is empty (failed messages retry until their DLQ;
        messages handed back for later are waited for)."""
        total = 0
        deadline = time.monotonic() + timeout
        for _ in range(max_rounds):
            # Cronofy catches up first: accepted writes land, pushes (and their retries) go out
            self.emulator.settle(timeout=10)
            self.wait_for_executions()
            delivered = self.pump()
            total += delivered
            if delivered or (self.run_state_machines and self.executions("RUNNING")):
                continue
            if self.emulator.pending_writes or self.emulator.notifier.pending:
                continue  # the last round's writes (or pushes) are still on their way: settle again
            if not self.sqs.in_flight():
                return total
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        raise RuntimeError("queues did not drain")

    def settle(self) -> bool:
        """Let Cronofy (the emulator) catch up without sleeping: every accepted write lands, every
        queued push and its retries are delivered to the webhook. SQS is not pumped (see drain)."""
        return self.emulator.settle(timeout=10)

    # ---- Cronofy client secret rotation and outages ---------------------------------------------------

    def rotate_client_secret(self, new_secret: str) -> None:
        """Step 1+2 of a Cronofy client secret rotation: a second secret becomes active at Cronofy
        (pushes carry two HMACs) and the service switches to it (the secret store is updated)."""
        self.emulator.begin_secret_rotation(new_secret)
        self.use_client_secret(new_secret)

    def use_client_secret(self, secret: str) -> None:
        """The service's copy of the Cronofy client secret changes (Secrets Manager, then new
        containers): OAuth calls and push verification use it from now on."""
        self._set_env({"CRONOFY_CLIENT_SECRET": secret})
        self._reset_wiring()

    def complete_secret_rotation(self) -> None:
        """Step 3: the old secret is retired at Cronofy."""
        self.emulator.complete_secret_rotation()

    def fail_webhooks(self, count: int) -> None:
        """The next `count` pushes reaching the webhook route are answered 503 (an API Gateway or
        Lambda outage): Cronofy retries them."""
        self.gateway.fail_webhooks(count)

    # ---- people ---------------------------------------------------------------------------------------

    def session_token(self, user_id: str, org_id: str, roles: list[str] | None = None) -> str:
        return session_token(user_id, org_id, roles)

    def browser(self, user_id: str, org_id: str, roles: list[str] | None = None) -> requests.Session:
        """A requests.Session acting as the user's browser: keeps cookies, carries the session JWT."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.session_token(user_id, org_id, roles)}"
        return session

    def raw_items(self) -> list[dict[str, Any]]:
        """Every raw DynamoDB item (tests inspect what is stored at rest)."""
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        items, kwargs = [], {"TableName": self.table_name}
        while True:
            resp = dynamodb.scan(**kwargs)
            items.extend(resp["Items"])
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
