"""The emulator's answers validate against HubSpot's published OpenAPI descriptions."""

import pytest
from openapi_contract import ApiContract

# openapi-core cannot check OAuth2 security schemes; the emulator's auth is tested by the SDK tests.
pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type")

TOKEN = "pat-na1-openapi-contract"
READER = "pat-na1-openapi-reader"


@pytest.fixture
def emulator(start_emulator):
    return start_emulator("--seed", "5", "--token", TOKEN, "--token", f"{READER}=crm.objects.contacts.read")


@pytest.mark.parametrize("spec_name", ["hubspot_crm_objects", "hubspot_crm_contacts"])
def test_object_crud(emulator, spec_name):
    api = ApiContract(emulator, spec_name, TOKEN)
    base = "/crm/v3/objects/contacts"

    page = api.call("GET", base, params={"limit": 2, "properties": "email,firstname"}, expect=200)
    assert len(page["results"]) == 2 and page["paging"]["next"]["after"]
    api.call("GET", base, params={"limit": 2, "after": page["paging"]["next"]["after"], "archived": "false"}, expect=200)

    created = api.call(
        "POST", base, json_body={"properties": {"email": "openapi@example.com", "firstname": "Open"}, "associations": []}, expect=201
    )
    contact_id = created["id"]
    api.call("GET", f"{base}/{contact_id}", params={"properties": "email", "propertiesWithHistory": "email"}, expect=200)
    api.call("GET", f"{base}/openapi@example.com", params={"idProperty": "email"}, expect=200)
    updated = api.call("PATCH", f"{base}/{contact_id}", json_body={"properties": {"firstname": "Api"}}, expect=200)
    assert updated["properties"]["firstname"] == "Api"
    api.call("DELETE", f"{base}/{contact_id}", expect=204)

    missing = api.call("GET", f"{base}/999999", expect=404)
    assert missing["category"] == "OBJECT_NOT_FOUND"
    conflict = api.call("POST", base, json_body={"properties": {"email": page["results"][0]["properties"]["email"]}, "associations": []}, expect=409)
    assert conflict["category"] == "CONFLICT"
    invalid = api.call("POST", base, json_body={"properties": {"no_such_property": "x"}, "associations": []}, expect=400)
    assert invalid["category"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("spec_name", ["hubspot_crm_objects", "hubspot_crm_contacts"])
def test_object_batches(emulator, spec_name):
    api = ApiContract(emulator, spec_name, TOKEN)
    base = "/crm/v3/objects/contacts/batch"

    created = api.call(
        "POST",
        f"{base}/create",
        json_body={"inputs": [{"properties": {"email": f"batch{i}@example.com"}, "associations": []} for i in range(3)]},
        expect=201,
    )
    ids = [result["id"] for result in created["results"]]
    api.call(
        "POST",
        f"{base}/read",
        json_body={"properties": ["email"], "propertiesWithHistory": [], "inputs": [{"id": i} for i in ids]},
        expect=200,
    )
    partial = api.call(
        "POST",
        f"{base}/read",
        json_body={"properties": ["email"], "propertiesWithHistory": [], "inputs": [{"id": ids[0]}, {"id": "999999"}]},
        expect=207,
    )
    assert partial["numErrors"] == 1
    api.call(
        "POST",
        f"{base}/update",
        json_body={"inputs": [{"id": i, "properties": {"firstname": "Batch"}} for i in ids]},
        expect=200,
    )
    too_many = api.call("POST", f"{base}/read", json_body={"properties": [], "propertiesWithHistory": [], "inputs": [{"id": str(i)} for i in range(101)]}, expect=400)
    assert too_many["category"] == "VALIDATION_ERROR"
    api.call("POST", f"{base}/archive", json_body={"inputs": [{"id": i} for i in ids]}, expect=204)


def test_search(emulator):
    api = ApiContract(emulator, "hubspot_crm_objects", TOKEN)
    found = api.call(
        "POST",
        "/crm/v3/objects/contacts/search",
        json_body={
            "filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}],
            "sorts": ["email"],
            "properties": ["email"],
            "limit": 2,
            "after": "0",
        },
        expect=200,
    )
    assert found["total"] == 5 and len(found["results"]) == 2


def test_scope_and_authentication_errors(emulator):
    reader = ApiContract(emulator, "hubspot_crm_objects", READER)
    refused = reader.call("POST", "/crm/v3/objects/contacts", json_body={"properties": {"email": "x@example.com"}, "associations": []}, expect=403)
    assert refused["category"] == "MISSING_SCOPES"
    stranger = ApiContract(emulator, "hubspot_crm_objects", "pat-na1-unknown")
    unauthenticated = stranger.call("GET", "/crm/v3/objects/contacts", expect=401)
    assert unauthenticated["category"] == "INVALID_AUTHENTICATION"


def test_properties_and_groups(emulator):
    api = ApiContract(emulator, "hubspot_crm_properties", TOKEN)
    base = "/crm/v3/properties/contacts"

    listed = api.call("GET", base, params={"archived": "false"}, expect=200)
    assert any(p["name"] == "email" for p in listed["results"])
    api.call("GET", f"{base}/email", expect=200)
    api.call(
        "POST",
        f"{base}/groups",
        json_body={"name": "openapi_group", "label": "OpenAPI", "displayOrder": -1},
        expect=201,
    )
    api.call("GET", f"{base}/groups", expect=200)
    api.call("GET", f"{base}/groups/openapi_group", expect=200)
    api.call("PATCH", f"{base}/groups/openapi_group", json_body={"label": "OpenAPI group"}, expect=200)
    definition = {
        "name": "openapi_tier",
        "label": "Tier",
        "type": "enumeration",
        "fieldType": "select",
        "groupName": "openapi_group",
        "options": [{"label": "Gold", "value": "gold", "displayOrder": 0, "hidden": False}],
    }
    api.call("POST", base, json_body=definition, expect=201)
    exists = api.call("POST", base, json_body=definition, expect=409)
    assert exists["category"] == "OBJECT_ALREADY_EXISTS"
    api.call("PATCH", f"{base}/openapi_tier", json_body={"label": "Customer tier"}, expect=200)
    api.call(
        "POST",
        f"{base}/batch/read",
        json_body={"archived": False, "propertiesWithHistory": [], "inputs": [{"name": "openapi_tier"}, {"name": "email"}]},
        expect=200,
    )
    api.call(
        "POST",
        f"{base}/batch/create",
        json_body={
            "inputs": [
                {"name": "openapi_a", "label": "A", "type": "string", "fieldType": "text", "groupName": "openapi_group"},
                {"name": "openapi_b", "label": "B", "type": "number", "fieldType": "number", "groupName": "openapi_group"},
            ]
        },
        expect=201,
    )
    partial = api.call(
        "POST",
        f"{base}/batch/read",
        json_body={"archived": False, "propertiesWithHistory": [], "inputs": [{"name": "openapi_a"}, {"name": "nothing"}]},
        expect=207,
    )
    assert partial["numErrors"] == 1
    api.call("POST", f"{base}/batch/archive", json_body={"inputs": [{"name": "openapi_a"}, {"name": "openapi_b"}]}, expect=204)
    api.call("DELETE", f"{base}/openapi_tier", expect=204)
    api.call("DELETE", f"{base}/groups/openapi_group", expect=204)
    bad_type = api.call(
        "POST",
        base,
        json_body={"name": "openapi_bad", "label": "Bad", "type": "string", "fieldType": "select", "groupName": "contactinformation"},
        expect=400,
    )
    assert bad_type["category"] == "VALIDATION_ERROR"


def test_rate_limit_answer(emulator):
    emulator.admin("PUT", "/_emulator/faults", {"status": 429, "count": 1})
    api = ApiContract(emulator, "hubspot_crm_objects", TOKEN)
    # HubSpot's gateway answers 429 with its own body (documented in the rate-limit guide), not
    # with the descriptions' `Error` object: it has errorType and policyName but no category.
    limited = api.call("GET", "/crm/v3/objects/contacts", params={"limit": 1}, expect=429, check_answer=False)
    assert set(limited) == {"status", "message", "errorType", "correlationId", "policyName"}
    assert (limited["errorType"], limited["policyName"]) == ("RATE_LIMIT", "TEN_SECONDLY_ROLLING")
    api.call("GET", "/crm/v3/objects/contacts", params={"limit": 1}, expect=200)


CLIENT_ID = "openapi-client"
CLIENT_SECRET = "openapi-secret"
REFRESH_TOKEN = "na1-openapi-refresh"


def test_oauth(start_emulator):
    emulator = start_emulator(
        "--oauth-app", f"{CLIENT_ID}:{CLIENT_SECRET}", "--refresh-token", f"{REFRESH_TOKEN}={CLIENT_ID}"
    )
    api = ApiContract(emulator, "hubspot_auth_oauth")
    grant = {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }
    tokens = api.call("POST", "/v1/token", form=grant, expect=200)
    info = api.call("GET", f"/v1/access-tokens/{tokens['access_token']}", expect=200)
    assert info["token"] == tokens["access_token"]
    api.call("GET", f"/v1/refresh-tokens/{REFRESH_TOKEN}", expect=200)
    refused = api.call("POST", "/v1/token", form=dict(grant, client_secret="wrong"), expect=400)
    assert (refused["status"], refused["category"]) == ("BAD_CLIENT_SECRET", "VALIDATION_ERROR")
    api.call("DELETE", f"/v1/refresh-tokens/{REFRESH_TOKEN}", expect=204)
    api.call("GET", f"/v1/refresh-tokens/{REFRESH_TOKEN}", expect=404)
