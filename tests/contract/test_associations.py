"""Associations v4 through HubSpot's official Python SDK."""

import json

import hubspot
import pytest
from hubspot.crm.associations.v4 import (
    AssociationSpec,
    BatchInputPublicAssociationMultiArchive,
    BatchInputPublicAssociationMultiPost,
    BatchInputPublicDefaultAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicAssociationMultiArchive,
    PublicAssociationMultiPost,
    PublicDefaultAssociationMultiPost,
    PublicFetchAssociationsBatchRequest,
    PublicObjectId,
)
from hubspot.crm.associations.v4.exceptions import ApiException
from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyInput
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as ContactInput

TOKEN = "pat-na1-associations"


@pytest.fixture
def emulator(start_emulator):
    return start_emulator("--token", TOKEN, "--token", "contacts-only=crm.objects.contacts.read,crm.objects.contacts.write")


def sdk(emulator, token=TOKEN):
    return hubspot.HubSpot(access_token=token, host=emulator.base_url)


def contact(client, n):
    return client.crm.contacts.basic_api.create(
        simple_public_object_input_for_create=ContactInput(properties={"email": f"c{n}@example.com"})
    ).id


def company(client, n):
    return client.crm.companies.basic_api.create(
        simple_public_object_input_for_create=CompanyInput(properties={"name": f"Company {n}"})
    ).id


def test_default_and_labelled_associations(emulator):
    client = sdk(emulator)
    v4 = client.crm.associations.v4
    person, acme, globex = contact(client, 1), company(client, 1), company(client, 2)

    default = v4.basic_api.create_default(
        from_object_type="contacts", from_object_id=person, to_object_type="companies", to_object_id=acme
    )
    assert default.status == "COMPLETE"
    (result,) = default.results
    assert (result.association_spec.association_category, result.association_spec.association_type_id) == (
        "HUBSPOT_DEFINED",
        279,
    )

    labelled = v4.basic_api.create(
        object_type="contacts",
        object_id=person,
        to_object_type="companies",
        to_object_id=globex,
        association_spec=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)],
    )
    assert labelled.labels == ["Primary"]
    assert labelled.from_object_type_id == "0-1" and labelled.to_object_type_id == "0-2"

    page = v4.basic_api.get_page(object_type="contacts", object_id=person, to_object_type="companies")
    by_company = {str(r.to_object_id): {(t.type_id, t.label) for t in r.association_types} for r in page.results}
    assert by_company == {acme: {(279, None)}, globex: {(1, "Primary")}}

    # The other side sees the inverse types.
    back = v4.basic_api.get_page(object_type="companies", object_id=globex, to_object_type="contacts")
    assert {t.type_id for t in back.results[0].association_types} == {2}

    # A contact has one primary company: naming another one moves it.
    v4.basic_api.create(
        object_type="contacts",
        object_id=person,
        to_object_type="companies",
        to_object_id=acme,
        association_spec=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)],
    )
    page = v4.basic_api.get_page(object_type="contacts", object_id=person, to_object_type="companies")
    by_company = {str(r.to_object_id): {t.type_id for t in r.association_types} for r in page.results}
    assert by_company == {acme: {279, 1}}

    labels = client.crm.associations.v4.schema.definitions_api.get_all(
        from_object_type="contacts", to_object_type="companies"
    )
    assert [(t.type_id, t.label, t.category) for t in labels.results] == [
        (279, None, "HUBSPOT_DEFINED"),
        (1, "Primary", "HUBSPOT_DEFINED"),
    ]

    v4.basic_api.archive(object_type="contacts", object_id=person, to_object_type="companies", to_object_id=acme)
    assert v4.basic_api.get_page(object_type="contacts", object_id=person, to_object_type="companies").results == []

    with pytest.raises(ApiException) as bad_type:
        v4.basic_api.create(
            object_type="contacts",
            object_id=person,
            to_object_type="companies",
            to_object_id=acme,
            association_spec=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=3)],
        )
    assert bad_type.value.status == 400


def test_paging_batches_and_deletion(emulator):
    client = sdk(emulator)
    v4 = client.crm.associations.v4
    person = contact(client, 1)
    companies = [company(client, n) for n in range(5)]
    v4.batch_api.create_default(
        from_object_type="contacts",
        to_object_type="companies",
        batch_input_public_default_association_multi_post=BatchInputPublicDefaultAssociationMultiPost(
            inputs=[
                PublicDefaultAssociationMultiPost(_from=PublicObjectId(id=person), to=PublicObjectId(id=c))
                for c in companies[:3]
            ]
        ),
    )
    created = v4.batch_api.create(
        from_object_type="contacts",
        to_object_type="companies",
        batch_input_public_association_multi_post=BatchInputPublicAssociationMultiPost(
            inputs=[
                PublicAssociationMultiPost(
                    _from=PublicObjectId(id=person),
                    to=PublicObjectId(id=c),
                    types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=279)],
                )
                for c in companies[3:]
            ]
        ),
    )
    assert len(created.results) == 2

    first = v4.basic_api.get_page(object_type="contacts", object_id=person, to_object_type="companies", limit=2)
    assert len(first.results) == 2 and first.paging.next.after
    seen = [str(r.to_object_id) for r in first.results]
    after = first.paging.next.after
    while after:
        page = v4.basic_api.get_page(
            object_type="contacts", object_id=person, to_object_type="companies", limit=2, after=after
        )
        seen += [str(r.to_object_id) for r in page.results]
        after = page.paging.next.after if page.paging else None
    assert seen == companies

    read = v4.batch_api.get_page(
        from_object_type="contacts",
        to_object_type="companies",
        batch_input_public_fetch_associations_batch_request=BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[PublicFetchAssociationsBatchRequest(id=person)]
        ),
    )
    assert [str(t.to_object_id) for t in read.results[0].to] == companies

    v4.batch_api.archive(
        from_object_type="contacts",
        to_object_type="companies",
        batch_input_public_association_multi_archive=BatchInputPublicAssociationMultiArchive(
            inputs=[PublicAssociationMultiArchive(_from=PublicObjectId(id=person), to=[PublicObjectId(id=companies[0])])]
        ),
    )
    # Deleting a record removes its associations.
    client.crm.companies.basic_api.archive(company_id=companies[1])
    page = v4.basic_api.get_page(object_type="contacts", object_id=person, to_object_type="companies")
    assert [str(r.to_object_id) for r in page.results] == companies[2:]


def test_association_scopes(emulator):
    client = sdk(emulator)
    person, acme = contact(client, 1), company(client, 1)
    with pytest.raises(ApiException) as denied:
        sdk(emulator, "contacts-only").crm.associations.v4.basic_api.create_default(
            from_object_type="contacts", from_object_id=person, to_object_type="companies", to_object_id=acme
        )
    body = json.loads(denied.value.body)
    assert denied.value.status == 403
    assert body["errors"][0]["context"]["requiredScopes"] == ["crm.objects.companies.read"]
