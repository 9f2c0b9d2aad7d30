"""Timeline templates, tokens and events through HubSpot's official Python SDK: templates with
the developer API key, events with a bearer token."""

import json

import hubspot
import pytest
from hubspot.crm.timeline import (
    BatchInputTimelineEvent,
    TimelineEvent,
    TimelineEventTemplateCreateRequest,
    TimelineEventTemplateToken,
    TimelineEventTemplateTokenOption,
    TimelineEventTemplateTokenUpdateRequest,
    TimelineEventTemplateUpdateRequest,
)
from hubspot.crm.timeline.exceptions import ApiException

DEV_KEY = "contract-developer-key"
TOKEN = "pat-na1-timeline"
APP_ID = 54321


@pytest.fixture
def emulator(start_emulator):
    return start_emulator("--developer-api-key", DEV_KEY, "--token", TOKEN)


def developer(emulator):
    return hubspot.HubSpot(api_key=DEV_KEY, host=emulator.base_url).crm.timeline


def app(emulator):
    return hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)


def level_token():
    return TimelineEventTemplateToken(
        name="level",
        label="Level",
        type="enumeration",
        options=[
            TimelineEventTemplateTokenOption(label="Beginner", value="beginner"),
            TimelineEventTemplateTokenOption(label="Expert", value="expert"),
        ],
    )


def create_template(emulator):
    return developer(emulator).templates_api.create(
        app_id=APP_ID,
        timeline_event_template_create_request=TimelineEventTemplateCreateRequest(
            name="Webinar registration",
            object_type="contacts",
            header_template="Registered for {{webinarName}}",
            detail_template="Level {{level}}",
            tokens=[
                TimelineEventTemplateToken(
                    name="webinarName", label="Webinar", type="string", object_property_name="website"
                ),
                level_token(),
            ],
        ),
    )


def test_templates_and_tokens_lifecycle(emulator):
    api = developer(emulator)
    template = create_template(emulator)
    assert template.object_type == "contacts"
    assert [t.name for t in template.tokens] == ["webinarName", "level"]
    assert template.tokens[1].options[1].value == "expert"
    assert api.templates_api.get_by_id(event_template_id=template.id, app_id=APP_ID).name == "Webinar registration"
    assert [t.id for t in api.templates_api.get_all(app_id=APP_ID).results] == [template.id]

    token = api.tokens_api.create(
        event_template_id=template.id,
        app_id=APP_ID,
        timeline_event_template_token=TimelineEventTemplateToken(name="seats", label="Seats", type="number"),
    )
    assert (token.name, token.type) == ("seats", "number")
    with pytest.raises(ApiException) as twice:
        api.tokens_api.create(
            event_template_id=template.id,
            app_id=APP_ID,
            timeline_event_template_token=TimelineEventTemplateToken(name="seats", label="Seats", type="number"),
        )
    assert twice.value.status == 409
    renamed = api.tokens_api.update(
        event_template_id=template.id,
        token_name="seats",
        app_id=APP_ID,
        timeline_event_template_token_update_request=TimelineEventTemplateTokenUpdateRequest(label="Seats taken"),
    )
    assert (renamed.label, renamed.type) == ("Seats taken", "number")
    api.tokens_api.archive(event_template_id=template.id, token_name="seats", app_id=APP_ID)

    updated = api.templates_api.update(
        event_template_id=template.id,
        app_id=APP_ID,
        timeline_event_template_update_request=TimelineEventTemplateUpdateRequest(
            id=template.id, name="Webinar sign-up", header_template="Signed up", tokens=[level_token()]
        ),
    )
    assert (updated.name, [t.name for t in updated.tokens]) == ("Webinar sign-up", ["level"])

    api.templates_api.archive(event_template_id=template.id, app_id=APP_ID)
    with pytest.raises(ApiException) as gone:
        api.templates_api.get_by_id(event_template_id=template.id, app_id=APP_ID)
    assert gone.value.status == 404


def test_templates_need_the_developer_key(emulator):
    wrong = hubspot.HubSpot(api_key="not-the-key", host=emulator.base_url).crm.timeline
    with pytest.raises(ApiException) as refused:
        wrong.templates_api.get_all(app_id=APP_ID)
    assert refused.value.status == 401
    assert json.loads(refused.value.body)["category"] == "INVALID_AUTHENTICATION"


def test_events_create_read_render_and_stamp_properties(emulator):
    template = create_template(emulator)
    client = app(emulator)
    events = client.crm.timeline.events_api
    created = events.create(
        timeline_event=TimelineEvent(
            event_template_id=template.id,
            id="reg-1",
            email="attendee@example.com",
            tokens={"webinarName": "rust101.example", "level": "expert"},
            extra_data={"seat": "A4"},
        )
    )
    assert (created.id, created.object_type, created.tokens["level"]) == ("reg-1", "contacts", "expert")
    assert created.timestamp is not None and created.created_at is not None

    # The event named a contact by an email nobody had: it now exists, with the stamped property.
    contact = client.crm.contacts.basic_api.get_by_id(contact_id=created.object_id, properties=["email", "website"])
    assert contact.properties["email"] == "attendee@example.com"
    assert contact.properties["website"] == "rust101.example"

    read = events.get_by_id(event_template_id=template.id, event_id="reg-1")
    assert read.object_id == created.object_id and read.extra_data == {"seat": "A4"}
    assert events.get_detail_by_id(event_template_id=template.id, event_id="reg-1").details == "Level expert"
    assert events.get_render_by_id(event_template_id=template.id, event_id="reg-1") == "Registered for rust101.example"

    with pytest.raises(ApiException) as duplicate:
        events.create(timeline_event=TimelineEvent(event_template_id=template.id, id="reg-1", tokens={}, object_id=created.object_id))
    assert duplicate.value.status == 409

    events.create_batch(
        batch_input_timeline_event=BatchInputTimelineEvent(
            inputs=[
                TimelineEvent(event_template_id=template.id, id=f"reg-{n}", object_id=created.object_id, tokens={"level": "beginner"})
                for n in (2, 3)
            ]
        )
    )
    assert events.get_by_id(event_template_id=template.id, event_id="reg-3").tokens == {"level": "beginner"}

    with pytest.raises(ApiException) as bad_value:
        events.create(
            timeline_event=TimelineEvent(event_template_id=template.id, object_id=created.object_id, tokens={"level": "guru"})
        )
    assert bad_value.value.status == 400
    assert json.loads(bad_value.value.body)["category"] == "VALIDATION_ERROR"
