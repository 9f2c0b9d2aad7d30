"""HubSpot's standard properties, as HubSpot's official Python SDK reads and writes them."""

import hubspot
import pytest
from hubspot.crm.contacts import SimplePublicObjectInputForCreate
from hubspot.crm.contacts.exceptions import ApiException

TOKEN = "pat-na1-standard-properties"

# What integrations commonly map, per object type: each must exist and take values.
MAPPED = {
    "contacts": {"jobtitle", "mobilephone", "address", "state", "zip", "country", "hs_lead_status", "hubspot_owner_id"},
    "companies": {"website", "description", "country", "numberofemployees", "annualrevenue", "hubspot_owner_id"},
    "deals": {"dealtype", "hubspot_owner_id"},
    "tickets": {"hubspot_owner_id"},
}


@pytest.fixture
def client(start_emulator):
    emulator = start_emulator("--token", TOKEN)
    return hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)


@pytest.mark.parametrize("object_type", sorted(MAPPED))
def test_the_properties_api_lists_the_standard_catalogue(client, object_type):
    properties = {p.name: p for p in client.crm.properties.core_api.get_all(object_type=object_type).results}
    groups = {g.name for g in client.crm.properties.groups_api.get_all(object_type=object_type).results}
    assert MAPPED[object_type] <= set(properties)
    for name in MAPPED[object_type]:
        assert not properties[name].modification_metadata.read_only_value, name
    for p in properties.values():
        assert p.hubspot_defined and p.modification_metadata.read_only_definition, p.name
        assert p.group_name in groups, p.name
    record_id = properties["hs_object_id"]
    assert (record_id.type, record_id.modification_metadata.read_only_value) == ("number", True)
    owner = properties["hubspot_owner_id"]
    assert (owner.type, owner.field_type, owner.external_options) == ("enumeration", "select", True)


def test_contact_enumerations_carry_hubspots_options(client):
    get = client.crm.properties.core_api.get_by_name
    lead_status = get(object_type="contacts", property_name="hs_lead_status")
    assert [o.value for o in lead_status.options] == [
        "NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING"
    ]
    lifecycle = get(object_type="contacts", property_name="lifecyclestage")
    assert [(o.value, o.label) for o in lifecycle.options][:3] == [
        ("subscriber", "Subscriber"), ("lead", "Lead"), ("marketingqualifiedlead", "Marketing Qualified Lead")
    ]
    domain = get(object_type="contacts", property_name="hs_email_domain")
    assert domain.calculated and domain.modification_metadata.read_only_value


def test_a_contact_takes_standard_properties(client):
    created = client.crm.contacts.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={
                "email": "grace@example.com",
                "jobtitle": "Rear Admiral",
                "mobilephone": "+1 555 0199",
                "state": "Virginia",
                "hs_lead_status": "IN_PROGRESS",
            }
        )
    )
    read = client.crm.contacts.basic_api.get_by_id(contact_id=created.id, properties=["jobtitle", "hs_lead_status", "zip"])
    assert read.properties["jobtitle"] == "Rear Admiral"
    assert read.properties["hs_lead_status"] == "IN_PROGRESS"
    assert read.properties["zip"] is None

    with pytest.raises(ApiException) as unknown_option:
        client.crm.contacts.basic_api.create(
            simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
                properties={"email": "alan@example.com", "hs_lead_status": "SOMEDAY"}
            )
        )
    assert unknown_option.value.status == 400
    assert "INVALID_OPTION" in unknown_option.value.body
    with pytest.raises(ApiException) as read_only:
        client.crm.contacts.basic_api.create(
            simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
                properties={"email": "alan@example.com", "hs_email_domain": "example.com"}
            )
        )
    assert read_only.value.status == 400
    assert "READ_ONLY_VALUE" in read_only.value.body
