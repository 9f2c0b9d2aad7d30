"""Custom (behavioral) events through HubSpot's official Python SDK and HubSpot's OpenAPI
descriptions: occurrences sent one by one and in a batch, refusals in HubSpot's error shape, and
the occurrences read back. The SDK has no client for event definitions, so they are made over
plain HTTP."""

import hubspot
import pytest
import requests
from hubspot.events.send import BatchedBehavioralEventHttpCompletionRequest, BehavioralEventHttpCompletionRequest
from hubspot.events.send.exceptions import ApiException
from openapi_contract import ApiContract

TOKEN = "pat-na1-custom-events"
EVENT = "pe62515_feature_used"


@pytest.fixture
def emulator(start_emulator):
    emulator = start_emulator("--token", TOKEN)
    answer = requests.post(
        emulator.base_url + "/events/v3/event-definitions",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={
            "label": "Feature used",
            "name": "feature_used",
            "primaryObject": "CONTACT",
            "propertyDefinitions": [
                {"name": "feature", "label": "Feature", "type": "string"},
                {"name": "plan", "label": "Plan", "type": "enumeration", "options": [{"label": "Pro", "value": "pro"}]},
            ],
        },
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["fullyQualifiedName"] == EVENT
    return emulator


def contact_id(emulator, email):
    status, created = emulator.admin("POST", "/_emulator/objects/contacts", {"properties": {"email": email}})
    assert status == 201
    return created["id"]


def test_the_sdk_sends_and_reads_occurrences(emulator):
    client = hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)
    contact = contact_id(emulator, "sdk@example.com")
    client.events.send.basic_api.send(
        behavioral_event_http_completion_request=BehavioralEventHttpCompletionRequest(
            event_name=EVENT,
            object_id=contact,
            occurred_at="2026-12-01T10:00:00Z",
            properties={"feature": "export", "plan": "pro"},
        )
    )
    client.events.send.batch_api.send(
        batched_behavioral_event_http_completion_request=BatchedBehavioralEventHttpCompletionRequest(
            inputs=[
                BehavioralEventHttpCompletionRequest(event_name=EVENT, email="sdk@example.com", properties={"feature": "share"}),
                BehavioralEventHttpCompletionRequest(event_name=EVENT, object_id=contact, properties={"feature": "import"}),
            ]
        )
    )
    with pytest.raises(ApiException) as refused:
        client.events.send.basic_api.send(
            behavioral_event_http_completion_request=BehavioralEventHttpCompletionRequest(
                event_name=EVENT, object_id=contact, properties={"plan": "enterprise"}
            )
        )
    assert refused.value.status == 400
    assert "enterprise" in refused.value.body

    page = client.events.events_api.get_page(object_type="contact", object_id=int(contact), sort=["ASCENDING"])
    features = [event.properties["feature"] for event in page.results]
    assert features[0] == "export"
    assert sorted(features) == ["export", "import", "share"]
    assert {event.event_type for event in page.results} == {EVENT}
    assert all(event.object_type == "CONTACT" and event.object_id == contact for event in page.results)

    status, timeline = emulator.admin("GET", f"/_emulator/timeline/contacts/{contact}")
    assert status == 200
    assert [entry["source"] for entry in timeline["results"]] == ["customEvent"] * 3


def test_answers_match_hubspots_openapi_descriptions(emulator):
    contact = contact_id(emulator, "spec@example.com")
    send = ApiContract(emulator, "hubspot_analytics_custom_behavioral_events", TOKEN)
    send.call("POST", "/events/v3/send", json_body={"eventName": EVENT, "objectId": contact, "properties": {"feature": "x"}}, expect=204)
    error = send.call("POST", "/events/v3/send", json_body={"eventName": EVENT, "objectId": contact, "properties": {"colour": "red"}}, expect=400)
    assert error["category"] == "VALIDATION_ERROR"
    events = ApiContract(emulator, "hubspot_events_events", TOKEN)
    page = events.call("GET", "/events/v3/events/", params={"objectType": "contact", "objectId": contact}, expect=200)
    assert [event["properties"]["feature"] for event in page["results"]] == ["x"]
