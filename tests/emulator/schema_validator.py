"""Small JSON-schema validator (stdlib only) for the OpenAPI 3.1 subset used by the Letta spec.

The emulator uses it both ways: request bodies and query/path parameters are checked the way
FastAPI/pydantic would (errors shaped like pydantic's, so the 422 detail looks like the live
server's), and every response body is checked against its route's 200 schema.
"""

import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))

# RFC 3339 / ISO 8601 date-time as pydantic accepts it (space or T, optional fraction and offset).
# pydantic 2's lax datetime from a string (speedate): a date, or a date, T/t/_/space and a time with an
# optional fraction and zone (Z, z, +HH, +HHMM, +HH:MM); or a number, read as a Unix time
_DATETIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}([Tt_ ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?)?|-?\d+(\.\d+)?)$")


class Spec:
    """The OpenAPI document: openapi-subset.json merged with openapi-extra.json."""

    def __init__(self, files=("openapi-subset.json", "openapi-extra.json")):
        self.paths = {}
        self.schemas = {}
        for name in files:
            with open(os.path.join(HERE, name), encoding="utf-8") as f:
                doc = json.load(f)
            for path, ops in doc.get("paths", {}).items():
                self.paths.setdefault(path, {}).update(ops)
            self.schemas.update(doc.get("components", {}).get("schemas", {}))
        self._pattern_cache = {}

    # --- what a route expects -------------------------------------------------------------
    def operation(self, method, path_template):
        return self.paths.get(path_template, {}).get(method.lower())

    def parameters(self, method, path_template):
        op = self.operation(method, path_template) or {}
        return op.get("parameters", [])

    def request_schema(self, method, path_template):
        op = self.operation(method, path_template) or {}
        body = op.get("requestBody")
        if not body:
            return None, False
        schema = body.get("content", {}).get("application/json", {}).get("schema")
        return schema, bool(body.get("required"))

    def response_schema(self, method, path_template, content_type="application/json"):
        op = self.operation(method, path_template) or {}
        content = op.get("responses", {}).get("200", {}).get("content", {})
        return content.get(content_type, {}).get("schema")

    # --- validation -----------------------------------------------------------------------
    def validate(self, value, schema, loc=()):
        """Return a list of pydantic-style error dicts ({type, loc, msg, input}); [] if valid."""
        errors = []
        self._check(value, schema, tuple(loc), errors)
        return errors

    def _resolve(self, schema):
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self.schemas[schema["$ref"].split("/")[-1]]
        return schema

    def _regex(self, pattern):
        rx = self._pattern_cache.get(pattern)
        if rx is None:
            rx = self._pattern_cache[pattern] = re.compile(pattern)
        return rx

    def _check(self, v, schema, loc, errors):
        if schema is None or schema is True or schema == {}:
            return
        schema = self._resolve(schema)
        if "anyOf" in schema:
            # pydantic reports the errors of every branch; one error with the first branch's
            # detail is enough for a readable message.
            branch_errors = []
            for sub in schema["anyOf"]:
                e = []
                self._check(v, sub, loc, e)
                if not e:
                    break
                branch_errors.append(e)
            else:
                errors.extend(_best(branch_errors))
            return
        if "oneOf" in schema:
            self._check_oneof(v, schema, loc, errors)
            return
        if "allOf" in schema:
            for sub in schema["allOf"]:
                self._check(v, sub, loc, errors)
        if "const" in schema and v != schema["const"]:
            errors.append(_err("literal_error", loc, "Input should be %r" % (schema["const"],), v))
            return
        if "enum" in schema and v not in schema["enum"]:
            errors.append(_err("enum", loc, "Input should be " + " or ".join(
                repr(x) for x in schema["enum"]), v))
            return
        t = schema.get("type")
        if t is not None and not self._check_type(v, t, loc, errors):
            return
        if isinstance(v, str):
            if "minLength" in schema and len(v) < schema["minLength"]:
                errors.append(_err("string_too_short", loc, "String should have at least %d characters"
                                   % schema["minLength"], v))
            elif "maxLength" in schema and len(v) > schema["maxLength"]:
                errors.append(_err("string_too_long", loc, "String should have at most %d characters"
                                   % schema["maxLength"], v))
            elif "pattern" in schema and not self._regex(schema["pattern"]).search(v):
                errors.append(_err("string_pattern_mismatch", loc, "String should match pattern '%s'"
                                   % schema["pattern"], v))
            elif schema.get("format") == "date-time" and not _DATETIME_RE.match(v):
                errors.append(_err("datetime_from_date_parsing", loc,
                                   "Input should be a valid datetime", v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if "minimum" in schema and v < schema["minimum"]:
                errors.append(_err("greater_than_equal", loc, "Input should be greater than or equal to %s"
                                   % schema["minimum"], v))
            if "maximum" in schema and v > schema["maximum"]:
                errors.append(_err("less_than_equal", loc, "Input should be less than or equal to %s"
                                   % schema["maximum"], v))
        elif isinstance(v, list) and "items" in schema:
            for i, item in enumerate(v):
                self._check(item, schema["items"], loc + (i,), errors)
        elif isinstance(v, dict):
            props = schema.get("properties", {})
            for name in schema.get("required", []):
                if name not in v:
                    errors.append(_err("missing", loc + (name,), "Field required", v))
            extra = schema.get("additionalProperties")
            for k, item in v.items():
                if k in props:
                    self._check(item, props[k], loc + (k,), errors)
                elif extra is False:
                    errors.append(_err("extra_forbidden", loc + (k,), "Extra inputs are not permitted", item))
                elif isinstance(extra, dict):
                    self._check(item, extra, loc + (k,), errors)

    def _check_type(self, v, t, loc, errors):
        ok = {
            "string": isinstance(v, str),
            "integer": isinstance(v, int) and not isinstance(v, bool),
            "number": isinstance(v, (int, float)) and not isinstance(v, bool),
            "boolean": isinstance(v, bool),
            "object": isinstance(v, dict),
            "array": isinstance(v, list),
            "null": v is None,
        }.get(t, True)
        if not ok:
            names = {"string": "a valid string", "integer": "a valid integer", "number": "a valid number",
                     "boolean": "a valid boolean", "object": "a valid dictionary", "array": "a valid list",
                     "null": "None"}
            errors.append(_err("%s_type" % {"object": "dict", "array": "list", "integer": "int",
                                            "number": "float", "boolean": "bool"}.get(t, t),
                               loc, "Input should be " + names.get(t, t), v))
        return ok

    def _check_oneof(self, v, schema, loc, errors):
        disc = schema.get("discriminator")
        if disc and isinstance(v, dict):
            # pydantic's discriminated unions: the tag picks the branch.
            tag = v.get(disc["propertyName"])
            target = disc.get("mapping", {}).get(tag) if isinstance(tag, str) else None
            if target is None:
                # The tag may have a default (e.g. TextContent.type): try the branches instead.
                if tag is None:
                    self._any_branch(v, schema["oneOf"], loc, errors)
                    return
                errors.append(_err("union_tag_invalid", loc, "Input tag %r found using '%s' does not match "
                                   "any of the expected tags" % (tag, disc["propertyName"]), v))
                return
            self._check(v, {"$ref": target}, loc + (tag,), errors)
            return
        # Without a discriminator the spec's oneOf branches overlap (they are pydantic unions,
        # not strict oneOf), so accept the first branch that fits.
        self._any_branch(v, schema["oneOf"], loc, errors)

    def _any_branch(self, v, branches, loc, errors):
        branch_errors = []
        for sub in branches:
            e = []
            self._check(v, sub, loc, e)
            if not e:
                return
            branch_errors.append(e)
        errors.extend(_best(branch_errors))


def _best(branch_errors):
    """The branch that got furthest (fewest errors) gives the most useful message."""
    return min(branch_errors, key=len) if branch_errors else []


def _err(kind, loc, msg, value):
    return {"type": kind, "loc": loc, "msg": msg, "input": value}


def pydantic_repr(errors):
    """The live server sends 422 detail as the Python repr() of pydantic's error list."""
    return repr(errors)
