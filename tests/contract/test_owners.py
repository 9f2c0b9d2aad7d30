"""Owners through HubSpot's official Python SDK: seeded and added owners, paging, the email
filter, deactivated owners, lookups by owner id and user id, and owner ids on records."""

import hubspot
import pytest
from hubspot.crm.contacts import SimplePublicObjectInput, SimplePublicObjectInputForCreate
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.owners.exceptions import ApiException

TOKEN = "pat-na1-owners"
READER = "pat-na1-no-owners"


@pytest.fixture
def emulator(start_emulator):
    return start_emulator("--seed", "3", "--token", TOKEN, "--token", f"{READER}=crm.objects.contacts.read")


def test_owners_page_filter_and_lookup(emulator):
    client = hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)
    owners_api = client.crm.owners.owners_api

    everyone = client.crm.owners.get_all()
    # The account's creator and the seeded sales team.
    assert [o.email for o in everyone] == [
        "admin@example.com",
        "grace.hopper@example.com",
        "alan.turing@example.com",
        "katherine.johnson@example.com",
    ]
    grace = everyone[1]
    assert (grace.first_name, grace.last_name, grace.type, grace.archived) == ("Grace", "Hopper", "PERSON", False)
    assert [(t.name, t.primary) for t in grace.teams] == [("Sales", True)]
    assert grace.user_id == grace.user_id_including_inactive

    first = owners_api.get_page(limit=3)
    assert len(first.results) == 3
    rest = owners_api.get_page(limit=3, after=first.paging.next.after)
    assert [o.id for o in rest.results] == [everyone[3].id] and rest.paging is None

    by_email = owners_api.get_page(email="Alan.Turing@example.com")
    assert [o.id for o in by_email.results] == [everyone[2].id]

    assert owners_api.get_by_id(owner_id=int(grace.id)).email == grace.email
    assert owners_api.get_by_id(owner_id=grace.user_id, id_property="userId").id == grace.id
    with pytest.raises(ApiException) as missing:
        owners_api.get_by_id(owner_id=1)
    assert missing.value.status == 404


def test_deactivated_owners_are_archived(emulator):
    client = hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)
    status, added = emulator.admin(
        "POST", "/_emulator/owners", {"email": "hedy@example.com", "firstName": "Hedy", "lastName": "Lamarr"}
    )
    assert status == 201
    emulator.admin("PATCH", f"/_emulator/owners/{added['id']}", {"archived": True})

    active = client.crm.owners.get_all()
    assert added["id"] not in [o.id for o in active]
    (archived,) = client.crm.owners.owners_api.get_page(archived=True).results
    assert (archived.id, archived.archived, archived.user_id) == (added["id"], True, None)
    assert archived.user_id_including_inactive == added["userId"]
    found = client.crm.owners.owners_api.get_by_id(owner_id=int(added["id"]), archived=True)
    assert found.email == "hedy@example.com"


def test_records_take_only_active_owner_ids(emulator):
    client = hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)
    owner = client.crm.owners.get_all()[1]
    contacts = client.crm.contacts.basic_api
    created = contacts.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"email": "owned@example.com", "hubspot_owner_id": owner.id}
        )
    )
    read = contacts.get_by_id(contact_id=created.id, properties=["hubspot_owner_id"])
    assert read.properties["hubspot_owner_id"] == owner.id

    # HubSpot refuses a user id, or any number that is not an active owner's id.
    for not_an_owner in [str(owner.user_id), "12345"]:
        with pytest.raises(ContactsApiException) as refused:
            contacts.update(
                contact_id=created.id,
                simple_public_object_input=SimplePublicObjectInput(properties={"hubspot_owner_id": not_an_owner}),
            )
        assert refused.value.status == 400
        assert "INVALID_OWNER_ID" in refused.value.body

    options = client.crm.properties.core_api.get_by_name(object_type="deals", property_name="hubspot_owner_id").options
    assert owner.id in [o.value for o in options]


def test_owners_need_their_scope(emulator):
    reader = hubspot.HubSpot(access_token=READER, host=emulator.base_url)
    with pytest.raises(ApiException) as denied:
        reader.crm.owners.owners_api.get_page()
    assert denied.value.status == 403
    assert "crm.objects.owners.read" in denied.value.body


def test_fixtures_add_owners(emulator):
    client = hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)
    status, loaded = emulator.admin(
        "POST", "/_emulator/fixtures", {"owners": [{"email": "radia@example.com", "firstName": "Radia", "lastName": "Perlman"}]}
    )
    assert status == 201
    (owner_id,) = loaded["owners"]
    assert client.crm.owners.owners_api.get_by_id(owner_id=int(owner_id)).last_name == "Perlman"
    with pytest.raises(Exception) as taken:
        emulator.admin("POST", "/_emulator/owners", {"email": "RADIA@example.com"})
    assert taken.value.code == 409
