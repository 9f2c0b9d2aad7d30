"""Contact merge through HubSpot's official Python SDK, and the contact.merge webhook it causes."""

import json

import hubspot
import pytest
from hubspot.crm.contacts import PublicMergeInput, SimplePublicObjectInputForCreate
from hubspot.crm.contacts.exceptions import ApiException

TOKEN = "pat-na1-merge"


def test_merge_keeps_the_primary_and_resolves_the_merged_id(start_emulator, webhook_target):
    emulator = start_emulator(
        "--token", TOKEN, "--webhook-url", webhook_target.url("/hooks"), "--subscription", "contact.merge"
    )
    client = hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)
    create = client.crm.contacts.basic_api.create
    primary = create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"email": "ada@example.com", "firstname": "Ada"}
        )
    ).id
    merged = create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"email": "countess@example.com", "firstname": "Augusta", "lastname": "Lovelace"}
        )
    ).id
    company = client.crm.companies.basic_api.create(
        simple_public_object_input_for_create={"properties": {"name": "Analytical Engines"}}
    ).id
    client.crm.associations.v4.basic_api.create_default(
        from_object_type="contacts", from_object_id=merged, to_object_type="companies", to_object_id=company
    )

    result = client.crm.contacts.basic_api.merge(
        public_merge_input=PublicMergeInput(primary_object_id=primary, object_id_to_merge=merged)
    )
    assert result.id == primary
    # The primary's values stand; what it lacked comes from the merged record.
    assert (result.properties["email"], result.properties["firstname"], result.properties["lastname"]) == (
        "ada@example.com",
        "Ada",
        "Lovelace",
    )

    via_old_id = client.crm.contacts.basic_api.get_by_id(contact_id=merged, properties=["lastname"])
    assert via_old_id.id == primary
    assert [c.id for c in client.crm.contacts.get_all()] == [primary]
    moved = client.crm.associations.v4.basic_api.get_page(
        object_type="contacts", object_id=primary, to_object_type="companies"
    )
    assert [str(r.to_object_id) for r in moved.results] == [company]

    (event,) = json.loads(webhook_target.next_request()["body"])
    assert event["subscriptionType"] == "contact.merge"
    assert event["primaryObjectId"] == int(primary)
    assert event["mergedObjectIds"] == [int(merged)]
    assert event["newObjectId"] == int(primary)

    with pytest.raises(ApiException) as again:
        client.crm.contacts.basic_api.merge(
            public_merge_input=PublicMergeInput(primary_object_id=primary, object_id_to_merge=primary)
        )
    assert again.value.status == 400
    with pytest.raises(ApiException) as unknown:
        client.crm.contacts.basic_api.merge(
            public_merge_input=PublicMergeInput(primary_object_id=primary, object_id_to_merge="999999")
        )
    assert unknown.value.status == 404
