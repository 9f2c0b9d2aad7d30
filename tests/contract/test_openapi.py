"""The emulator's answers validate against HubSpot's published OpenAPI descriptions."""

import pytest
from openapi_contract import ApiContract

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


def test_tickets(emulator):
    api = ApiContract(emulator, "hubspot_crm_tickets", TOKEN)
    base = "/crm/v3/objects/tickets"
    created = api.call(
        "POST",
        base,
        json_body={"properties": {"subject": "Printer on fire", "hs_pipeline_stage": "1"}, "associations": []},
        expect=201,
    )
    ticket_id = created["id"]
    api.call("GET", base, params={"limit": 5, "properties": "subject"}, expect=200)
    api.call("GET", f"{base}/{ticket_id}", params={"properties": "subject,hs_pipeline"}, expect=200)
    api.call("PATCH", f"{base}/{ticket_id}", json_body={"properties": {"hs_pipeline_stage": "4"}}, expect=200)
    batch = api.call(
        "POST",
        f"{base}/batch/create",
        json_body={"inputs": [{"properties": {"subject": f"T{i}", "hs_pipeline_stage": "1"}, "associations": []} for i in range(2)]},
        expect=201,
    )
    ids = [t["id"] for t in batch["results"]]
    api.call(
        "POST",
        f"{base}/batch/read",
        json_body={"properties": ["subject"], "propertiesWithHistory": [], "inputs": [{"id": i} for i in ids]},
        expect=200,
    )
    api.call(
        "POST",
        f"{base}/batch/update",
        json_body={"inputs": [{"id": i, "properties": {"hs_ticket_priority": "HIGH"}} for i in ids]},
        expect=200,
    )
    found = api.call(
        "POST",
        f"{base}/search",
        json_body={
            "filterGroups": [{"filters": [{"propertyName": "hs_ticket_priority", "operator": "EQ", "value": "HIGH"}]}],
            "sorts": ["subject"],
            "properties": ["subject"],
            "limit": 10,
            "after": "0",
        },
        expect=200,
    )
    assert found["total"] == 2
    merged = api.call("POST", f"{base}/merge", json_body={"primaryObjectId": ids[0], "objectIdToMerge": ids[1]}, expect=200)
    assert merged["id"] == ids[0]
    missing_stage = api.call("POST", base, json_body={"properties": {"subject": "x"}, "associations": []}, expect=400)
    assert missing_stage["category"] == "VALIDATION_ERROR"
    api.call("POST", f"{base}/batch/archive", json_body={"inputs": [{"id": ids[0]}]}, expect=204)
    api.call("DELETE", f"{base}/{ticket_id}", expect=204)


def test_custom_object_schemas(emulator):
    api = ApiContract(emulator, "hubspot_crm_schemas", TOKEN)
    created = api.call(
        "POST",
        "/crm/v3/schemas",
        json_body={
            "name": "cars",
            "labels": {"singular": "Car", "plural": "Cars"},
            "requiredProperties": ["vin"],
            "searchableProperties": ["vin"],
            "primaryDisplayProperty": "vin",
            "secondaryDisplayProperties": [],
            "associatedObjects": ["CONTACT"],
            "properties": [{"name": "vin", "label": "VIN", "type": "string", "fieldType": "text", "hasUniqueValue": True}],
        },
        expect=201,
    )
    type_id = created["objectTypeId"]
    assert type_id.startswith("2-") and created["fullyQualifiedName"] == "p62515_cars"
    listed = api.call("GET", "/crm/v3/schemas", params={"archived": "false"}, expect=200)
    assert [s["name"] for s in listed["results"]] == ["cars"]
    api.call("GET", f"/crm/v3/schemas/{type_id}", expect=200)
    api.call("PATCH", f"/crm/v3/schemas/{type_id}", json_body={"labels": {"singular": "Auto", "plural": "Autos"}}, expect=200)
    association = api.call(
        "POST",
        f"/crm/v3/schemas/{type_id}/associations",
        json_body={"fromObjectTypeId": type_id, "toObjectTypeId": "0-2"},
        expect=201,
    )
    api.call("DELETE", f"/crm/v3/schemas/{type_id}/associations/{association['id']}", expect=204)
    taken = api.call(
        "POST",
        "/crm/v3/schemas",
        json_body={
            "name": "cars",
            "labels": {"singular": "Car", "plural": "Cars"},
            "requiredProperties": [],
            "associatedObjects": [],
            "properties": [{"name": "vin", "label": "VIN", "type": "string", "fieldType": "text"}],
        },
        expect=409,
    )
    assert taken["category"] == "CONFLICT" or taken["category"] == "OBJECT_ALREADY_EXISTS"
    api.call("DELETE", f"/crm/v3/schemas/{type_id}", expect=204)


