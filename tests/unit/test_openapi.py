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
