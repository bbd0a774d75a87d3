"""Checking the HTTP API's answers against its own OpenAPI document (every response the API tests get)."""

from __future__ import annotations

import json
import re

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT_URI = "urn:appliance:openapi"


class OpenApiChecker:
    """The document's operations by method and path; ``check`` validates one answer against them."""

    def __init__(self, document: dict):
        assert document["openapi"].startswith("3.1")
        self.document = document
        resource = Resource(contents=document, specification=DRAFT202012)
        self.registry = Registry().with_resource(DOCUMENT_URI, resource)
        self.routes = []
        for template, operations in document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
            self.routes.append((pattern, operations))
        self.checked = 0

    def operation(self, method: str, path: str) -> dict:
        for pattern, operations in self.routes:
            if pattern.match(path) and method.lower() in operations:
                return operations[method.lower()]
        raise AssertionError(f"{method} {path} is not in the OpenAPI document")

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        """Assert that the answer is one the document describes: its status, media type and body."""
        responses = self.operation(method, path)["responses"]
        assert str(status) in responses, f"{method} {path} answered {status}, which the document does not list"
        if status == 204:
            assert body == b"" and "content" not in responses["204"], f"{method} {path} 204 has a body"
            self.checked += 1
            return
        content = responses[str(status)].get("content", {})
        media = content_type.split(";")[0].strip()
        assert media in content, f"{method} {path} {status} answered {media}; the document says {list(content)}"
        schema = {"$ref": f"{DOCUMENT_URI}{content[media]['schema']['$ref']}"}
        validator = Draft202012Validator(schema, registry=self.registry)
        errors = sorted(validator.iter_errors(json.loads(body)), key=str)
        assert not errors, f"{method} {path} {status}: {errors[0].message}"
        self.checked += 1