def test_associations_v4_batches_and_labels(emulator):
    objects = ApiContract(emulator, "hubspot_crm_objects", TOKEN)
    company = objects.call("POST", "/crm/v3/objects/companies", json_body={"properties": {"name": "Acme"}, "associations": []}, expect=201)
    api = ApiContract(emulator, "hubspot_crm_crm_associations", TOKEN)
    labels = api.call("GET", "/contacts/companies/labels", expect=200)
    assert {(label["category"], label["typeId"]) for label in labels["results"]} >= {("HUBSPOT_DEFINED", 279), ("HUBSPOT_DEFINED", 1)}
    pair = {"from": {"id": "1"}, "to": {"id": company["id"]}}
    api.call(
        "POST",
        "/contacts/companies/batch/create",
        json_body={"inputs": [dict(pair, types=[{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}])]},
        expect=201,
    )
    api.call("POST", "/contacts/companies/batch/associate/default", json_body={"inputs": [{"from": {"id": "2"}, "to": {"id": company["id"]}}]}, expect=200)
    read = api.call("POST", "/contacts/companies/batch/read", json_body={"inputs": [{"id": "1"}, {"id": "2"}]}, expect=200)
    assert {r["from"]["id"] for r in read["results"]} == {"1", "2"}
    api.call("POST", "/contacts/companies/batch/archive", json_body={"inputs": [{"from": {"id": "1"}, "to": [{"id": company["id"]}]}]}, expect=204)


DEVELOPER_KEY = "openapi-developer-key"
APP_ID = 54321


def test_webhooks_management(start_emulator):
    emulator = start_emulator("--developer-api-key", DEVELOPER_KEY)
    api = ApiContract(emulator, "hubspot_webhooks_webhooks")
    key = {"hapikey": DEVELOPER_KEY}
    base = f"/webhooks/v3/{APP_ID}"
    api.call(
        "PUT",
        f"{base}/settings",
        params=key,
        json_body={"targetUrl": "https://hooks.example.com/webhooks/hubspot", "throttling": {"maxConcurrentRequests": 10, "period": "SECONDLY"}},
        expect=200,
    )
    api.call("GET", f"{base}/settings", params=key, expect=200)
    created = api.call(
        "POST",
        f"{base}/subscriptions",
        params=key,
        json_body={"eventType": "contact.propertyChange", "propertyName": "email", "active": True},
        expect=201,
    )
    listed = api.call("GET", f"{base}/subscriptions", params=key, expect=200)
    assert [s["id"] for s in listed["results"]] == [created["id"]], "only subscriptions made through the API"
    api.call("GET", f"{base}/subscriptions/{created['id']}", params=key, expect=200)
    api.call("PATCH", f"{base}/subscriptions/{created['id']}", params=key, json_body={"active": False}, expect=200)
    api.call(
        "POST",
        f"{base}/subscriptions/batch/update",
        params=key,
        json_body={"inputs": [{"id": int(created["id"]), "active": True}]},
        expect=200,
    )
    api.call("DELETE", f"{base}/subscriptions/{created['id']}", params=key, expect=204)
    api.call("DELETE", f"{base}/settings", params=key, expect=204)
    refused = api.call("GET", f"{base}/settings", params={"hapikey": "wrong"}, expect=401)
    assert refused["category"] == "INVALID_AUTHENTICATION"


