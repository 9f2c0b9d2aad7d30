"""HubSpot's official Python SDK's OAuth API (`client.oauth`), pointed at the emulator."""

import json
import urllib.parse
import urllib.request

import hubspot
import pytest
from hubspot.crm.contacts.exceptions import ApiException as CrmApiException
from hubspot.oauth.exceptions import ApiException

CLIENT_ID = "contract-client"
CLIENT_SECRET = "contract-secret"
REFRESH_TOKEN = "na1-contract-refresh"
READER_ID = "contract-reader"
READER_SECRET = "reader-secret"


@pytest.fixture
def emulator(start_emulator):
    return start_emulator(
        "--oauth-app",
        f"{CLIENT_ID}:{CLIENT_SECRET}",
        "--oauth-app",
        f"{READER_ID}:{READER_SECRET}=crm.objects.contacts.read",
        "--refresh-token",
        f"{REFRESH_TOKEN}={CLIENT_ID}",
        "--access-token-ttl",
        "600",
    )


def sdk(emulator, **kwargs):
    return hubspot.HubSpot(host=emulator.base_url, **kwargs)


def refresh(client, refresh_token=REFRESH_TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET):
    return client.oauth.tokens_api.create(
        grant_type="refresh_token",
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
    )


def test_refresh_token_grant_and_access_token_metadata(emulator):
    client = sdk(emulator)
    tokens = refresh(client)
    assert tokens.token_type == "bearer"
    assert tokens.refresh_token == REFRESH_TOKEN
    assert tokens.expires_in == 600

    info = client.oauth.access_tokens_api.get(token=tokens.access_token)
    assert info.token == tokens.access_token
    assert info.hub_id == 62515
    assert info.token_type == "access"
    assert "crm.objects.contacts.write" in info.scopes
    assert 590 <= info.expires_in <= 600
    assert info.user and info.hub_domain and info.user_id and info.app_id

    refresh_info = client.oauth.refresh_tokens_api.get(token=REFRESH_TOKEN)
    assert refresh_info.client_id == CLIENT_ID
    assert refresh_info.token_type == "refresh"
    assert refresh_info.hub_id == 62515


def test_issued_access_token_calls_the_crm_until_it_expires(emulator):
    tokens = refresh(sdk(emulator))
    api = sdk(emulator, access_token=tokens.access_token)
    page = api.crm.contacts.basic_api.get_page(limit=5)
    assert page.results == []

    status, _ = emulator.admin("POST", "/_emulator/clock/advance", {"seconds": 601})
    assert status == 200
    with pytest.raises(CrmApiException) as refused:
        api.crm.contacts.basic_api.get_page(limit=5)
    assert refused.value.status == 401
    body = json.loads(refused.value.body)
    assert body["category"] == "EXPIRED_AUTHENTICATION"
    assert body["status"] == "error"
    assert body["correlationId"]

    renewed = refresh(sdk(emulator))
    assert renewed.access_token != tokens.access_token
    assert sdk(emulator, access_token=renewed.access_token).crm.contacts.basic_api.get_page(limit=5).results == []


def test_authorization_code_grant(emulator):
    status, issued = emulator.admin(
        "POST", "/_emulator/oauth/codes", {"clientId": READER_ID, "redirectUri": "https://app.example/cb"}
    )
    assert status == 201
    client = sdk(emulator)
    tokens = client.oauth.tokens_api.create(
        grant_type="authorization_code",
        code=issued["code"],
        redirect_uri="https://app.example/cb",
        client_id=READER_ID,
        client_secret=READER_SECRET,
    )
    assert tokens.refresh_token
    reader = sdk(emulator, access_token=tokens.access_token)
    reader.crm.contacts.basic_api.get_page(limit=1)
    with pytest.raises(CrmApiException) as refused:
        reader.crm.contacts.basic_api.archive(contact_id="1")
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["category"] == "MISSING_SCOPES"

    # The refresh token from the exchange works like any other.
    assert refresh(client, tokens.refresh_token, READER_ID, READER_SECRET).access_token


def test_refusals_in_hubspots_shape(emulator):
    client = sdk(emulator)
    cases = [
        ({"refresh_token": "na1-unknown"}, "BAD_REFRESH_TOKEN"),
        ({"client_id": "nobody"}, "BAD_CLIENT_ID"),
        ({"client_secret": "wrong"}, "BAD_CLIENT_SECRET"),
    ]
    for overrides, expected in cases:
        with pytest.raises(ApiException) as refused:
            refresh(client, **overrides)
        assert refused.value.status == 400
        body = json.loads(refused.value.body)
        assert body["status"] == expected
        assert body["message"]
        assert body["correlationId"]

    with pytest.raises(ApiException) as unknown:
        client.oauth.access_tokens_api.get(token="not-a-token")
    assert unknown.value.status == 404


def test_v3_endpoint_answers_like_v1(emulator):
    form = urllib.parse.urlencode(
        {
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
        }
    ).encode()
    request = urllib.request.Request(
        emulator.base_url + "/oauth/v3/token",
        data=form,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        tokens = json.loads(response.read())
    assert set(tokens) >= {"access_token", "refresh_token", "expires_in", "token_type"}
    info = sdk(emulator).oauth.access_tokens_api.get(token=tokens["access_token"])
    assert info.expires_in <= 600
