"""Custom object schemas and custom objects through HubSpot's official Python SDK."""

import json

import hubspot
import pytest
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsApiException
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.exceptions import ApiException as ObjectsApiException
from hubspot.crm.properties import PropertyCreate
from hubspot.crm.schemas import ObjectSchemaEgg, ObjectTypeDefinitionLabels, ObjectTypeDefinitionPatch
from hubspot.crm.schemas import AssociationDefinitionEgg, ObjectTypePropertyCreate
from hubspot.crm.schemas.exceptions import ApiException as SchemasApiException

TOKEN = "pat-na1-custom"
PORTAL_ID = 62515


@pytest.fixture
def emulator(start_emulator):
    return start_emulator("--token", TOKEN, "--token", "contacts-only=crm.objects.contacts.read")


def sdk(emulator, token=TOKEN):
    return hubspot.HubSpot(access_token=token, host=emulator.base_url)


def define_cars(client):
    return client.crm.schemas.core_api.create(
        object_schema_egg=ObjectSchemaEgg(
            name="cars",
            labels=ObjectTypeDefinitionLabels(singular="Car", plural="Cars"),
            required_properties=["vin"],
            searchable_properties=["model", "vin"],
            primary_display_property="model",
            secondary_display_properties=["year"],
            associated_objects=["CONTACT"],
            properties=[
                ObjectTypePropertyCreate(name="vin", label="VIN", type="string", field_type="text", has_unique_value=True),
                ObjectTypePropertyCreate(name="model", label="Model", type="string", field_type="text"),
                ObjectTypePropertyCreate(name="year", label="Year", type="number", field_type="number"),
            ],
        )
    )


def test_schema_lifecycle(emulator):
    client = sdk(emulator)
    created = define_cars(client)
    assert created.object_type_id.startswith("2-")
    assert created.fully_qualified_name == f"p{PORTAL_ID}_cars"
    assert created.labels.plural == "Cars"
    assert created.required_properties == ["vin"]
    assert created.primary_display_property == "model"
    assert {"vin", "model", "year", "hs_object_id", "hs_createdate"} <= {p.name for p in created.properties}
    assert [(a.from_object_type_id, a.to_object_type_id) for a in created.associations] == [
        (created.object_type_id, "0-1")
    ]

    listed = client.crm.schemas.core_api.get_all()
    assert [s.name for s in listed.results] == ["cars"]
    by_name = client.crm.schemas.core_api.get_by_id(object_type=f"p{PORTAL_ID}_cars")
    assert by_name.id == created.id

    patched = client.crm.schemas.core_api.update(
        object_type=created.object_type_id,
        object_type_definition_patch=ObjectTypeDefinitionPatch(
            labels=ObjectTypeDefinitionLabels(singular="Automobile", plural="Automobiles"),
            searchable_properties=["model"],
        ),
    )
    assert patched.labels.singular == "Automobile"
    assert patched.searchable_properties == ["model"]

    with pytest.raises(SchemasApiException) as duplicate:
        define_cars(client)
    assert duplicate.value.status == 409

    client.crm.schemas.core_api.archive(object_type=created.object_type_id)
    assert client.crm.schemas.core_api.get_all().results == []
    assert [s.name for s in client.crm.schemas.core_api.get_all(archived=True).results] == ["cars"]
    with pytest.raises(SchemasApiException) as gone:
        client.crm.schemas.core_api.get_by_id(object_type=created.object_type_id)
    assert gone.value.status == 404


def test_schema_validation(emulator):
    client = sdk(emulator)
    with pytest.raises(SchemasApiException) as bad:
        client.crm.schemas.core_api.create(
            object_schema_egg=ObjectSchemaEgg(
                name="boats",
                labels=ObjectTypeDefinitionLabels(singular="Boat", plural="Boats"),
                required_properties=["hull"],
                associated_objects=[],
                properties=[ObjectTypePropertyCreate(name="length", label="Length", type="number", field_type="text")],
            )
        )
    assert bad.value.status == 400
    codes = {e["code"] for e in json.loads(bad.value.body)["errors"]}
    assert codes == {"INVALID_FIELD_TYPE", "INVALID_PROPERTY"}


