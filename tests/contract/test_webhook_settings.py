"""The webhooks management API through HubSpot's official Python SDK (developer API key auth),
and delivery following what it configures."""

import json

import hubspot
import pytest
from hubspot.webhooks import (
    BatchInputSubscriptionBatchUpdateRequest,
    SettingsChangeRequest,
    SubscriptionBatchUpdateRequest,
    SubscriptionCreateRequest,
    SubscriptionPatchRequest,
    ThrottlingSettings,
)
from hubspot.webhooks.exceptions import ApiException

from conftest import wait_for

DEV_KEY = "contract-developer-key"
APP_ID = 54321


def developer(emulator, key=DEV_KEY):
    return hubspot.HubSpot(api_key=key, host=emulator.base_url).webhooks


def test_settings_and_subscriptions_lifecycle(start_emulator):
    emulator = start_emulator("--developer-api-key", DEV_KEY, "--subscription", "contact.creation")
    api = developer(emulator)
    with pytest.raises(ApiException) as none_yet:
        api.settings_api.get_all(app_id=APP_ID)
    assert none_yet.value.status == 404

    settings = api.settings_api.configure(
        app_id=APP_ID,
        settings_change_request=SettingsChangeRequest(
            target_url="https://example.com/hooks", throttling=ThrottlingSettings(max_concurrent_requests=7)
        ),
    )
    assert settings.target_url == "https://example.com/hooks"
    assert settings.throttling.max_concurrent_requests == 7
    assert api.settings_api.get_all(app_id=APP_ID).target_url == "https://example.com/hooks"

    # The --subscription flag is the initial state.
    (initial,) = api.subscriptions_api.get_all(app_id=APP_ID).results
    assert (initial.event_type, initial.active) == ("contact.creation", True)

    created = api.subscriptions_api.create(
        app_id=APP_ID,
        subscription_create_request=SubscriptionCreateRequest(
            event_type="contact.propertyChange", property_name="email", active=True
        ),
    )
    assert (created.event_type, created.property_name, created.active) == ("contact.propertyChange", "email", True)
    assert api.subscriptions_api.get_by_id(app_id=APP_ID, subscription_id=int(created.id)).id == created.id

    patched = api.subscriptions_api.update(
        app_id=APP_ID, subscription_id=int(created.id), subscription_patch_request=SubscriptionPatchRequest(active=False)
    )
    assert patched.active is False
    batch = api.subscriptions_api.update_batch(
        app_id=APP_ID,
        batch_input_subscription_batch_update_request=BatchInputSubscriptionBatchUpdateRequest(
            inputs=[SubscriptionBatchUpdateRequest(id=int(created.id), active=True)]
        ),
    )
    assert [s.active for s in batch.results] == [True]

    api.subscriptions_api.archive(app_id=APP_ID, subscription_id=int(initial.id))
    assert [s.id for s in api.subscriptions_api.get_all(app_id=APP_ID).results] == [created.id]

    with pytest.raises(ApiException) as no_property:
        api.subscriptions_api.create(
            app_id=APP_ID,
            subscription_create_request=SubscriptionCreateRequest(event_type="deal.propertyChange", active=True),
        )
    assert no_property.value.status == 400
    with pytest.raises(ApiException) as too_few:
        api.settings_api.configure(
            app_id=APP_ID,
            settings_change_request=SettingsChangeRequest(
                target_url="https://example.com/hooks", throttling=ThrottlingSettings(max_concurrent_requests=2)
            ),
        )
    assert too_few.value.status == 400

    api.settings_api.clear(app_id=APP_ID)
    with pytest.raises(ApiException):
        api.settings_api.get_all(app_id=APP_ID)


def test_developer_key_and_app_are_checked(start_emulator):
    emulator = start_emulator("--developer-api-key", DEV_KEY)
    with pytest.raises(ApiException) as wrong_key:
        developer(emulator, "not-the-key").subscriptions_api.get_all(app_id=APP_ID)
    assert wrong_key.value.status == 401
    assert json.loads(wrong_key.value.body)["category"] == "INVALID_AUTHENTICATION"
    with pytest.raises(ApiException) as other_app:
        developer(emulator).subscriptions_api.get_all(app_id=APP_ID + 1000)
    assert other_app.value.status == 404
    # The key never reaches the request log.
    _, logged = emulator.admin("GET", "/_emulator/requests")
    assert logged and all(DEV_KEY not in json.dumps(entry) for entry in logged)


def test_subscription_limit(start_emulator):
    emulator = start_emulator("--developer-api-key", DEV_KEY, "--subscription", "contact.creation")
    api = developer(emulator)
    for n in range(999):
        api.subscriptions_api.create(
            app_id=APP_ID,
            subscription_create_request=SubscriptionCreateRequest(
                event_type="contact.propertyChange", property_name=f"p{n}", active=True
            ),
        )
    with pytest.raises(ApiException) as full:
        api.subscriptions_api.create(
            app_id=APP_ID,
            subscription_create_request=SubscriptionCreateRequest(
                event_type="contact.propertyChange", property_name="one_too_many", active=True
            ),
        )
    assert full.value.status == 400
    assert "1000" in json.loads(full.value.body)["message"]


def test_delivery_follows_the_settings(start_emulator, webhook_target):
    emulator = start_emulator("--developer-api-key", DEV_KEY, "--subscription", "contact.creation")
    api = developer(emulator)
    # No target URL yet: nothing is sent for this change.
    emulator.admin("POST", "/_emulator/objects/contacts", {"properties": {"email": "before@example.com"}})
    api.settings_api.configure(
        app_id=APP_ID,
        settings_change_request=SettingsChangeRequest(
            target_url=webhook_target.url("/configured"), throttling=ThrottlingSettings(max_concurrent_requests=5)
        ),
    )
    api.subscriptions_api.create(
        app_id=APP_ID,
        subscription_create_request=SubscriptionCreateRequest(
            event_type="contact.propertyChange", property_name="firstname", active=True
        ),
    )
    inactive = api.subscriptions_api.create(
        app_id=APP_ID,
        subscription_create_request=SubscriptionCreateRequest(
            event_type="contact.propertyChange", property_name="lastname", active=False
        ),
    )
    status, created = emulator.admin(
        "POST", "/_emulator/objects/contacts", {"properties": {"email": "after@example.com", "firstname": "A", "lastname": "B"}}
    )
    events = []
    while len(events) < 2:
        request = webhook_target.next_request()
        assert request["path"] == "/configured"
        events += json.loads(request["body"])
    kinds = sorted((e["subscriptionType"], e.get("propertyName")) for e in events)
    assert kinds == [("contact.creation", None), ("contact.propertyChange", "firstname")]
    assert all(e["objectId"] == int(created["id"]) for e in events)
    assert inactive.id not in {str(e["subscriptionId"]) for e in events}
    stats = wait_for(lambda: (lambda s: s if s["pending"] == 0 else None)(emulator.admin("GET", "/_emulator/webhooks")[1]))
    # Nothing waits for a target: the change made before it was configured never became an event.
    assert stats["abandoned"] == 0 and stats["failedAttempts"] == 0
