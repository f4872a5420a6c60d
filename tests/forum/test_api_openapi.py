"""The OpenAPI 3.1 document: well formed, naming exactly the app's /api/v1 routes, and true to real answers."""

from __future__ import annotations

import re
from typing import Any

from httpx import AsyncClient
from starlette.applications import Starlette
from starlette.routing import Route

from forum.config import Settings
from tests.conftest import BASE_URL
from tests.factories import make_category
from tests.forum.test_api import auth, member_token, start_thread

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
JSON_TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
PARAMETER_PLACES = {"query", "header", "path", "cookie"}


async def openapi(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


async def test_document_names_exactly_the_app_routes(client: AsyncClient, app: Starlette) -> None:
    document = await openapi(client)
    assert document["servers"] == [{"url": f"{BASE_URL}/api/v1"}]
    in_app = {
        (route.path.removeprefix("/api/v1"), method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api/v1/")
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {
        (path, method) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert in_app == documented


async def test_document_is_structurally_valid_openapi_31(client: AsyncClient) -> None:
    document = await openapi(client)
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert document["info"]["title"] and document["info"]["version"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    for requirement in document["security"]:
        assert set(requirement) <= set(schemes)
    operation_ids: set[str] = set()
    for path, item in document["paths"].items():
        assert path.startswith("/")
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert method in HTTP_METHODS, (path, method)
            assert operation["operationId"] not in operation_ids
            operation_ids.add(operation["operationId"])
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            for parameter in parameters:
                assert parameter["in"] in PARAMETER_PLACES and parameter["name"]
                assert "schema" in parameter
                if parameter["in"] == "path":
                    assert parameter["required"] is True
            assert {p["name"] for p in parameters if p["in"] == "path"} == templated, path
            assert operation["responses"], (path, method)
            for status, response in operation["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status), status
                assert resolve(document, response)["description"]
            for requirement in operation.get("security", []):
                assert set(requirement) <= set(schemes)
            if "requestBody" in operation:
                assert operation["requestBody"]["content"]["application/json"]["schema"]
    problem = document["components"]["responses"]["NotFound"]["content"]["application/problem+json"]["schema"]
    assert set(resolve(document, problem)["required"]) == {"type", "title", "status", "detail"}
    for reference in references(document):
        resolve(document, {"$ref": reference})
    for schema in schemas(document):
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert set(kinds) <= JSON_TYPES, schema


async def test_real_answers_match_the_document(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice", role="admin")
    document = await openapi(client)
    thread = await start_thread(client, token)
    post_id = thread["posts"][0]["id"]
    await client.patch(f"/api/v1/posts/{post_id}", json={"body": "edited"}, headers=auth(token))
    reply = await client.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "re"}, headers=auth(token))
    calls = {
        "/categories": ("listCategories", ""),
        "/categories/general": ("getCategory", ""),
        "/categories/general/threads": ("listCategoryThreads", ""),
        f"/threads/{thread['id']}": ("getThread", ""),
        f"/posts/{post_id}": ("getPost", ""),
        f"/posts/{post_id}/revisions": ("getPostRevisions", ""),
        "/me": ("getMe", ""),
        "/resolve?q=alice": ("resolve", ""),
        "/resolve?q=general": ("resolve", ""),
        f"/resolve?q=/t/{thread['id']}": ("resolve", ""),
        f"/resolve?q=/p/{post_id}": ("resolve", ""),
        "/threads/123456": ("getThread", "404"),
        "/resolve?q=x@elsewhere.example": ("resolve", "404"),
    }
    operations = {
        op["operationId"]: op for item in document["paths"].values() for op in item.values() if "responses" in op
    }
    answers = [(operations["createThread"]["responses"]["201"], thread),
               (operations["createPost"]["responses"]["201"], reply.json())]  # fmt: skip
    for url, (operation_id, status) in calls.items():
        response = await client.get(f"/api/v1{url}", headers=auth(token))
        assert str(response.status_code) == (status or "200"), (url, response.text)
        answers.append((resolve(document, operations[operation_id]["responses"][status or "200"]), response.json()))
    for described, answer in answers:
        content = described["content"]
        schema = next(iter(content.values()))["schema"]
        assert conforms(document, answer, schema) == [], answer


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node
        target: Any = document
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def schemas(node: Any) -> list[dict[str, Any]]:
    """Every schema with a `type` (properties named `type` are values of `properties`, not schemas)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("type"), str | list):
            found.append(node)
        for key, value in node.items():
            if key == "properties":
                found.extend(s for child in value.values() for s in schemas(child))
            elif key != "securitySchemes":
                found.extend(schemas(value))
    elif isinstance(node, list):
        found.extend(s for value in node for s in schemas(value))
    return found


def conforms(document: dict[str, Any], value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """A small JSON Schema check: types, const, required and documented properties, items, allOf, oneOf."""
    schema = resolve(document, schema)
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not conforms(document, value, s, where)]
        return [] if len(matching) == 1 else [f"{where}: matches {len(matching)} of oneOf"]
    if "allOf" in schema:
        schema = _merged(document, schema["allOf"])
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    kinds = schema.get("type")
    if kinds is not None and not any(_is(value, kind) for kind in (kinds if isinstance(kinds, list) else [kinds])):
        return [f"{where}: {value!r} is not {kinds}"]
    errors: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        errors += [f"{where}: missing {name}" for name in schema.get("required", []) if name not in value]
        errors += [f"{where}: undocumented {name}" for name in value if name not in properties]
        for name, child in value.items():
            if name in properties:
                errors += conforms(document, child, properties[name], f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, child in enumerate(value):
            errors += conforms(document, child, schema["items"], f"{where}[{index}]")
    return errors


def _merged(document: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for part in parts:
        part = resolve(document, part)
        if "allOf" in part:
            part = _merged(document, part["allOf"])
        merged["properties"].update(part.get("properties", {}))
        merged["required"] += part.get("required", [])
    return merged


def _is(value: Any, kind: str) -> bool:
    checks = {
        "object": isinstance(value, dict), "array": isinstance(value, list), "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool), "null": value is None,
    }  # fmt: skip
    return checks[kind]
