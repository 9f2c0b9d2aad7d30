"""Merges through HubSpot's official Python SDK, and the merge webhooks they cause. Contacts and
companies merge into a new record with a new id; other types keep the primary's id."""

import json

import hubspot
import pytest
from hubspot.crm.contacts import PublicMergeInput, SimplePublicObjectInputForCreate
from hubspot.crm.contacts.exceptions import ApiException

TOKEN = "pat-na1-merge"


def test_a_contact_merge_makes_a_new_record_that_both_ids_resolve_to(start_emulator, webhook_target):
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
    assert result.id not in (primary, merged)
    # The primary's values stand; what it lacked comes from the merged record.
    assert (result.properties["email"], result.properties["firstname"], result.properties["lastname"]) == (
        "ada@example.com",
        "Ada",
        "Lovelace",
    )

    for old_id in (primary, merged):
        via_old_id = client.crm.contacts.basic_api.get_by_id(
            contact_id=old_id, properties=["lastname", "hs_merged_object_ids"]
        )
        assert via_old_id.id == result.id
        assert via_old_id.properties["hs_merged_object_ids"] == f"{primary};{merged}"
    assert [c.id for c in client.crm.contacts.get_all()] == [result.id]
    moved = client.crm.associations.v4.basic_api.get_page(
        object_type="contacts", object_id=result.id, to_object_type="companies"
    )
    assert [str(r.to_object_id) for r in moved.results] == [company]

    (event,) = json.loads(webhook_target.next_request()["body"])
    assert event["subscriptionType"] == "contact.merge"
    assert event["primaryObjectId"] == int(primary)
    assert event["mergedObjectIds"] == [int(merged)]
    assert event["newObjectId"] == int(result.id)

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


def test_a_deal_merge_keeps_the_primary_id(start_emulator):
    emulator = start_emulator("--token", TOKEN)
    client = hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)
    create = client.crm.deals.basic_api.create
    primary = create(simple_public_object_input_for_create={"properties": {"dealname": "Engine"}}).id
    merged = create(simple_public_object_input_for_create={"properties": {"dealname": "Mill", "amount": "100"}}).id
    result = client.crm.deals.basic_api.merge(
        public_merge_input={"primaryObjectId": primary, "objectIdToMerge": merged}
    )
    assert (result.id, result.properties["dealname"], result.properties["amount"]) == (primary, "Engine", "100")
    via_merged = client.crm.deals.basic_api.get_by_id(deal_id=merged, properties=["hs_merged_object_ids"])
    assert (via_merged.id, via_merged.properties["hs_merged_object_ids"]) == (primary, merged)
