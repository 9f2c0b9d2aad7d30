"""Checks the emulator's answers against HubSpot's published OpenAPI descriptions.

The descriptions come from the npm package pinned in `tests/contract/openapi/package.json`
(installed by `make test` with `npm ci`); they are not kept in this repository. Each call is
validated twice: the request against the operation it claims to be (so a test cannot pass by
calling something HubSpot does not have) and the emulator's response against that operation's
response for the status code.
"""

import json
import pathlib
import re
import urllib.parse

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

SPEC_DIR = pathlib.Path(__file__).resolve().parent / "openapi" / "node_modules" / "@opensdks" / "sdk-hubspot"


def load_spec(name: str) -> dict:
    path = SPEC_DIR / f"{name}.oas.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: install HubSpot's OpenAPI descriptions with "
            "`npm ci --prefix tests/contract/openapi` (make test does this)"
        )
    spec = normalize(json.loads(path.read_text()))
    # Authentication is checked by the SDK tests and by explicit 401/403 tests: the descriptions
    # name a private app's bearer token as an OAuth2 flow or as an API key header
    # (`private-app-legacy`), neither of which openapi-core can check against a bearer token.
    spec.pop("security", None)
    for operations in spec["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
                # The timeline description has an example-only answer without the
                # `description` OpenAPI requires of every response.
                for response in operation.get("responses", {}).values():
                    response.setdefault("description", "")
    # The pipelines description's stage audit path leaves its `{pipelineId}` undeclared, which
    # openapi-core refuses; the emulator serves no audit paths, so such paths are dropped.
    for path in [p for p, operations in spec["paths"].items() if not declares_path_parameters(p, operations)]:
        del spec["paths"][path]
    # The OAuth description has no title, which OpenAPI requires; openapi-core refuses it without.
    spec["info"].setdefault("title", name)
    return spec


def declares_path_parameters(path: str, operations: dict) -> bool:
    """Whether every operation of `path` declares each `{parameter}` its template names."""
    named = set(re.findall(r"{([^}]+)}", path))
    shared = {p.get("name") for p in operations.get("parameters", []) if p.get("in") == "path"}
    return all(
        named <= shared | {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "path"}
        for operation in operations.values()
        if isinstance(operation, dict) and "responses" in operation
    )


def normalize(node):
    """Two spellings in HubSpot's descriptions that openapi-core reads differently from HubSpot's
    SDKs: an empty `content` (a 204) means "no body", and the `*/*` of error responses is the JSON
    `Error` object every HubSpot error answers with."""
    if isinstance(node, dict):
        if node.get("content") == {}:
            node = {k: v for k, v in node.items() if k != "content"}
        if isinstance(node.get("content"), dict) and set(node["content"]) == {"*/*"}:
            node = dict(node, content={"application/json": node["content"]["*/*"]})
        return {k: normalize(v) for k, v in node.items()}
    if isinstance(node, list):
        return [normalize(v) for v in node]
    return node


class ApiContract:
    """One HubSpot API description, pointed at a running emulator."""

    def __init__(self, emulator, spec_name: str, token: str | None = None):
        spec = load_spec(spec_name)
        # Keep the description's path prefix (`/crm/v4/associations`, `/oauth`), swap the host.
        prefix = urllib.parse.urlsplit(spec["servers"][0]["url"]).path
        self.base_url = emulator.base_url.rstrip("/") + prefix
        spec["servers"] = [{"url": self.base_url}]
        self.openapi = OpenAPI.from_dict(spec)
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, *, expect: int, json_body=None, params=None, form=None, check_answer=True):
        """Sends a spec-valid request and returns the decoded body of a spec-valid answer
        (`check_answer=False` for answers HubSpot documents outside these descriptions)."""
        request = requests.Request(method, self.base_url + path, json=json_body, params=params, data=form)
        prepared = self.session.prepare_request(request)
        self.openapi.validate_request(RequestsOpenAPIRequest(prepared))
        response = self.session.send(prepared, timeout=10)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        if check_answer:
            self.openapi.validate_response(RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response))
        return response.json() if response.content else None
