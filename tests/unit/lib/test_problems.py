"""Engine errors carry no HTTP status: the one mapping in app.lib.problems gives them their answer."""

from __future__ import annotations

from litestar import get
from litestar.testing import create_test_client

from app.engine.erasure import ErasureBlocked
from app.engine.errors import EngineError
from app.engine.runs import RequestFailed
from app.lib.errors import LetheError
from app.lib.problems import exception_handlers


@get("/blocked", sync_to_thread=False)
def blocked() -> None:
    raise ErasureBlocked("system 'shop': foreign key fk_x blocks it", extra={"constraint": "fk_x"})


@get("/failed", sync_to_thread=False)
def failed() -> None:
    raise RequestFailed("the identities match several subjects", system="shop")


def test_engine_errors_are_not_http_errors() -> None:
    assert issubclass(ErasureBlocked, EngineError)
    assert not issubclass(ErasureBlocked, LetheError)


def test_a_blocked_erasure_answers_409_erasure_blocked() -> None:
    with create_test_client([blocked, failed], exception_handlers=exception_handlers) as client:
        response = client.get("/blocked")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["type"], body["title"]) == ("urn:lethe:problem:erasure-blocked", "Erasure blocked")
    assert body["detail"] == "system 'shop': foreign key fk_x blocks it"
    assert body["extra"] == {"constraint": "fk_x"}


def test_an_unmapped_engine_error_is_an_internal_error_without_its_message() -> None:
    with create_test_client([blocked, failed], exception_handlers=exception_handlers) as client:
        response = client.get("/failed")
    assert response.status_code == 500
    assert response.json()["type"] == "urn:lethe:problem:internal"
    assert "several subjects" not in response.text