def test_custom_objects_through_every_object_endpoint(emulator):
    client = sdk(emulator)
    schema = define_cars(client)
    type_id, fqn = schema.object_type_id, schema.fully_qualified_name

    car = client.crm.objects.basic_api.create(
        object_type=fqn,
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"vin": "1HGCM82633A004352", "model": "Accord", "year": "2003"}
        ),
    )
    read = client.crm.objects.basic_api.get_by_id(object_type=type_id, object_id=car.id, properties=["model", "year"])
    assert read.properties["model"] == "Accord"
    assert {"hs_object_id", "hs_createdate", "hs_lastmodifieddate"} <= set(read.properties)
    by_vin = client.crm.objects.basic_api.get_by_id(
        object_type="cars", object_id="1HGCM82633A004352", id_property="vin", properties=["year"]
    )
    assert by_vin.id == car.id

    client.crm.objects.basic_api.update(
        object_type=type_id, object_id=car.id, simple_public_object_input=SimplePublicObjectInput(properties={"year": "2004"})
    )
    with pytest.raises(ObjectsApiException) as missing_vin:
        client.crm.objects.basic_api.create(
            object_type=type_id,
            simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties={"model": "Civic"}),
        )
    assert missing_vin.value.status == 400 and "vin" in json.loads(missing_vin.value.body)["message"]

    batch = client.crm.objects.batch_api.create(
        object_type=type_id,
        batch_input_simple_public_object_batch_input_for_create=BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                SimplePublicObjectBatchInputForCreate(properties={"vin": f"VIN{i}", "model": f"Model {i}"}) for i in range(3)
            ]
        ),
    )
    assert len(batch.results) == 3
    read_back = client.crm.objects.batch_api.read(
        object_type=fqn,
        batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
            properties=["year"], inputs=[SimplePublicObjectId(id=car.id)]
        ),
    )
    assert read_back.results[0].properties["year"] == "2004"

    found = client.crm.objects.search_api.do_search(
        object_type=fqn, public_object_search_request=PublicObjectSearchRequest(query="accord", properties=["model"])
    )
    assert [o.id for o in found.results] == [car.id]
    assert len(client.crm.objects.basic_api.get_page(object_type=type_id, limit=100).results) == 4

    client.crm.properties.core_api.create(
        object_type=fqn,
        property_create=PropertyCreate(
            name="color", label="Color", type="string", field_type="text", group_name="custom_object_information"
        ),
    )
    names = {p.name for p in client.crm.properties.core_api.get_all(object_type=type_id).results}
    assert {"vin", "model", "year", "color"} <= names

    with pytest.raises(SchemasApiException) as in_use:
        client.crm.schemas.core_api.archive(object_type=type_id)
    assert in_use.value.status == 400


def test_custom_object_scopes(emulator):
    define_cars(sdk(emulator))
    reader = sdk(emulator, "contacts-only")
    with pytest.raises(SchemasApiException) as schemas_denied:
        reader.crm.schemas.core_api.get_all()
    body = json.loads(schemas_denied.value.body)
    assert schemas_denied.value.status == 403 and body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredScopes"] == ["crm.schemas.custom.read"]
    with pytest.raises(ObjectsApiException) as objects_denied:
        reader.crm.objects.basic_api.get_page(object_type=f"p{PORTAL_ID}_cars")
    assert json.loads(objects_denied.value.body)["errors"][0]["context"]["requiredScopes"] == [
        "crm.objects.custom.read"
    ]


def test_schema_associations_let_records_associate(emulator):
    client = sdk(emulator)
    schema = define_cars(client)
    type_id = schema.object_type_id
    car = client.crm.objects.basic_api.create(
        object_type=type_id, simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties={"vin": "A1"})
    ).id
    owner = client.crm.objects.basic_api.create(
        object_type="contacts",
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties={"email": "o@example.com"}),
    ).id
    company = client.crm.objects.basic_api.create(
        object_type="companies",
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties={"name": "Fleet"}),
    ).id
    v4 = client.crm.associations.v4.basic_api

    # associatedObjects gave the contact association at creation.
    contact_link = v4.create_default(
        from_object_type=type_id, from_object_id=car, to_object_type="contacts", to_object_id=owner
    ).results[0]
    assert contact_link.association_spec.association_category == "USER_DEFINED"
    back = v4.get_page(object_type="contacts", object_id=owner, to_object_type=type_id)
    assert [str(r.to_object_id) for r in back.results] == [car]

    with pytest.raises(AssociationsApiException) as not_yet:
        v4.create_default(from_object_type=type_id, from_object_id=car, to_object_type="companies", to_object_id=company)
    assert not_yet.value.status == 400
    definition = client.crm.schemas.core_api.create_association(
        object_type=type_id,
        association_definition_egg=AssociationDefinitionEgg(
            from_object_type_id=type_id, to_object_type_id="0-2", name="car_to_company"
        ),
    )
    assert (definition.from_object_type_id, definition.to_object_type_id) == (type_id, "0-2")
    v4.create_default(from_object_type=type_id, from_object_id=car, to_object_type="companies", to_object_id=company)
    assert len(client.crm.schemas.core_api.get_by_id(object_type=type_id).associations) == 2

    client.crm.schemas.core_api.archive_association(object_type=type_id, association_identifier=definition.id)
    assert [a.to_object_type_id for a in client.crm.schemas.core_api.get_by_id(object_type=type_id).associations] == [
        "0-1"
    ]


def test_a_property_the_schema_uses_cannot_be_archived(emulator):
    from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

    client = sdk(emulator)
    cars = define_cars(client)
    with pytest.raises(PropertiesApiException) as refused:
        client.crm.properties.core_api.archive(object_type=cars.object_type_id, property_name="vin")
    assert refused.value.status == 400
    body = json.loads(refused.value.body)
    assert body["category"] == "VALIDATION_ERROR" and "in use" in body["message"]
    client.crm.properties.core_api.create(
        object_type=cars.object_type_id,
        property_create=PropertyCreate(name="color", label="Color", type="string", field_type="text", group_name="custom_object_information"),
    )
    client.crm.properties.core_api.archive(object_type=cars.object_type_id, property_name="color")
