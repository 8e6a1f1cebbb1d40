"""Infrastructure assertions on template.yaml (the wiring ARCHITECTURE.md fixes)."""

from localdev import template

T = template.load()
RES = T["Resources"]


def test_every_contract_route_is_wired_with_the_right_auth():
    routes = {(r.method, r.path): r for r in template.routes(T)}
    expected = {
        ("POST", "/v1/calendar/connect"): True,
        ("GET", "/v1/calendar/connection"): True,
        ("PUT", "/v1/calendar/connection"): True,
        ("DELETE", "/v1/calendar/connection"): True,
        ("GET", "/v1/calendar/calendars"): True,
        ("GET", "/v1/orgs/{org_id}/calendar-connections"): True,
        ("GET", "/v1/calendar/oauth/callback"): False,
    }
    for key, authorized in expected.items():
        assert key in routes, key
        assert routes[key].authorized is authorized, key


def test_every_queue_has_a_dlq_with_an_alarm():
    queues = template.queues(T)
    work_queues = {q: p for q, p in queues.items() if "RedrivePolicy" in p}
    dlqs = {p["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] for p in work_queues.values()}
    assert set(queues) == set(work_queues) | dlqs
    alarmed = {r["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
               for r in RES.values() if r["Type"] == "AWS::CloudWatch::Alarm"
               and r["Properties"].get("Namespace") == "AWS/SQS"}
    assert dlqs <= alarmed


def test_sqs_functions_report_partial_batch_failures():
    for fn in RES.values():
        if fn["Type"] != "AWS::Serverless::Function":
            continue
        for event in (fn["Properties"].get("Events") or {}).values():
            if event["Type"] == "SQS":
                assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_table_has_pitr_and_no_scan_needed_indexes():
    _, table = template.table_definition(T)
    indexes = {g["IndexName"] for g in table["GlobalSecondaryIndexes"]}
    assert indexes == {"by_org", "by_channel", "by_sub", "by_assignee", "by_user_events", "by_slot", "by_due"}
    props = next(r for r in RES.values() if r["Type"] == "AWS::DynamoDB::Table")["Properties"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_runtime_is_python313_on_arm64():
    fn = T["Globals"]["Function"]
    assert fn["Runtime"] == "python3.13" and fn["Architectures"] == ["arm64"]


# ---- hardening (issue 10, finding 8) ------------------------------------------------------------------


def test_every_queue_is_encrypted_at_rest():
    for name, props in template.queues(T).items():
        assert props.get("SqsManagedSseEnabled") is True, name


def test_every_function_has_a_log_group_with_a_retention():
    functions = {lid for lid, r in RES.items() if r["Type"] == "AWS::Serverless::Function"}
    groups = {r["Properties"]["LogGroupName"]["Fn::Sub"]: r["Properties"] for r in RES.values()
              if r["Type"] == "AWS::Logs::LogGroup"}
    for fn in functions:
        props = groups[f"/aws/lambda/${{{fn}}}"]
        assert props["RetentionInDays"], fn


def test_the_api_logs_each_request_by_route_never_by_raw_path():
    settings = RES["HttpApi"]["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogs", "Arn"]}
    assert "$context.routeKey" in settings["Format"] and "$context.status" in settings["Format"]
    assert "$context.path" not in settings["Format"]  # webhook URLs carry channel tokens


def test_the_token_key_only_works_under_a_users_encryption_context():
    statements = RES["TokenKey"]["Properties"]["KeyPolicy"]["Statement"]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    conditions = [s["Condition"] for s in denies]
    # users' tokens, and an org's Enterprise Connect service-account tokens (calsync/enterprise.py), nothing else
    assert {"StringNotEquals": {"kms:EncryptionContext:purpose": [
        "cronofy-tokens", "enterprise-connect-service-account"]}} in conditions
    assert {"Null": {"kms:EncryptionContext:user_id": "true"}} in conditions
    assert all("kms:Decrypt" in s["Action"] for s in denies)


def test_functions_have_no_scan_and_no_broad_policy_templates():
    for lid, r in RES.items():
        if r["Type"] != "AWS::Serverless::Function" or lid == "ReconcilerFunction":
            continue
        for policy in r["Properties"]["Policies"]:
            assert not {"DynamoDBCrudPolicy", "KMSDecryptPolicy", "KMSEncryptPolicy"} & set(policy), lid
            for statement in policy.get("Statement", []):
                assert "dynamodb:Scan" not in statement["Action"], lid
                if any(a.startswith("kms:") for a in statement["Action"]):
                    # users' tokens; Enterprise Connect also seals the org's service-account tokens
                    allowed = ["cronofy-tokens", "enterprise-connect-service-account"] \
                        if lid == "EnterpriseConnectFunction" else "cronofy-tokens"
                    assert statement["Condition"]["StringEquals"] == {
                        "kms:EncryptionContext:purpose": allowed}, lid


# ---- alarms reach people (issue 22, item 1) ------------------------------------------------------------

ALARM_TOPIC = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_when_it_clears():
    alarms = {lid: r["Properties"] for lid, r in RES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms
    silent = [lid for lid, props in alarms.items()
              if props.get("AlarmActions") != [ALARM_TOPIC] or props.get("OKActions") != [ALARM_TOPIC]]
    assert silent == []


def test_the_alarm_topic_is_created_encrypted_or_taken_from_a_parameter_with_an_optional_email():
    params, conditions = T["Parameters"], T["Conditions"]
    assert params["AlarmTopicArn"]["Default"] == "" and params["AlarmEmail"]["Default"] == ""
    assert conditions["CreateAlarmTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}
    topic, key = RES["AlarmTopic"], RES["AlarmTopicKey"]
    assert topic["Condition"] == key["Condition"] == RES["AlarmTopicPolicy"]["Condition"] == "CreateAlarmTopic"
    assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    assert key["Properties"]["EnableKeyRotation"] is True
    # CloudWatch may use the key (the AWS managed SNS key would silently drop every alarm)
    grants = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
              if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert grants and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(grants[0]["Action"])
    subscription = RES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["TopicArn"] == ALARM_TOPIC
    assert T["Outputs"]["AlarmTopicArn"]["Value"] == ALARM_TOPIC


def test_functions_and_the_backfill_workflow_are_traced_with_xray():
    # SAM gives each function's role and the state machine's role AWSXrayWriteOnlyAccess for these
    assert T["Globals"]["Function"]["Tracing"] == "Active"
    assert all("Tracing" not in r["Properties"] for r in RES.values() if r["Type"] == "AWS::Serverless::Function")
    machines = [r["Properties"] for r in RES.values() if r["Type"] == "AWS::Serverless::StateMachine"]
    assert machines and all(props["Tracing"] == {"Enabled": True} for props in machines)
