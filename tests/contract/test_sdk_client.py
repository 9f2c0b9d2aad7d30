"""HubSpot's official Python SDK, pointed at the emulator, calls it and reads its answers."""

import hubspot
import pytest
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import ApiException
from hubspot.crm.properties import (
    BatchInputPropertyCreate,
    BatchInputPropertyName,
    BatchReadInputPropertyName,
    PropertyCreate,
    PropertyName,
)
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

TOKEN = "pat-na1-contract-test"


@pytest.fixture
def emulator(start_emulator):
    return start_emulator("--seed", "25", "--token", TOKEN, "--token", "reader=crm.objects.contacts.read")


def sdk(emulator, token=TOKEN):
    return hubspot.HubSpot(access_token=token, host=emulator.base_url)


def test_contacts_pages_and_batch_read(emulator):
    client = sdk(emulator)
    page = client.crm.contacts.basic_api.get_page(limit=10, properties=["email", "firstname"])
    assert len(page.results) == 10
    assert page.paging.next.after
    first = page.results[0]
    assert first.id == "1"
    assert first.properties["email"] == "ada.lovelace1@analytical-engines.example"
    assert set(first.properties) == {"email", "firstname", "hs_object_id", "createdate", "lastmodifieddate"}
    assert first.created_at.tzinfo is not None

    everyone = client.crm.contacts.get_all(properties=["email"])
    assert len(everyone) == 25
    assert len({c.properties["email"] for c in everyone}) == 25

    batch = client.crm.contacts.batch_api.read(
        batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
            properties=["lastname"], inputs=[SimplePublicObjectId(id="3"), SimplePublicObjectId(id="999")]
        )
    )
    assert batch.status == "COMPLETE"
    assert [o.id for o in batch.results] == ["3"]
    assert set(batch.results[0].properties) == {"lastname", "hs_object_id", "createdate", "lastmodifieddate"}
    assert batch.num_errors == 1
    assert batch.errors[0].category == "OBJECT_NOT_FOUND"
    assert batch.errors[0].context["ids"] == ["999"]

    with_history = client.crm.contacts.basic_api.get_by_id(contact_id="2", properties_with_history=["email"])
    (seeded,) = with_history.properties_with_history["email"]
    assert seeded.value == "grace.hopper2@cobolworks.example"
    assert seeded.source_type == "IMPORT"
    assert seeded.timestamp.tzinfo is not None


def test_batch_upsert(emulator):
    client = sdk(emulator)
    result = client.crm.contacts.batch_api.upsert(
        batch_input_simple_public_object_batch_input_upsert=BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id="ada.lovelace1@analytical-engines.example", id_property="email", properties={"city": "Paris"}
                ),
                SimplePublicObjectBatchInputUpsert(
                    id="new.person@example.com", id_property="email", properties={"firstname": "New"}
                ),
            ]
        )
    )
    by_id = {o.id: o for o in result.results}
    assert by_id["1"].new is False
    assert by_id["1"].properties["city"] == "Paris"
    assert by_id["26"].new is True


def test_properties(emulator):
    client = sdk(emulator)
    properties = client.crm.properties.core_api.get_all(object_type="contacts").results
    email = next(p for p in properties if p.name == "email")
    assert (email.type, email.field_type, email.group_name) == ("string", "text", "contactinformation")
    assert email.hubspot_defined is True

    created = client.crm.properties.core_api.create(
        object_type="contacts",
        property_create=PropertyCreate(
            name="customer_number", label="Customer number", type="string", field_type="text",
            group_name="contactinformation", has_unique_value=True,
        ),
    )
    assert created.name == "customer_number"
    assert created.has_unique_value is True
    assert client.crm.properties.core_api.get_by_name(object_type="contacts", property_name="customer_number").label == "Customer number"


