"""Create or update, profile, search and the error answers of the customer endpoints."""

from __future__ import annotations

import pytest

from storage.db import Database
from tests.api.conftest import Client, add_identity, create


async def test_create_then_update_by_the_same_phone(sqlite_api: Client) -> None:
    created = await create(
        sqlite_api,
        phone="8 (999) 123-45-67",
        name="Anna",
        timezone="Europe/Moscow",
        attributes={"city": "Kazan"},
        tags=["vip"],
        consents=[{"channel": "email", "purpose": "marketing", "granted": True, "source": "form"}],
    )
    assert created["phone"] == "+79991234567"
    assert created["tags"] == ["vip"]
    assert created["consents"][0]["granted"] is True

    response = await sqlite_api.post(
        "/api/customers",
        json={"phone": "+7 999 123 45 67", "email": "Anna@Example.com", "attributes": {"age": 30}},
    )
    assert response.status == 200
    updated = await response.json()
    assert updated["id"] == created["id"]
    assert updated["name"] == "Anna"  # left out, so kept
    assert updated["email"] == "anna@example.com"
    assert updated["attributes"] == {"city": "Kazan", "age": 30}

    fetched = await sqlite_api.get(f"/api/customers/{created['id']}")
    assert fetched.status == 200
    assert await fetched.json() == updated


async def test_invalid_phone_is_422_naming_phone(sqlite_api: Client) -> None:
    response = await sqlite_api.post("/api/customers", json={"phone": "+7 999"})
    assert response.status == 422
    body = await response.json()
    assert body["error"] == "validation"
    assert [d["field"] for d in body["detail"]] == ["phone"]
    assert "'+7 999' is not a valid phone number" in body["detail"][0]["message"]
    assert (await (await sqlite_api.get("/api/customers")).json())["items"] == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"phone": "+79991234567", "timezone": "Mars/Olympus"}, "timezone"),
        ({"external_id": "a1", "tags": [""]}, "tags.0"),
        (
            {
                "external_id": "a1",
                "consents": [{"channel": "fax", "purpose": "m", "granted": True}],
            },
            "consents.0.channel",
        ),
        ({"external_id": "a1", "nmae": "typo"}, "nmae"),
        ({"name": "nobody to find"}, "body"),
        ([1, 2], "body"),
    ],
)
async def test_validation_errors_name_the_field(
    sqlite_api: Client, payload: object, field: str
) -> None:
    response = await sqlite_api.post("/api/customers", json=payload)
    assert response.status == 422
    body = await response.json()
    assert field in [d["field"] for d in body["detail"]]


async def test_nothing_is_half_written_when_a_consent_is_refused(sqlite_api: Client) -> None:
    await create(sqlite_api, external_id="shop-1", name="Before")
    response = await sqlite_api.post(
        "/api/customers",
        json={"external_id": "shop-1", "name": "After", "phone": "not a phone"},
    )
    assert response.status == 422
    page = await (await sqlite_api.get("/api/customers", params={"q": "shop-1"})).json()
    assert [c["name"] for c in page["items"]] == ["Before"]


async def test_keys_of_two_customers_conflict(sqlite_api: Client) -> None:
    await create(sqlite_api, phone="+79991234567")
    await create(sqlite_api, email="b@example.com")
    response = await sqlite_api.post(
        "/api/customers", json={"phone": "+79991234567", "email": "b@example.com"}
    )
    assert response.status == 409
    body = await response.json()
    assert body["error"] == "conflict"
    assert body["detail"][0]["field"] == "email"


@pytest.mark.parametrize(
    "path", ["/api/customers/999", "/api/customers/999/messages", "/api/customers/999/export"]
)
async def test_unknown_customer_is_404(sqlite_api: Client, path: str) -> None:
    response = await sqlite_api.get(path)
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_non_numeric_id_and_unknown_paths_are_json_404(sqlite_api: Client) -> None:
    for path in ("/api/customers/abc", "/api/nothing-here"):
        response = await sqlite_api.get(path)
        assert response.status == 404
        assert response.content_type == "application/json"


async def test_wrong_method_is_json_405(sqlite_api: Client) -> None:
    response = await sqlite_api.put("/api/customers")
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe"])
async def test_malformed_json_is_400(sqlite_api: Client, raw: bytes) -> None:
    response = await sqlite_api.post(
        "/api/customers", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "bad_request"
    assert body["detail"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("limit", "status"), [("0", 422), ("201", 422), ("ten", 422), ("1", 200), ("200", 200)]
)
async def test_limit_is_1_to_200(sqlite_api: Client, limit: str, status: int) -> None:
    response = await sqlite_api.get("/api/customers", params={"limit": limit})
    assert response.status == status
    if status == 422:
        assert (await response.json())["detail"][0]["field"] == "limit"


async def test_bad_cursor_is_400(sqlite_api: Client) -> None:
    for path in ("/api/customers", "/api/customers/1/messages"):
        if path.endswith("messages"):
            await create(sqlite_api, external_id="x")
        response = await sqlite_api.get(path, params={"cursor": "not-a-cursor"})
        assert response.status == 400
        assert (await response.json())["detail"][0]["field"] == "cursor"


async def test_profile_lists_identities_consents_and_tags(
    sqlite_api: Client, sqlite_database: Database
) -> None:
    customer = await create(
        sqlite_api,
        external_id="42",
        tags=["b", "a"],
        consents=[{"channel": "*", "purpose": "marketing", "granted": False}],
    )
    await add_identity(sqlite_database, int(customer["id"]), "telegram", "1001", "Anna T")
    body = await (await sqlite_api.get(f"/api/customers/{customer['id']}")).json()
    assert body["tags"] == ["a", "b"]
    assert body["consents"][0] | {"updated_at": None} == {
        "channel": "*",
        "purpose": "marketing",
        "granted": False,
        "source": None,
        "updated_at": None,
    }
    (identity,) = body["identities"]
    assert identity["channel"] == "telegram"
    assert identity["address"] == "1001"
    assert identity["display_name"] == "Anna T"
    assert identity["verified"] is False
    assert identity["reachable"] is True
    assert "+00:00" in identity["last_seen_at"]


async def _all_pages(api: Client, **params: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, "limit": "2"} | ({"cursor": cursor} if cursor else {})
        response = await api.get("/api/customers", params=query)
        assert response.status == 200
        page = await response.json()
        assert len(page["items"]) <= 2
        items.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert pages < 20


async def test_search_pages_through_every_match(api: Client, database: Database) -> None:
    ids = []
    for n in range(5):
        customer = await create(
            api,
            external_id=f"ext-{n}",
            name=f"Ivan {n}" if n % 2 == 0 else f"Petr {n}",
            tags=["vip"] if n < 3 else ["new"],
        )
        ids.append(customer["id"])
    await add_identity(database, int(ids[1]), "vk", "555")
    await add_identity(database, int(ids[4]), "vk", "556")

    everyone = await _all_pages(api)
    assert [c["id"] for c in everyone] == ids  # each once, in order
    assert [c["id"] for c in await _all_pages(api, q="ivan")] == [ids[0], ids[2], ids[4]]
    assert [c["id"] for c in await _all_pages(api, tag="vip")] == ids[:3]
    assert [c["id"] for c in await _all_pages(api, channel="vk")] == [ids[1], ids[4]]
    assert [c["id"] for c in await _all_pages(api, channel="vk", tag="vip")] == [ids[1]]
    assert await _all_pages(api, q="nobody") == []

    response = await api.get("/api/customers", params={"channel": "fax"})
    assert response.status == 422
    assert (await response.json())["detail"][0]["field"] == "channel"
