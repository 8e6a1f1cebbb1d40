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