def test_property_batches(emulator):
    batch = sdk(emulator).crm.properties.batch_api

    def definition(name, type_="string", field_type="text"):
        return PropertyCreate(name=name, label=name, type=type_, field_type=field_type, group_name="contactinformation")

    created = batch.create(
        object_type="contacts",
        batch_input_property_create=BatchInputPropertyCreate(
            inputs=[definition("plan_code"), definition("seats", "number", "number"), definition("email")]
        ),
    )
    assert sorted(p.name for p in created.results) == ["plan_code", "seats"]
    (refused,) = created.errors
    assert (refused.category, refused.context) == ("OBJECT_ALREADY_EXISTS", {"name": ["email"]})

    read = batch.read(
        object_type="contacts",
        batch_read_input_property_name=BatchReadInputPropertyName(
            archived=False, inputs=[PropertyName(name="seats"), PropertyName(name="no_such_property")]
        ),
    )
    assert [p.type for p in read.results] == ["number"]
    assert read.errors[0].category == "OBJECT_NOT_FOUND"

    with pytest.raises(PropertiesApiException) as hubspot_defined:
        batch.archive(
            object_type="contacts",
            batch_input_property_name=BatchInputPropertyName(inputs=[PropertyName(name="seats"), PropertyName(name="email")]),
        )
    assert hubspot_defined.value.status == 400
    batch.archive(object_type="contacts", batch_input_property_name=BatchInputPropertyName(inputs=[PropertyName(name="seats")]))
    archived = batch.read(
        object_type="contacts",
        batch_read_input_property_name=BatchReadInputPropertyName(archived=True, inputs=[PropertyName(name="seats")]),
    )
    assert [p.archived for p in archived.results] == [True]


def test_errors_reach_the_sdk_as_hubspot_errors(emulator):
    with pytest.raises(ApiException) as unauthorized:
        sdk(emulator, token="wrong").crm.contacts.basic_api.get_page()
    assert unauthorized.value.status == 401
    assert '"category":"INVALID_AUTHENTICATION"' in unauthorized.value.body

    with pytest.raises(ApiException) as forbidden:
        sdk(emulator, token="reader").crm.contacts.basic_api.archive(contact_id="1")
    assert forbidden.value.status == 403
    assert '"requiredScopes":["crm.objects.contacts.write"]' in forbidden.value.body
    assert forbidden.value.headers["X-HubSpot-RateLimit-Max"] == "190"


def test_single_object_calls_and_search(emulator):
    client = sdk(emulator)
    contacts = client.crm.contacts
    created = contacts.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"email": "Sdk.User@Example.com", "firstname": "Sdk"}
        )
    )
    assert created.properties["email"] == "sdk.user@example.com"

    fetched = contacts.basic_api.get_by_id(
        contact_id="sdk.user@example.com", id_property="email", properties=["firstname"]
    )
    assert fetched.id == created.id
    assert fetched.properties["firstname"] == "Sdk"

    updated = contacts.basic_api.update(
        contact_id=created.id, simple_public_object_input=SimplePublicObjectInput(properties={"city": "Leiden"})
    )
    assert updated.properties["city"] == "Leiden"
    assert updated.updated_at >= created.updated_at

    found = contacts.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=[Filter(property_name="city", operator="EQ", value="leiden")])],
            properties=["email", "city"],
            limit=5,
        )
    )
    assert found.total == 1
    assert found.results[0].id == created.id

    contacts.basic_api.archive(contact_id=created.id)
    with pytest.raises(ApiException) as gone:
        contacts.basic_api.get_by_id(contact_id=created.id)
    assert gone.value.status == 404
    assert '"category":"OBJECT_NOT_FOUND"' in gone.value.body


def test_tier_flag_sizes_the_rate_limit(start_emulator):
    emulator = start_emulator("--tier", "free", "--token", TOKEN)
    page = sdk(emulator).crm.contacts.basic_api.get_page_with_http_info()
    headers = page[2]
    assert headers["X-HubSpot-RateLimit-Max"] == "100"
    assert headers["X-HubSpot-RateLimit-Daily"] == "250000"
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
