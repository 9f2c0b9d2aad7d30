"""Webhook requests from the emulator validate with HubSpot's own signature utility."""

import json

import pytest
from hubspot.utils.signature import Signature

SECRET = "contract-test-client-secret"


def header(request, name):
    # http.server keeps header names as sent; HTTP header names are case-insensitive.
    for key, value in request["headers"].items():
        if key.lower() == name.lower():
            return value
    raise AssertionError(f"no {name} header in {sorted(request['headers'])}")


@pytest.mark.parametrize("legacy_version", ["v1", "v2"])
def test_signatures_validate_with_the_sdk(start_emulator, webhook_target, legacy_version):
    target_url = webhook_target.url("/hubspot/webhooks?integration=contract")
    emulator = start_emulator(
        "--webhook-url", target_url,
        "--client-secret", SECRET,
        "--legacy-signature-version", legacy_version,
    )
    status, created = emulator.admin("POST", "/_emulator/objects/contacts", {"properties": {"email": "sig@example.com"}})
    assert status == 201

    request = webhook_target.next_request()
    body = request["body"].decode("utf-8")
    uri = f"http://127.0.0.1:{webhook_target.port}{request['path']}"
    assert uri == target_url

    assert header(request, "X-HubSpot-Signature-Version") == legacy_version
    assert Signature.is_valid(
        signature=header(request, "X-HubSpot-Signature"),
        client_secret=SECRET,
        request_body=body,
        http_uri=uri,
        http_method="POST",
        signature_version=legacy_version,
    )
    assert Signature.is_valid(
        signature=header(request, "X-HubSpot-Signature-v3"),
        client_secret=SECRET,
        request_body=body,
        http_uri=uri,
        http_method="POST",
        signature_version="v3",
        timestamp=header(request, "X-HubSpot-Request-Timestamp"),
    )
    # The same utility refuses the request under another secret, so the checks above can fail.
    assert not Signature.is_valid(
        signature=header(request, "X-HubSpot-Signature-v3"),
        client_secret="another-secret",
        request_body=body,
        http_uri=uri,
        signature_version="v3",
        timestamp=header(request, "X-HubSpot-Request-Timestamp"),
    )

    assert header(request, "Content-Type") == "application/json"
    assert header(request, "User-Agent") == "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon"
    events = json.loads(body)
    creation = [e for e in events if e["subscriptionType"] == "contact.creation"]
    assert len(creation) == 1
    assert creation[0]["objectId"] == int(created["id"])
    assert creation[0]["changeSource"] == "CRM_UI"
    assert creation[0]["changeFlag"] == "NEW"
    assert creation[0]["portalId"] == 62515 and creation[0]["appId"] == 54321
    assert creation[0]["attemptNumber"] == 0
