"""Tickets through HubSpot's official Python SDK: a standard object type like contacts."""

import json

import hubspot
import pytest
from hubspot.crm.properties import PropertyCreate
from hubspot.crm.tickets import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.tickets.exceptions import ApiException

TOKEN = "pat-na1-tickets"


@pytest.fixture
def emulator(start_emulator):
    return start_emulator("--token", TOKEN, "--token", "contacts-only=crm.objects.contacts.read")


def sdk(emulator, token=TOKEN):
    return hubspot.HubSpot(access_token=token, host=emulator.base_url)


def test_ticket_lifecycle_on_v3_paths(emulator):
    client = sdk(emulator)
    created = client.crm.tickets.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"subject": "Printer on fire", "hs_pipeline_stage": "1", "hs_ticket_priority": "HIGH"}
        )
    )
    assert created.properties["subject"] == "Printer on fire"
    # The pipeline defaults to the account's default one.
    read = client.crm.tickets.basic_api.get_by_id(ticket_id=created.id)
    assert read.properties["hs_pipeline"] == "0"
    assert read.properties["hs_pipeline_stage"] == "1"
    assert {"subject", "content", "hs_ticket_priority", "hs_lastmodifieddate", "hs_object_id"} <= set(read.properties)

    updated = client.crm.tickets.basic_api.update(
        ticket_id=created.id, simple_public_object_input=SimplePublicObjectInput(properties={"hs_pipeline_stage": "4"})
    )
    assert updated.properties["hs_pipeline_stage"] == "4"

    found = client.crm.tickets.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=[Filter(property_name="hs_pipeline_stage", operator="EQ", value="4")])]
        )
    )
    assert found.total == 1 and found.results[0].id == created.id

    client.crm.tickets.basic_api.archive(ticket_id=created.id)
    with pytest.raises(ApiException) as gone:
        client.crm.tickets.basic_api.get_by_id(ticket_id=created.id)
    assert gone.value.status == 404


def test_ticket_create_needs_a_known_stage(emulator):
    client = sdk(emulator)
    with pytest.raises(ApiException) as missing:
        client.crm.tickets.basic_api.create(
            simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties={"subject": "No status"})
        )
    assert missing.value.status == 400
    assert "hs_pipeline_stage" in json.loads(missing.value.body)["message"]
    with pytest.raises(ApiException) as unknown:
        client.crm.tickets.basic_api.create(
            simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
                properties={"subject": "Odd status", "hs_pipeline_stage": "99"}
            )
        )
    assert "INVALID_OPTION" in json.loads(unknown.value.body)["message"]


def test_tickets_on_date_versioned_paths_and_batches(emulator):
    client = sdk(emulator)
    batch = client.crm.tickets.batch_api.create(
        batch_input_simple_public_object_batch_input_for_create=BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                SimplePublicObjectBatchInputForCreate(properties={"subject": f"T{i}", "hs_pipeline_stage": "2"})
                for i in range(3)
            ]
        )
    )
    assert len(batch.results) == 3
    # The SDK speaks v3; the date-versioned path answers the same.
    page = client.api_request(
        {
            "method": "GET",
            "base_url": emulator.base_url,
            "path": "/crm/objects/2026-03/tickets",
            "qs": {"properties": "subject", "limit": 2},
        }
    ).json()
    assert [t["properties"]["subject"] for t in page["results"]] == ["T0", "T1"]
    assert page["paging"]["next"]["after"]


def test_ticket_properties_and_the_tickets_scope(emulator):
    client = sdk(emulator)
    stages = client.crm.properties.core_api.get_by_name(object_type="tickets", property_name="hs_pipeline_stage")
    assert [(o.value, o.label) for o in stages.options] == [
        ("1", "New"),
        ("2", "Waiting on contact"),
        ("3", "Waiting on us"),
        ("4", "Closed"),
    ]
    created = client.crm.properties.core_api.create(
        object_type="0-5",
        property_create=PropertyCreate(
            name="severity", label="Severity", type="number", field_type="number", group_name="ticketinformation"
        ),
    )
    assert created.name == "severity"

    with pytest.raises(ApiException) as denied:
        sdk(emulator, "contacts-only").crm.tickets.basic_api.get_page()
    assert denied.value.status == 403
    body = json.loads(denied.value.body)
    assert body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredScopes"] == ["tickets"]
