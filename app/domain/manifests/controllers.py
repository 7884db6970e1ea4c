"""``/v1/manifests``: register (YAML or JSON), list, fetch and re-validate manifests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Example,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.manifests import ManifestVersion
from app.domain.examples import MANIFEST_JSON, MANIFEST_YAML
from app.domain.manifests.schemas import (
    IssueOut,
    ManifestPage,
    ManifestVersionOut,
    ManifestVersionSummary,
    Registration,
    ValidationReport,
)
from app.domain.manifests.services import (
    ManifestService,
    check_live,
    load_manifest_document,
    register_manifest,
)
from app.lib.auth import Principal, requires
from app.lib.pagination import clamp_limit, decode_cursor, encode_cursor
from app.lib.params import PageCursor, PageLimit
from app.lib.problems import problem_responses
from app.manifest.external import is_external, load_any

__all__ = ("ManifestController",)

ManifestVersionNumber = Annotated[
    int | None,
    QueryParameter(ge=1, le=2**31 - 1, description="A version number; the latest when omitted."),
]
_JSON_TYPES = ("application/json", "application/manifest+json")


@dataclass
class _ManifestBody(Operation):
    """Documents the raw YAML or JSON body (Litestar cannot infer it from a raw read)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            description="The manifest, as YAML (application/yaml) or JSON (application/json).",
            required=True,
            content={
                "application/yaml": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY),
                    examples={"shop": Example(summary="The demo shop, as YAML", value=MANIFEST_YAML)},
                ),
                "application/json": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.OBJECT),
                    examples={"shop": Example(summary="The demo shop, as JSON", value=MANIFEST_JSON)},
                ),
            },
        )


def _version_out(row: ManifestVersion) -> ManifestVersionOut:
    return ManifestVersionOut(
        system=row.system,
        version=row.version,
        content_hash=row.content_hash,
        created_at=row.created_at,
        created_by=row.created_by,
        manifest=row.document,
    )


def _summary(row: ManifestVersion) -> ManifestVersionSummary:
    return ManifestVersionSummary(
        system=row.system,
        version=row.version,
        content_hash=row.content_hash,
        created_at=row.created_at,
        created_by=row.created_by,
    )


class ManifestController(Controller):
    """The manifest registry: every registration is a new immutable version."""

    path = "/manifests"
    tags = ["manifests"]

    @post(
        "/",
        operation_id="RegisterManifest",
        summary="Register a manifest version",
        opt=requires("manifests:write"),
        operation_class=_ManifestBody,
        status_code=201,
        responses={
            200: ResponseSpec(
                data_container=Registration,
                description="The content equals the latest version: nothing new was stored.",
                generate_examples=False,
            ),
            **problem_responses(401, 403, 409, 413, 422, 503),
        },
    )
    async def register(
        self, request: Request[Principal, Any, Any], db_session: NamedDependency[AsyncSession], state: State
    ) -> Response[Registration]:
        """Validate against the live target and store a new version (201), or return the
        unchanged latest version (200) when the content is the same."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        manifest = load_any(await request.body(), "json" if content_type in _JSON_TYPES else None)
        service = ManifestService(session=db_session)
        row, created, check = await register_manifest(
            service,
            manifest,
            state.targets,
            created_by=request.user.sub,
            strict_mode=state.settings.manifest_strict,
        )
        body = Registration(
            created=created,
            version=_version_out(row),
            notice=check.notice(),
            risks=[IssueOut.of(i) for i in check.of("risk")],
            findings=[IssueOut.of(i) for i in check.of("finding")],
        )
        return Response(body, status_code=201 if created else 200)

    @get(
        "/",
        operation_id="ListManifests",
        summary="Latest version of every system",
        opt=requires("manifests:read"),
        responses=problem_responses(401, 403, 422),
    )
    async def list_manifests(
        self,
        db_session: NamedDependency[AsyncSession],
        state: State,
        cursor: PageCursor = None,
        limit: PageLimit = None,
    ) -> ManifestPage:
        """Systems in name order, one summary each (the latest version)."""
        size = clamp_limit(limit, state.settings.max_page_size)
        key = decode_cursor(cursor, 1)
        rows = await ManifestService(session=db_session).list_latest(str(key[0]) if key else None, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return ManifestPage(
            items=[_summary(r) for r in rows],
            next_cursor=encode_cursor(rows[-1].system) if more and rows else None,
        )

    @get(
        "/{system:str}",
        operation_id="GetManifest",
        summary="A system's manifest (latest or ?version=)",
        opt=requires("manifests:read"),
        responses=problem_responses(401, 403, 404, 422),
    )
    async def get_manifest(
        self,
        db_session: NamedDependency[AsyncSession],
        system: FromPath[str],
        version: ManifestVersionNumber = None,
    ) -> ManifestVersionOut:
        """Versions never change once registered, so a version number identifies content."""
        return _version_out(await ManifestService(session=db_session).get_version(system, version))

    @post(
        "/{system:str}/validate",
        operation_id="ValidateManifest",
        status_code=200,
        summary="Re-check a registered manifest against the live target",
        opt=requires("manifests:read"),
        responses=problem_responses(401, 403, 404, 422, 503),
    )
    async def validate_manifest(
        self,
        db_session: NamedDependency[AsyncSession],
        state: State,
        system: FromPath[str],
        version: ManifestVersionNumber = None,
    ) -> ValidationReport:
        """The target may have changed since registration: errors, risks and lint findings now."""
        row = await ManifestService(session=db_session).get_version(system, version)
        if is_external(row.document):  # no database to check against
            return ValidationReport(
                system=row.system, version=row.version, valid=True, errors=[], risks=[], findings=[]
            )
        check = await check_live(
            load_manifest_document(row), state.targets, strict_mode=state.settings.manifest_strict
        )
        errors = check.of("error")
        return ValidationReport(
            system=row.system,
            version=row.version,
            valid=not errors,
            errors=[IssueOut.of(i) for i in errors],
            risks=[IssueOut.of(i) for i in check.of("risk")],
            findings=[IssueOut.of(i) for i in check.of("finding")],
        )
