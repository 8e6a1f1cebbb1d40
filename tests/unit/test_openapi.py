"""openapi/openapi.json is what the route declarations generate, and it describes every route of
template.yaml with the service's error shape."""

import json

from jsonschema import Draft202012Validator

from localdev import openapi, template

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


def test_committed_document_matches_the_route_declarations():
    generated = openapi.render(openapi.build())
    committed = openapi.DOCUMENT.read_text() if openapi.DOCUMENT.is_file() else ""
    assert committed == generated, "openapi/openapi.json is out of date: run `make openapi` and commit it"


def test_every_route_of_the_template_is_documented_with_its_authorization():
    document = json.loads(openapi.DOCUMENT.read_text())
    routes = template.routes(template.load())
    documented = {(m, p) for p, item in document["paths"].items() for m in item if m in HTTP_METHODS}
    assert documented == {(r.method.lower(), r.path) for r in routes}
    for route in routes:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["security"] == ([{"sessionJwt": []}] if route.authorized else [])
        assert ("401" in operation["responses"]) == (route.authorized or "webhooks" in route.path)
        assert operation["summary"] and operation["operationId"] and operation["tags"]


def test_every_error_status_has_a_documented_body():
    document = json.loads(openapi.DOCUMENT.read_text())
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema["$ref"] in ("#/components/schemas/Error", "#/components/schemas/GatewayError"), (
                    method, path, status)
                assert response["description"], (method, path, status)
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert document["components"]["schemas"]["ErrorDetail"]["required"] == ["code", "message"]


def test_component_schemas_are_valid_json_schema():
    document = json.loads(openapi.DOCUMENT.read_text())
    assert document["openapi"].startswith("3.1")
    for name, schema in document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema), name


def _resolved(document: dict, schema: dict) -> list[dict]:
    """The object schemas a body schema stands for ($ref followed, anyOf/oneOf unfolded, null dropped)."""
    if "$ref" in schema:
        return _resolved(document, document["components"]["schemas"][schema["$ref"].split("/")[-1]])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [found for option in schema[key] for found in _resolved(document, option)]
    return [schema] if schema.get("type") == "object" else []


def _objects_within(document: dict, schema: dict, seen: set[str]) -> list[tuple[str, dict]]:
    """Every object schema reachable from a request body, nested ones (a member of a list) included."""
    found = []
    for obj in _resolved(document, schema):
        name = obj.get("title", "?")
        if name in seen:
            continue
        seen.add(name)
        found.append((name, obj))
        for prop in obj.get("properties", {}).values():
            found.extend(_objects_within(document, prop.get("items", prop), seen))
        if isinstance(obj.get("additionalProperties"), dict):  # a map: its values' schema
            found.extend(_objects_within(document, obj["additionalProperties"], seen))
    return found


def test_every_request_body_states_its_unknown_field_policy():
    """Unknown fields: refused in what SolarNexus clients send (`false`: 422 naming the field), allowed in
    what Cronofy sends (`true`: Cronofy adds fields without notice). Never left unsaid."""
    document = json.loads(openapi.DOCUMENT.read_text())
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody")
            if not body:
                continue
            from_cronofy = "Cronofy" in operation["tags"] or "callback" in path
            objects = _objects_within(document, body["content"]["application/json"]["schema"], set())
            assert objects, (method, path)
            for name, schema in objects:
                checked += 1
                assert "additionalProperties" in schema, (method, path, name)
                if isinstance(schema["additionalProperties"], dict):
                    continue  # a map keyed by user id (its values' policy is checked as well)
                if not from_cronofy:
                    assert schema["additionalProperties"] is False, (method, path, name)
                elif name in ("CronofyNotification", "MemberCallback"):
                    assert schema["additionalProperties"] is True, (method, path, name)
            assert operation["responses"]["413"], (method, path)  # API Gateway's 10 MB, or the function's own
    assert checked >= 9
