from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiToken, Tenant
from accounts.services import token_digest, token_issue
from tests.helpers import post_message

pytestmark = pytest.mark.django_db


def test_only_the_hash_of_a_token_is_stored(tenant_a):
    issued = token_issue(tenant=tenant_a)
    stored = ApiToken.objects.get(pk=issued.token.pk)
    assert issued.secret.startswith("ltm_")
    assert stored.digest == token_digest(issued.secret)
    for value in (stored.digest, stored.prefix, stored.name):
        assert issued.secret not in value
    assert issued.secret.startswith(stored.prefix)


def test_a_token_records_when_it_was_last_used(client_a):
    assert ApiToken.objects.get(pk=client_a.token.pk).last_used_at is None
    post_message(client_a, "u1", "hi")
    assert ApiToken.objects.get(pk=client_a.token.pk).last_used_at is not None


def test_create_tenant_prints_a_working_token_once(client):
    out = StringIO()
    call_command("create_tenant", "acme", "--name", "Acme", stdout=out)
    secret = out.getvalue().strip().splitlines()[-1]
    assert Tenant.objects.get(slug="acme").name == "Acme"
    response = client.post(
        "/api/v1/message",
        {"userId": "u1", "message": "hi"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 200


def test_create_tenant_refuses_a_duplicate_slug(tenant_a):
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_tenant", tenant_a.slug, stdout=StringIO())


def test_issue_list_and_revoke_tokens_by_command(tenant_a, client):
    out = StringIO()
    call_command("issue_token", tenant_a.slug, "--name", "ci", stdout=out)
    secret = out.getvalue().strip().splitlines()[-1]
    token = ApiToken.objects.get(digest=token_digest(secret))
    listing = StringIO()
    call_command("list_tokens", "--tenant", tenant_a.slug, stdout=listing)
    assert token.prefix in listing.getvalue()
    assert secret not in listing.getvalue()

    call_command("revoke_token", token.prefix, stdout=StringIO())
    response = client.post(
        "/api/v1/message",
        {"userId": "u1", "message": "hi"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_revoked"


def test_revoke_token_names_an_unknown_prefix(db):
    with pytest.raises(CommandError, match="No token"):
        call_command("revoke_token", "ltm_nope", stdout=StringIO())


def test_the_demo_tenant_is_created_once(db):
    first = StringIO()
    call_command("ensure_demo_tenant", stdout=first)
    assert first.getvalue().strip().splitlines()[-1].startswith("ltm_")
    second = StringIO()
    call_command("ensure_demo_tenant", stdout=second)
    assert "ltm_" not in second.getvalue().replace("issue_token", "")
    assert ApiToken.objects.filter(tenant__slug="demo").count() == 1


def test_deactivating_a_tenant_stops_its_tokens_and_keeps_its_data(client_a, tenant_a):
    post_message(client_a, "u1", "I live in Lisbon.")

    call_command("deactivate_tenant", "tenant-a", stdout=StringIO())
    refused = post_message(client_a, "u1", "Where do I live?")
    out = StringIO()
    call_command("list_tenants", stdout=out)
    call_command("deactivate_tenant", "tenant-a", "--reactivate", stdout=StringIO())
    again = post_message(client_a, "u1", "Where do I live?")

    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "tenant_inactive"
    assert "tenant-a" in out.getvalue()
    assert "inactive" in out.getvalue()
    assert "Lisbon" in again.json()["reply"]


def test_deactivate_tenant_names_an_unknown_slug(db):
    with pytest.raises(CommandError, match="nobody"):
        call_command("deactivate_tenant", "nobody", stdout=StringIO())
