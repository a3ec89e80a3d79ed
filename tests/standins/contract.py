"""Checks HTTP requests and responses against a broker's published API spec (OpenAPI 3.0, Swagger 2.0).

`Contract.load(spec)` reads the spec unmodified; `check_request` / `check_response` raise `ContractViolation`
listing every mismatch (unknown path or method, missing required or badly typed parameters, missing auth
headers, request/response bodies that do not match their JSON schema, undocumented status codes).
`contract_middleware` runs both checks on every exchange through a stand-in aiohttp app and collects the
violations that are not explicitly tolerated (see `tests/standins/deviations.py`); `assert_no_violations`
fails a test with all of them.

Schemas are validated with openapi-schema-validator's OAS 3.0 dialect (handles `nullable`, OAS formats);
Swagger 2.0 definitions use the same validator after mapping NSwag's `x-nullable` to `nullable`. `$ref`s
resolve inside the spec document itself, so recursive schemas work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.standins.deviations import Deviation

SPEC_URI = "urn:contract-spec"
# The published specs sit in `shared/contracts` beside the checkout (one level up from a worktree, two from
# /work/main); the first that exists wins.
_SPEC_ROOTS = [parent / "shared" / "contracts" for parent in Path(__file__).resolve().parents[2:5]]


def spec_path(broker: str, name: str) -> Path:
    """Where the published API spec `name` of `broker` is (the nearest `shared/contracts` above the tests)."""
    found = [root / broker / name for root in _SPEC_ROOTS if (root / broker / name).is_file()]
    return found[0] if found else _SPEC_ROOTS[1] / broker / name
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


class ContractViolation(Exception):
    """One or more mismatches with the contract; `errors` holds each as a readable line."""

    def __init__(self, errors: str | list[str]) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _with_nullable(node: Any) -> Any:
    """Swagger 2.0 (NSwag) marks nullable schemas with `x-nullable`; give them OAS 3.0's `nullable`."""
    if isinstance(node, dict):
        out = {k: _with_nullable(v) for k, v in node.items()}
        if out.get("x-nullable") is True and "$ref" not in out:
            out["nullable"] = True
        return out
    if isinstance(node, list):
        return [_with_nullable(v) for v in node]
    return node


def _template_regex(template: str) -> tuple[re.Pattern[str], list[str]]:
    names: list[str] = []
    parts: list[str] = []
    for literal, name in re.findall(r"([^{]*)(?:\{([^}]+)\})?", template):
        parts.append(re.escape(literal))
        if name:
            names.append(name)
            parts.append("([^/]+)")
    return re.compile("^" + "".join(parts) + "$"), names


@dataclass
class _Operation:
    method: str
    template: str
    regex: re.Pattern[str]
    names: list[str]  # path parameter names, in order of the regex groups
    pointer: str  # JSON pointer of the operation object inside the spec
    spec: dict[str, Any]
    parameters: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (param, schema pointer)


