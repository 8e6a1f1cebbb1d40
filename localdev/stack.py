"""The local stack: moto for AWS, the Cronofy emulator for Cronofy, and a router that feeds the
real handlers API Gateway (HTTP API, payload 2.0) events and SQS batches, as AWS would.

    with LocalStack() as stack:
        stack.emulator.add_calendar_account("google", "jane@example.com", calendars=[...])
        session = stack.browser("u_jane", "org_1")        # requests.Session with a session JWT
        session.post(stack.url("/v1/calendar/connect"), json={"provider": "google"})
        stack.drain()                                        # deliver queued SQS messages

Everything runs in one process: moto's in-process mock (`mock_aws`), the emulator and the
router on 127.0.0.1 in daemon threads. Each function is called under its own lock, as one Lambda
container handles one event at a time.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import importlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import requests
from moto import mock_aws

from localdev import jwt, template
from localdev.emulator import CronofyEmulator

REGION = "us-east-1"
CLIENT_ID = "solarnexus-local"
CLIENT_SECRET = "local-cronofy-client-secret"  # the emulator's: signs push notifications
SIGNING_KEY = "local-state-signing-key"
JWT_KEY = b"local-session-jwt-key"
# Failed messages come back at once (quick local retries) unless the handler hands them back for
# later with ChangeMessageVisibility, as a throttled function does.
LOCAL_VISIBILITY_TIMEOUT = 0


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = ""
    invoked_function_arn: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


class LocalStack:
    def __init__(self, emulator_options: dict[str, Any] | None = None):
        self.template = template.load()
        self.functions = template.functions(self.template)
        self.routes = template.routes(self.template)
        self.emulator = CronofyEmulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                        **(emulator_options or {}))
        # Step Functions executions really run (moto's ASL parser); Lambda tasks reach the real
        # handlers through the patched no-Docker Lambda backend (see _route_lambda_invocations).
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True},
                                      "lambda": {"use_docker": False}})
        self._handlers: dict[str, Callable] = {}
        self._locks: dict[str, threading.Lock] = {fid: threading.Lock() for fid in self.functions}
        self.queue_urls: dict[str, str] = {}
        self.invocations: dict[str, int] = {fid: 0 for fid in self.functions}
        self._server: ThreadingHTTPServer | None = None
        self._saved_env: dict[str, str | None] = {}
        self._original_lambda_invoke = None
        self.state_machine_arns: dict[str, str] = {}
        self._webhook_failures = 0
        self._webhook_failures_lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._set_env({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
        self._mock.start()
        self.emulator.start()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RouterHandler)
        self._server.daemon_threads = True
        self._server.stack = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, name="router", daemon=True).start()
        self._route_lambda_invocations()
        self._create_resources()
        self._load_handlers()

    def stop(self) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        self.stop_pump()
        if self._original_lambda_invoke is not None:
            LambdaSimpleBackend.invoke = self._original_lambda_invoke
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        self.emulator.stop()
        self._mock.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        from calsync import wiring

        wiring.reset()

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _create_resources(self) -> None:
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        table_id, table_kwargs = template.table_definition(self.template)
        self.table_name = f"calendar-sync-local-{uuid.uuid4().hex[:6]}"
        dynamodb.create_table(TableName=self.table_name, **table_kwargs)
        self.kms_key_id = boto3.client("kms", region_name=REGION).create_key(
            Description="local token key")["KeyMetadata"]["KeyId"]
        sqs = boto3.client("sqs", region_name=REGION)
        arns: dict[str, str] = {}
        for logical_id, props in template.queues(self.template).items():
            attributes = {"VisibilityTimeout": str(LOCAL_VISIBILITY_TIMEOUT)}
            redrive = props.get("RedrivePolicy")
            if redrive:
                target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
                attributes["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": arns[target], "maxReceiveCount": str(redrive["maxReceiveCount"])})
            url = sqs.create_queue(QueueName=f"{logical_id}-local", Attributes=attributes)["QueueUrl"]
            self.queue_urls[logical_id] = url
            arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"]
        self.queue_arns = arns
        sfn = boto3.client("stepfunctions", region_name=REGION)
        for logical_id, machine in template.state_machines(self.template).items():
            definition = machine["definition"]
            for name, value in machine["substitutions"].items():
                definition = definition.replace("${" + name + "}", self._resolve(value))
            self.state_machine_arns[logical_id] = sfn.create_state_machine(
                name=f"{logical_id}-local", definition=definition,
                roleArn="arn:aws:iam::123456789012:role/local-stepfunctions")["stateMachineArn"]
        function_env = {}
        for variables in template.function_env(self.template).values():
            function_env.update({name: self._resolve(value) for name, value in variables.items()})
        local_env = {
            "STAGE": "local",
            "TABLE_NAME": self.table_name,
            "KMS_KEY_ID": self.kms_key_id,
            "PUBLIC_API_URL": self.base_url,
            "WEB_APP_URL": f"{self.base_url}/app",
            "CRONOFY_CLIENT_ID": CLIENT_ID,
            "CRONOFY_DATA_CENTER": "us",
            "CRONOFY_SECRET_ARN": "",  # local: the secret comes from the two variables below
            "CRONOFY_CLIENT_SECRET": CLIENT_SECRET,
            "STATE_SIGNING_KEY": SIGNING_KEY,
            "CRONOFY_API_URL": self.emulator.base_url,
            "CRONOFY_APP_URL": self.emulator.base_url,
            "CALENDAR_CHANGES_QUEUE_URL": self.queue_urls["CalendarChangesQueue"],
            "CLEANUP_QUEUE_URL": self.queue_urls["CleanupQueue"],
            "NOTIFICATIONS_QUEUE_URL": self.queue_urls["NotificationsQueue"],
            "RATE_LIMIT_PER_SECOND": os.environ.get("RATE_LIMIT_PER_SECOND", "50"),
            "RATE_LIMIT_PER_MINUTE": os.environ.get("RATE_LIMIT_PER_MINUTE", "500"),
            "RECONCILE_REQUEST_BUDGET": os.environ.get("RECONCILE_REQUEST_BUDGET", "1000"),
            "BUSY_STALE_AFTER_MINUTES": os.environ.get("BUSY_STALE_AFTER_MINUTES", "180"),
            "POWERTOOLS_SERVICE_NAME": "calendar-sync",
            "POWERTOOLS_METRICS_NAMESPACE": "SolarNexus/CalendarSync",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        }
        missing = template.global_env_names(self.template) - set(local_env)
        if missing:
            raise RuntimeError(f"template.yaml sets variables the local stack does not: {sorted(missing)}")
        self._set_env(local_env)
        self._set_env(function_env)
        # EMF metrics are recorded but not printed locally (they would drown the demo's narration);
        # POWERTOOLS_METRICS_DISABLED=false shows them.
        self._set_env({"POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true")})
        from calsync import wiring

        wiring.reset()

    def _resolve(self, value: Any) -> str:
        """The local value of a template reference (state machines and Lambda ARNs)."""
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in self.state_machine_arns:
            return self.state_machine_arns[value["Ref"]]
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target, attribute = value["Fn::GetAtt"]
            if attribute == "Arn" and target in self.functions:
                return f"arn:aws:lambda:{REGION}:123456789012:function:{target}"
        if isinstance(value, str):
            return value
        raise RuntimeError(f"the local stack cannot resolve {value!r}")

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
        while self.executions("RUNNING"):
            if time.monotonic() > deadline:
                raise TimeoutError("Step Functions executions still running")
            time.sleep(0.05)

    def _load_handlers(self) -> None:
        for fid, fn in self.functions.items():
            module = importlib.import_module(fn.module)
            self._handlers[fid] = getattr(module, fn.handler)

    # ---- invoking functions ------------------------------------------------------------------------

    def invoke(self, function_id: str, event: dict[str, Any]) -> Any:
        context = LambdaContext(function_name=function_id, aws_request_id=str(uuid.uuid4()),
                                invoked_function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:{function_id}")
        with self._locks[function_id]:
            self.invocations[function_id] += 1
            # A fresh context per invocation, as in Lambda: nothing a caller set (a step function started
            # from a route) leaks into the invoked function.
            return contextvars.Context().run(self._handlers[function_id], event, context)

    def http_event(self, method: str, raw_path: str, query: str, headers: dict[str, str], body: bytes,
                   route: template.Route, path_params: dict[str, str], claims: dict | None) -> dict[str, Any]:
        cookies = [c.strip() for c in headers.get("cookie", "").split(";") if c.strip()]
        # API Gateway passes text bodies as they are and anything else base64-encoded.
        try:
            text_body, encoded = (body.decode("utf-8") if body else None), False
        except UnicodeDecodeError:
            text_body, encoded = base64.b64encode(body).decode(), True
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": f"{method} {route.path}",
            "rawPath": raw_path,
            "rawQueryString": query,
            "headers": {k: v for k, v in headers.items() if k != "cookie"},
            "queryStringParameters": dict(parse_qsl(query)) or None,
            "pathParameters": path_params or None,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": "127.0.0.1",
                "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent", "")},
                "requestId": str(uuid.uuid4()),
                "routeKey": f"{method} {route.path}",
                "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
                "timeEpoch": int(time.time() * 1000),
            },
            "body": text_body,
            "isBase64Encoded": encoded,
        }
        if cookies:
            event["cookies"] = cookies
        if claims is not None:
            event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
        return event

    # ---- SQS event source mappings ------------------------------------------------------------------

    def send(self, queue_id: str, body: dict[str, Any] | str) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        sqs.send_message(QueueUrl=self.queue_urls[queue_id],
                         MessageBody=body if isinstance(body, str) else json.dumps(body))

    def sqs_event(self, queue_id: str, bodies: list[dict[str, Any] | str]) -> dict[str, Any]:
        """One SQS batch as Lambda receives it, for invoking a function directly with chosen messages."""
        records = []
        for i, body in enumerate(bodies):
            text = body if isinstance(body, str) else json.dumps(body)
            records.append({
                "messageId": f"msg-{uuid.uuid4().hex[:8]}-{i}",
                "receiptHandle": f"handle-{i}",
                "body": text,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": self.queue_arns[queue_id],
                "awsRegion": REGION,
            })
        return {"Records": records}

    def _pump_queue(self, function_id: str, queue_id: str) -> int:
        sqs = boto3.client("sqs", region_name=REGION)
        url = self.queue_urls[queue_id]
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                   MessageAttributeNames=["All"])
        messages = resp.get("Messages", [])
        if not messages:
            return 0
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {  # Lambda's camelCase shape
                    name: {"stringValue": a.get("StringValue"), "dataType": a.get("DataType", "String"),
                           "stringListValues": [], "binaryListValues": []}
                    for name, a in (m.get("MessageAttributes") or {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": self.queue_arns[queue_id],
                "awsRegion": REGION,
            }
            for m in messages
        ]
        try:
            result = self.invoke(function_id, {"Records": records}) or {}
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        except Exception:  # noqa: BLE001 - a crashed invocation returns the whole batch, as Lambda does
            failed = {r["messageId"] for r in records}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)

    def _in_flight(self) -> int:
        """Messages on subscribed queues not delivered yet: invisible or delayed for now (handed back or
        requeued for later), or visible again since the last pump."""
        sqs = boto3.client("sqs", region_name=REGION)
        total = 0
        for fn in self.functions.values():
            for queue_id in fn.queues:
                attrs = sqs.get_queue_attributes(QueueUrl=self.queue_urls[queue_id], AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed"])["Attributes"]
                total += int(attrs["ApproximateNumberOfMessagesNotVisible"])
                total += int(attrs.get("ApproximateNumberOfMessagesDelayed", 0))  # requeued for later
                # one that became visible (or ended its delay) since the last pump
                total += int(attrs.get("ApproximateNumberOfMessages", 0))
        return total

    def pump(self) -> int:
        """One round over every subscribed queue; returns how many messages were delivered."""
        delivered = 0
        for fid, fn in self.functions.items():
            for queue_id in fn.queues:
                delivered += self._pump_queue(fid, queue_id)
        return delivered

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
            if not delivered and not self.executions("RUNNING"):
                if self.emulator.pending_writes or self.emulator.notifier.pending:
                    continue  # the last round's writes (or pushes) are still on their way: settle again
                if not self._in_flight():
                    return total
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        raise RuntimeError("queues did not drain")

    def settle(self) -> bool:
        """Let Cronofy (the emulator) catch up without sleeping: every accepted write lands, every
        queued push and its retries are delivered to the webhook. SQS is not pumped (see drain)."""
        return self.emulator.settle(timeout=10)

    def rotate_client_secret(self, new_secret: str) -> None:
        """Step 1+2 of a Cronofy client secret rotation: a second secret becomes active at Cronofy
        (pushes carry two HMACs) and the service switches to it (the secret store is updated)."""
        self.emulator.begin_secret_rotation(new_secret)
        self.use_client_secret(new_secret)

    def use_client_secret(self, secret: str) -> None:
        """The service's copy of the Cronofy client secret changes (Secrets Manager, then new
        containers): OAuth calls and push verification use it from now on."""
        self._set_env({"CRONOFY_CLIENT_SECRET": secret})
        from calsync import wiring

        wiring.reset()

    def fail_webhooks(self, count: int) -> None:
        """The next `count` pushes reaching the webhook route are answered 503 (an API Gateway or
        Lambda outage): Cronofy retries them."""
        with self._webhook_failures_lock:
            self._webhook_failures += count

    def _take_webhook_failure(self) -> bool:
        with self._webhook_failures_lock:
            if self._webhook_failures > 0:
                self._webhook_failures -= 1
                return True
            return False

    def complete_secret_rotation(self) -> None:
        """Step 3: the old secret is retired at Cronofy."""
        self.emulator.complete_secret_rotation()

    def start_pump(self, interval: float = 0.2) -> None:
        """Deliver SQS batches in a background thread, as Lambda's event source mappings do, for
        callers that cannot call drain() at the right moment (a real browser driving the web app)."""
        if getattr(self, "_pump_thread", None) is not None:
            return
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.pump()
                except Exception as error:  # noqa: BLE001 - a failed round is retried on the next tick
                    self.pump_error = error  # kept for a test to look at

        self._pump_stop = stop
        self._pump_thread = threading.Thread(target=loop, name="sqs-pump", daemon=True)
        self._pump_thread.start()

    def stop_pump(self) -> None:
        thread = getattr(self, "_pump_thread", None)
        if thread is None:
            return
        self._pump_stop.set()
        thread.join(timeout=30)
        self._pump_thread = None

    def queue_messages(self, queue_id: str) -> list[dict[str, Any]]:
        """Read and delete every message on a queue (for queues no function consumes, e.g. the core
        platform's CalendarChangesQueue, and DLQs)."""
        sqs = boto3.client("sqs", region_name=REGION)
        found = []
        while True:
            resp = sqs.receive_message(QueueUrl=self.queue_urls[queue_id], MaxNumberOfMessages=10)
            batch = resp.get("Messages", [])
            if not batch:
                return found
            for m in batch:
                try:
                    found.append(json.loads(m["Body"]))
                except ValueError:
                    found.append(m["Body"])  # poison messages reach DLQs as they were sent
                sqs.delete_message(QueueUrl=self.queue_urls[queue_id], ReceiptHandle=m["ReceiptHandle"])

    # ---- people ---------------------------------------------------------------------------------------

    def session_token(self, user_id: str, org_id: str, roles: list[str] | None = None) -> str:
        return jwt.issue(JWT_KEY, user_id, org_id, roles)

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


class _RouterHandler(BaseHTTPRequestHandler):
    """API Gateway stand-in: route, authorize, build the v2 event, call the function, answer."""

    protocol_version = "HTTP/1.1"
    server_version = "LocalApiGateway/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                cookies: list[str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            if key.lower() != "content-length":
                self.send_header(key, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._answer(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _handle(self) -> None:
        stack: LocalStack = self.server.stack  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if parts.path.split("/")[1] in ("app", "docs", "openapi.json"):
            return self._web_app(parts.path, parts.query)
        method = self.command.upper()
        for route in stack.routes:
            match = route.pattern.match(parts.path)
            if match and route.method == method:
                break
        else:
            return self._json(404, {"message": "Not Found"})
        if route.function == "WebhookIntakeFunction" and stack._take_webhook_failure():
            return self._json(503, {"message": "Service Unavailable"})  # as API Gateway would
        headers = {k.lower(): v for k, v in self.headers.items()}
        claims = None
        if route.authorized:
            auth = headers.get("authorization", "")
            claims = jwt.verify(JWT_KEY, auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
            if claims is None:
                return self._json(401, {"message": "Unauthorized"})
        event = stack.http_event(method, parts.path, parts.query, headers, body, route, match.groupdict(), claims)
        try:
            result = stack.invoke(route.function, event)
        except Exception:  # noqa: BLE001 - API Gateway answers 500 when the function fails
            return self._json(500, {"message": "Internal Server Error"})
        payload = result.get("body") or ""
        raw = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self._answer(int(result.get("statusCode", 200)), raw, result.get("headers") or {}, result.get("cookies"))

    def _web_app(self, path: str, query: str) -> None:
        """Local-dev pages beside the API: the web app's profile page (/app, with /app/session minting
        a session JWT), Swagger UI (/docs) and the OpenAPI document (/openapi.json)."""
        from localdev import webapp

        stack: LocalStack = self.server.stack  # type: ignore[attr-defined]
        status, body, headers = webapp.respond(stack, self.command.upper(), path, query)
        self._answer(status, body, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def __getattr__(self, name: str):
        # Any other method (HEAD, OPTIONS, QUERY...) reaches the routing too, so an unknown one gets
        # API Gateway's JSON 404 instead of http.server's 501 page.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)
