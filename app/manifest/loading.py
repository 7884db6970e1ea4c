"""Decode manifests from YAML or JSON into Structs, with errors naming the offending key path."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import msgspec
import yaml

from app.lib.errors import ManifestInvalid, field_error
from app.manifest.durations import DURATION_PATTERN
from app.manifest.issues import Issue, raise_for_errors
from app.manifest.model import Manifest, Spec
from app.manifest.yaml_nodes import node_issues

__all__ = (
    "content_hash",
    "dump_manifest",
    "load_manifest",
    "load_manifest_file",
    "manifest_issues",
    "parse_document",
    "to_yaml",
)

_AT = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+|\.\.\.)\]")


class _Loader(yaml.SafeLoader):
    """YAML 1.2-ish: only ``true``/``false`` are booleans and dates stay strings."""


_Loader.yaml_implicit_resolvers = {
    key: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(  # type: ignore[no-untyped-call]
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_document(text: str | bytes, fmt: Literal["yaml", "json"] | None = None) -> Any:
    """Parse YAML or JSON text (JSON is YAML, so YAML is the default) into plain Python data.

    Raises:
        ManifestInvalid: the text is not well-formed (the error names line and column), repeats a
            key (naming the key path and both lines), or writes ``surrogate:`` as a bare null.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        if fmt == "json":
            return json.loads(text, object_pairs_hook=_unique_pairs)
        return _load_yaml(text)
    except _DuplicateJsonKey as exc:
        raise_for_errors(_yaml_node_issues(text) or [exc.issue])
        raise AssertionError("unreachable") from exc  # pragma: no cover - raise_for_errors raised
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ManifestInvalid(
            f"manifest is not valid JSON: {where}: {exc.msg}",
            errors=[field_error(where, exc.msg)],
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "document"
        problem = getattr(exc, "problem", None) or str(exc)
        if "'\\t'" in problem:
            problem = "a tab character: YAML indents with spaces only"
        raise ManifestInvalid(
            f"manifest is not valid YAML: {where}: {problem}",
            errors=[field_error(where, str(problem))],
        ) from exc
    except (RecursionError, ValueError) as exc:  # nested too deeply; an integer of 5,000 digits
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "a value is out of range"
        raise ManifestInvalid(
            f"manifest cannot be read: {reason}", errors=[field_error("document", reason)]
        ) from exc


def _load_yaml(text: str) -> Any:
    """Compose the node tree, refuse what decoding would hide, then construct the data."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        raise_for_errors(node_issues(root))
        return None if root is None else loader.construct_document(root)  # type: ignore[no-untyped-call]
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def _yaml_node_issues(text: str) -> list[Issue]:
    """The node issues of a JSON text read as YAML (for line numbers), if YAML can read it."""
    try:
        return node_issues(yaml.compose(text, Loader=_Loader))
    except yaml.YAMLError:
        return []


class _DuplicateJsonKey(ValueError):
    def __init__(self, issue: Issue) -> None:
        super().__init__(issue.message)
        self.issue = issue


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            message = f"key '{key}' appears twice in one object; only the last would count: merge them"
            raise _DuplicateJsonKey(Issue(kind="duplicate_key", path=key, message=message))
        result[key] = value
    return result


def _literal_values(annotation: Any) -> tuple[str, ...]:
    """The strings of every ``Literal`` inside ``annotation`` (through unions)."""
    if get_origin(annotation) is Literal:
        return tuple(str(v) for v in get_args(annotation))
    return tuple(v for arg in get_args(annotation) for v in _literal_values(arg))


@cache
def _enum_fields() -> dict[str, tuple[str, ...]]:
    """Allowed values of every enumerated manifest key, by key name (``strategy``, ``op``, ...)."""
    allowed: dict[str, tuple[str, ...]] = {}
    for struct in Spec.__subclasses__():
        for info in msgspec.structs.fields(struct):
            values = _literal_values(info.type)
            if values:
                allowed[info.encode_name] = tuple(dict.fromkeys(allowed.get(info.encode_name, ()) + values))
    return allowed


def _enum_hint(message: str, path: str) -> str:
    """``Invalid enum value 'emial'`` -> the key, the value, the allowed values, the closest one."""
    found = re.match(r"Invalid enum value '(?P<value>[^']*)'", message)
    key = path.rsplit(".", 1)[-1] if path else ""
    allowed = _enum_fields().get(key)
    if found is None or not allowed:
        return message
    value = found.group("value")
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"`{key}` cannot be '{value}': allowed values are {', '.join(allowed)}{hint}"


def _friendly(message: str) -> str:
    if DURATION_PATTERN in message or ("matching regex" in message and "P(?!$)" in message):
        return "expected an ISO 8601 duration such as P10Y, P30D or PT12H"
    return message.replace("Object contains unknown field", "unknown key").replace(
        "Object missing required field", "missing required key"
    )


def _path_segments(path: str) -> list[str | int | None]:
    """``$.tables[...].columns[0]`` -> ``["tables", None, "columns", 0]`` (None: unknown key)."""
    segments: list[str | int | None] = []
    for name, index in _SEGMENT.findall(path.removeprefix("$")):
        if name:
            segments.append(name)
        else:
            segments.append(None if index == "..." else int(index))
    return segments


def _failure(data: Any) -> str | None:
    try:
        msgspec.convert(data, Manifest, strict=True)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def _resolve_keys(data: Any, error: str) -> str:
    """Replace each ``[...]`` (a mapping key msgspec does not name) with the key that failed.

    msgspec stops at the first error in document order, so the failing key of a mapping is the
    first key whose prefix of the mapping reproduces the same error.
    """
    match = _AT.match(error)
    raw = match.group("path") if match else None
    if not raw:
        return ""
    names: list[str] = []
    node = data
    for segment in _path_segments(raw):
        if segment is None and isinstance(node, dict):
            key = _first_failing_key(data, node, error)
            names.append(str(key))
            node = node.get(key) if key is not None else None
        elif isinstance(segment, int):
            names.append(f"[{segment}]")
            node = node[segment] if isinstance(node, list) and segment < len(node) else None
        else:
            names.append(str(segment))
            node = node.get(segment) if isinstance(node, dict) else None
    return ".".join(names).replace(".[", "[")


def _first_failing_key(root: Any, mapping: dict[Any, Any], error: str) -> Any:
    original = dict(mapping)
    keys = list(original)
    try:
        for end in range(1, len(keys) + 1):
            mapping.clear()
            mapping.update((k, original[k]) for k in keys[:end])
            if _failure(root) == error:
                return keys[end - 1]
    finally:
        mapping.clear()
        mapping.update(original)
    return "..."


def _unknown_key_path(message: str, path: str) -> tuple[str, str]:
    """Put an unknown or missing key's name into the path: ``tables.orders.colums``."""
    found = re.search(r"(?:unknown|missing required) key `([^`]+)`", message)
    if found:
        path = f"{path}.{found.group(1)}" if path else found.group(1)
    return message, path


def manifest_issues(data: Any) -> tuple[Manifest | None, list[Issue]]:
    """Convert parsed data into a :class:`Manifest`, or explain the first problem precisely."""
    if not isinstance(data, dict):
        return None, [Issue(kind="structure", path="$", message="a manifest is a mapping of keys")]
    try:
        return msgspec.convert(data, Manifest, strict=True), []
    except msgspec.ValidationError as exc:
        error = str(exc)
    match = _AT.match(error)
    message = _friendly(match.group("message") if match else error)
    message, path = _unknown_key_path(message, _resolve_keys(data, error))
    message = _enum_hint(message, path)
    return None, [Issue(kind="structure", path=path or "$", message=message)]


def load_manifest(text: str | bytes, fmt: Literal["yaml", "json"] | None = None) -> Manifest:
    """Decode a manifest document (YAML or JSON text).

    Raises:
        ManifestInvalid: syntax error (line/column) or a key that does not fit the format; the
            problem's ``errors[0].field`` is the key path, e.g. ``tables.orders.columns.note``.
    """
    data = parse_document(text, fmt)
    manifest, issues = manifest_issues(data)
    raise_for_errors(issues)
    assert manifest is not None  # noqa: S101 - raise_for_errors raised otherwise
    return manifest


def load_manifest_file(path: Path) -> Manifest:
    """Decode the manifest in ``path`` (``.json`` as JSON, anything else as YAML)."""
    fmt: Literal["yaml", "json"] = "json" if path.suffix.lower() == ".json" else "yaml"
    return load_manifest(path.read_bytes(), fmt)


def dump_manifest(manifest: Spec) -> dict[str, Any]:
    """The manifest as plain JSON-ready data, defaults omitted (what the registry stores)."""
    result: dict[str, Any] = msgspec.to_builtins(manifest)
    return result


def content_hash(manifest: Spec) -> str:
    """SHA-256 of the canonical JSON form: the same content in YAML or JSON hashes the same."""
    canonical = json.dumps(dump_manifest(manifest), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_yaml(manifest: Manifest | dict[str, Any]) -> str:
    """Render a manifest (or its dumped form) as YAML in document order."""
    data = dump_manifest(manifest) if isinstance(manifest, Manifest) else manifest
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