class Contract:
    """A loaded API description that can check requests and responses."""

    def __init__(self, spec: dict[str, Any], base_path: str = "",
                 payload: Callable[[Any], Any] | None = None) -> None:
        # `payload`: what of a response body the spec describes, for APIs whose live answers wrap it in an
        # envelope the spec leaves out (tastytrade's `{data: ...}`); it raises ContractViolation if absent.
        self.payload = payload
        self.swagger2 = str(spec.get("swagger", "")).startswith("2")
        self.spec = _with_nullable(spec) if self.swagger2 else spec
        self.base_path = base_path.rstrip("/") or self._spec_base_path()
        resource = Resource.from_contents(self.spec, default_specification=DRAFT4)
        self._registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self._validators: dict[str, OAS30Validator] = {}
        self._operations = self._index()
        self._security_headers = self._security_scheme_headers()

    @classmethod
    def load(cls, spec_path: Path, base_path: str = "") -> Contract:
        return cls(json.loads(Path(spec_path).read_text(encoding="utf-8")), base_path)

    # -- indexing ----------------------------------------------------------------------------------------

    def _spec_base_path(self) -> str:
        if self.swagger2:
            return str(self.spec.get("basePath") or "").rstrip("/")
        paths = {
            re.sub(r"^[a-z]+://[^/]+", "", s.get("url", "")).rstrip("/") for s in self.spec.get("servers", [])
        }
        return paths.pop() if len(paths) == 1 else ""

    def _index(self) -> list[_Operation]:
        ops: list[_Operation] = []
        for template, item in self.spec.get("paths", {}).items():
            regex, names = _template_regex(template)
            shared = item.get("parameters", [])
            for method in _METHODS:
                if method not in item:
                    continue
                pointer = _pointer("paths", template, method)
                op = _Operation(method.upper(), template, regex, names, pointer, item[method])
                merged: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
                for idx, p in enumerate(shared):
                    merged[self._param_key(p)] = (
                        self._deref(p),
                        self._ref_pointer(p) or _pointer("paths", template, "parameters", str(idx)),
                    )
                for idx, p in enumerate(item[method].get("parameters", [])):
                    merged[self._param_key(p)] = (
                        self._deref(p), self._ref_pointer(p) or f"{pointer}/parameters/{idx}")
                op.parameters = list(merged.values())
                ops.append(op)
        # literal paths win over templated ones (e.g. /v2/orders:by_client_order_id vs /v2/orders/{id})
        ops.sort(key=lambda o: o.template.count("{"))
        return ops

    @staticmethod
    def _ref_pointer(param: dict[str, Any]) -> str | None:
        """Where a `$ref`'d parameter is defined (`#/components/parameters/symbol`), for its schema's pointer."""
        ref = param.get("$ref") if isinstance(param, dict) else None
        return str(ref)[1:] if isinstance(ref, str) and ref.startswith("#/") else None

    def _param_key(self, param: dict[str, Any]) -> tuple[str, str]:
        p = self._deref(param)
        return (p.get("in", ""), p.get("name", ""))

    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 20:
            node = self._registry.resolver(SPEC_URI).lookup(node["$ref"]).contents
            seen += 1
        return node

    def _security_scheme_headers(self) -> dict[str, str]:
        schemes = (
            self.spec.get("securityDefinitions", {})
            if self.swagger2
            else self.spec.get("components", {}).get("securitySchemes", {})
        )
        return {
            name: s["name"]
            for name, s in schemes.items()
            if s.get("type") == "apiKey" and s.get("in") == "header"
        }

    def _find(self, method: str, path: str) -> tuple[_Operation, dict[str, str]]:
        rel = path
        if self.base_path and (rel == self.base_path or rel.startswith(self.base_path + "/")):
            rel = rel[len(self.base_path) :] or "/"
        path_known = False
        for op in self._operations:
            m = op.regex.match(rel)
            if m is None:
                continue
            path_known = True
            if op.method == method.upper():
                return op, {name: unquote(value) for name, value in zip(op.names, m.groups(), strict=True)}
        if path_known:
            raise ContractViolation(f"{method.upper()} {path}: method not in the contract")
        raise ContractViolation(f"{method.upper()} {path}: path not in the contract")

    # -- schema validation -------------------------------------------------------------------------------

    def _schema_errors(self, pointer: str, instance: Any, where: str) -> list[str]:
        validator = self._validators.get(pointer)
        if validator is None:
            validator = OAS30Validator(
                {"$ref": f"{SPEC_URI}#{pointer}"},
                registry=self._registry,
                format_checker=oas30_format_checker,
            )
            self._validators[pointer] = validator
        errors = []
        for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            errors.append(f"{where}: ${loc}: {err.message}")
        return errors

    @staticmethod
    def _coerce(raw: str, schema: dict[str, Any]) -> Any:
        """A query/header/path string as the JSON value its schema describes (best effort)."""
        kind = schema.get("type")
        try:
            if kind == "integer":
                return int(raw)
            if kind == "number":
                return float(raw)
            if kind == "boolean":
                return {"true": True, "false": False}.get(raw.lower(), raw)
            if kind == "array":
                item = schema.get("items", {})
                return [Contract._coerce(x, item if isinstance(item, dict) else {}) for x in raw.split(",")]
        except ValueError:
            return raw
        return raw

    # -- public checks -----------------------------------------------------------------------------------

    def check_request(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes | None
    ) -> None:
        op, path_params = self._find(method, path)
        where = f"request {method.upper()} {path}"
        errors: list[str] = []
        lower_headers = {k.lower(): v for k, v in headers.items()}
        sources = {"query": dict(query), "path": path_params, "header": lower_headers}
        body_schema: str | None = None
        body_required = False
        for param, ptr in op.parameters:
            loc, name = param.get("in"), param.get("name", "")
            if loc == "body":
                body_schema, body_required = f"{ptr}/schema", bool(param.get("required"))
                continue
            if loc not in sources:
                continue
            key = name.lower() if loc == "header" else name
            if key not in sources[loc]:
                if param.get("required"):
                    errors.append(f"{where}: required {loc} parameter {name!r} missing")
                continue
            schema_ptr = f"{ptr}/schema" if "schema" in param else ptr
            schema = param.get("schema", param)
            value = self._coerce(sources[loc][key], schema if isinstance(schema, dict) else {})
            if loc == "query" and self.swagger2 and "schema" not in param:
                continue  # Swagger 2.0 inline parameter types are not JSON schemas; skip deep checks
            errors += self._schema_errors(schema_ptr, value, f"{where} {loc} parameter {name!r}")
        errors += self._security_errors(op, lower_headers, where)
        if not self.swagger2:
            rb = op.spec.get("requestBody")
            if rb is not None:
                rb_ptr = f"{op.pointer}/requestBody"
                if "$ref" in rb:
                    rb_ptr = rb["$ref"].lstrip("#")
                    rb = self._deref(rb)
                body_required = bool(rb.get("required"))
                if "application/json" in rb.get("content", {}):
                    body_schema = f"{rb_ptr}/content/application~1json/schema"
        if not body:
            if body_required:
                errors.append(f"{where}: request body required")
        elif body_schema is None:
            errors.append(f"{where}: request body sent to an operation that takes none")
        else:
            try:
                errors += self._schema_errors(body_schema, json.loads(body), f"{where} body")
            except ValueError as exc:
                errors.append(f"{where}: body is not JSON ({exc})")
        if errors:
            raise ContractViolation(errors)

    def _security_errors(self, op: _Operation, headers: Mapping[str, str], where: str) -> list[str]:
        requirements = op.spec.get("security", self.spec.get("security", []))
        if not requirements:
            return []
        missing_per_alternative = []
        for alternative in requirements:
            names = [self._security_headers[n] for n in alternative if n in self._security_headers]
            missing = [h for h in names if h.lower() not in headers]
            if not missing:
                return []
            missing_per_alternative.append(missing)
        return [f"{where}: auth header(s) {', '.join(missing_per_alternative[0])} missing"]

    def check_response(
        self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> None:
        op, _ = self._find(method, path)
        where = f"response {status} to {method.upper()} {path}"
        responses = op.spec.get("responses", {})
        key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
        if key is None:
            raise ContractViolation(
                f"{where}: status {status} not documented (documented: {', '.join(responses)})"
            )
        resp_ptr = f"{op.pointer}/responses{_pointer(key)}"
        resp = responses[key]
        if "$ref" in resp:
            resp_ptr = resp["$ref"].lstrip("#")
            resp = self._deref(resp)
        if self.swagger2:
            schema_ptr = f"{resp_ptr}/schema" if "schema" in resp else None
        else:
            content = resp.get("content", {})
            json_type = next((t for t in content if "json" in t), None)
            schema_ptr = (
                f"{resp_ptr}/content{_pointer(json_type)}/schema"
                if json_type and "schema" in content[json_type]
                else None
            )
        if schema_ptr is None:
            return  # the contract says nothing about this body
        try:
            instance = json.loads(body)
        except ValueError as exc:
            raise ContractViolation(f"{where}: body is not JSON ({exc}): {body[:120]!r}") from None
        if self.payload is not None:
            instance = self.payload(instance)
        errors = self._schema_errors(schema_ptr, instance, f"{where} body")
        if errors:
            raise ContractViolation(errors)


def _tolerated(message: str, direction: str, method: str, path: str, tolerated: Iterable[Deviation]) -> bool:
    return any(d.matches(message, direction=direction, method=method, path=path) for d in tolerated)


def contract_middleware(
    contract: Contract, violations: list[str], tolerated: Iterable[Deviation] = ()
) -> Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[Any]]:
    """An aiohttp middleware checking every request and response against `contract`.

    Violations not covered by `tolerated` are appended to `violations` (the exchange itself goes on, so the
    test sees the stand-in's normal behaviour and fails at teardown with the full list).
    """
    allowed = tuple(tolerated)

    def record(errors: list[str], direction: str, method: str, path: str) -> None:
        for message in errors:
            if not _tolerated(message, direction, method, path, allowed):
                violations.append(message)

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        method, path = request.method, request.rel_url.raw_path
        body = await request.read() if request.can_read_body else None
        try:
            contract.check_request(method, path, request.query, request.headers, body)
        except ContractViolation as exc:
            record(exc.errors, "request", method, path)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        if isinstance(response, web.Response):
            raw = response.body if isinstance(response.body, bytes) else b""
            try:
                contract.check_response(method, path, response.status, response.headers, raw)
            except ContractViolation as exc:
                record(exc.errors, "response", method, path)
        if isinstance(response, web.HTTPException):
            raise response
        return response

    return middleware


def assert_no_violations(violations: list[str]) -> None:
    """For fixtures: call at teardown so any contract violation fails the test that caused it."""
    if violations:
        lines = "\n  ".join(violations)
        raise AssertionError(f"{len(violations)} contract violation(s):\n  {lines}")