def test_timeline_templates_and_events(start_emulator):
    emulator = start_emulator("--developer-api-key", DEVELOPER_KEY, "--token", TOKEN)
    developer = ApiContract(emulator, "hubspot_crm_timeline")
    app = ApiContract(emulator, "hubspot_crm_timeline", TOKEN)
    key = {"hapikey": DEVELOPER_KEY}
    base = f"/crm/v3/timeline/{APP_ID}/event-templates"
    template = developer.call(
        "POST",
        base,
        params=key,
        json_body={
            "name": "Pet adoption",
            "objectType": "contacts",
            "headerTemplate": "Adopted {{petName}}",
            "detailTemplate": "Color: {{petColor}}",
            "tokens": [
                {"name": "petName", "label": "Pet name", "type": "string"},
                {"name": "petColor", "label": "Color", "type": "enumeration",
                 "options": [{"label": "Black", "value": "black"}, {"label": "Yellow", "value": "yellow"}]},
            ],
        },
        expect=201,
    )
    developer.call("GET", base, params=key, expect=200)
    developer.call("GET", f"{base}/{template['id']}", params=key, expect=200)
    developer.call(
        "PUT",
        f"{base}/{template['id']}",
        params=key,
        json_body={"id": template["id"], "name": "Pet adoption", "detailTemplate": "Color: {{petColor}}", "tokens": template["tokens"]},
        expect=200,
    )
    developer.call("POST", f"{base}/{template['id']}/tokens", params=key, json_body={"name": "age", "label": "Age", "type": "number"}, expect=200)
    developer.call("PUT", f"{base}/{template['id']}/tokens/age", params=key, json_body={"label": "Age in years"}, expect=200)
    developer.call("DELETE", f"{base}/{template['id']}/tokens/age", params=key, expect=204)

    event = {"eventTemplateId": template["id"], "id": "adoption-1", "email": "owner@example.com", "tokens": {"petName": "Art3mis"}}
    app.call("POST", "/crm/v3/timeline/events", json_body=event, expect=201)
    app.call("POST", "/crm/v3/timeline/events", json_body=event, expect=409)
    app.call(
        "POST",
        "/crm/v3/timeline/events/batch/create",
        json_body={"inputs": [dict(event, id="adoption-2"), dict(event, id="adoption-3")]},
        expect=201,
    )
    partly = app.call(
        "POST",
        "/crm/v3/timeline/events/batch/create",
        json_body={"inputs": [dict(event, id="adoption-4"), dict(event, id="adoption-5", tokens={"unknown": "x"})]},
        expect=207,
    )
    assert partly["numErrors"] == 1
    app.call("GET", f"/crm/v3/timeline/events/{template['id']}/adoption-1", expect=200)
    detail = app.call("GET", f"/crm/v3/timeline/events/{template['id']}/adoption-1/detail", expect=200)
    assert detail["details"] == "Color: "
    developer.call("DELETE", f"{base}/{template['id']}", params=key, expect=204)
    developer.call("GET", f"{base}/{template['id']}", params=key, expect=404)


def test_owners(start_emulator):
    emulator = start_emulator("--seed", "2", "--token", TOKEN)
    api = ApiContract(emulator, "hubspot_crm_owners", TOKEN)
    page = api.call("GET", "/crm/v3/owners/", params={"limit": 2}, expect=200)
    assert len(page["results"]) == 2 and page["paging"]["next"]["after"]
    api.call("GET", "/crm/v3/owners/", params={"after": page["paging"]["next"]["after"], "archived": "false"}, expect=200)
    found = api.call("GET", "/crm/v3/owners/", params={"email": page["results"][1]["email"]}, expect=200)
    owner = found["results"][0]
    api.call("GET", f"/crm/v3/owners/{owner['id']}", params={"idProperty": "id"}, expect=200)
    api.call("GET", f"/crm/v3/owners/{owner['userId']}", params={"idProperty": "userId"}, expect=200)
    missing = api.call("GET", "/crm/v3/owners/1", expect=404)
    assert missing["category"] == "OBJECT_NOT_FOUND"


def test_pipelines(emulator):
    api = ApiContract(emulator, "hubspot_crm_pipelines", TOKEN)
    listed = api.call("GET", "/crm/v3/pipelines/tickets", expect=200)
    assert [p["id"] for p in listed["results"]] == ["0"]
    api.call("GET", "/crm/v3/pipelines/deals/default", expect=200)
    api.call("GET", "/crm/v3/pipelines/deals/default/stages", expect=200)
    api.call("GET", "/crm/v3/pipelines/deals/default/stages/closedwon", expect=200)

    stage = {"label": "Escalated", "displayOrder": 0, "metadata": {"ticketState": "OPEN"}}
    created = api.call("POST", "/crm/v3/pipelines/tickets", json_body={"label": "Escalations", "displayOrder": 1, "stages": [stage]}, expect=201)
    base = f"/crm/v3/pipelines/tickets/{created['id']}"
    api.call("PATCH", base, json_body={"label": "Escalations team"}, expect=200)
    replaced = api.call(
        "PUT",
        base,
        json_body={"label": "Escalations", "displayOrder": 1, "stages": [stage, dict(stage, label="Resolved", metadata={"ticketState": "CLOSED"})]},
        expect=200,
    )
    assert replaced["stages"][0]["id"] == created["stages"][0]["id"], "a stage keeps its id when its label stays"
    added = api.call("POST", f"{base}/stages", json_body={"label": "Waiting", "displayOrder": 2, "metadata": {}}, expect=201)
    api.call("PATCH", f"{base}/stages/{added['id']}", json_body={"label": "Waiting on engineering", "metadata": {}}, expect=200)
    api.call("PUT", f"{base}/stages/{added['id']}", json_body={"label": "Waiting", "displayOrder": 3, "metadata": {"ticketState": "OPEN"}}, expect=200)
    api.call("DELETE", f"{base}/stages/{added['id']}", expect=204)
    invalid = api.call("POST", "/crm/v3/pipelines/tickets", json_body={"label": "Escalations", "displayOrder": 2, "stages": [stage]}, expect=400)
    assert invalid["category"] == "VALIDATION_ERROR"
    api.call("DELETE", base, expect=204)
    api.call("GET", "/crm/v3/pipelines/tickets/999", expect=404)
