"""Tenant-scoped support staff see and moderate only the tenants assigned to
them; the global support role still sees every tenant. Real admin sessions."""

import importlib

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from memories.models import Memory, Message
from tests.helpers import post_message

pytestmark = pytest.mark.django_db(transaction=True)

support = importlib.import_module("memories.migrations.0006_support_group")
scopes = importlib.import_module("accounts.migrations.0004_tenant_support_group")


@pytest.fixture
def groups(db):
    # The test database is emptied between transactional tests, groups
    # included, so the migrations' functions run again here.
    support.create_support_group(django_apps, None)
    scopes.grant_support_scopes(django_apps, None)
    return {group.name: group for group in Group.objects.all()}


def _login(client, username, group):
    user = get_user_model().objects.create_user(username, password="a-long-pass")
    user.is_staff = True
    user.save()
    user.groups.add(group)
    assert client.login(username=username, password="a-long-pass")
    return user


@pytest.fixture
def memories(client_a, client_b):
    post_message(client_a, "u1", "I keep bees on the roof.")
    post_message(client_b, "u1", "I race pigeons on Sundays.")
    return {
        "a": Memory.objects.get(tenant__slug="tenant-a", kind="fact"),
        "b": Memory.objects.get(tenant__slug="tenant-b", kind="fact"),
    }


def test_scoped_staff_see_only_their_tenants(client, groups, memories, tenant_a):
    user = _login(client, "tina", groups[scopes.TENANT_SUPPORT_GROUP])
    tenant_a.support_staff.add(user)

    listing = client.get("/admin/memories/memory/").content.decode()
    assert "I keep bees" in listing
    assert "pigeons" not in listing
    # The tenant filter offers only the assigned tenant.
    assert "tenant-b" not in listing
    assert (
        client.get(f"/admin/memories/memory/{memories['a'].pk}/change/").status_code
        == 200
    )
    # Another tenant's memory, message, outbox and tenant pages do not exist for them.
    other = memories["b"]
    assert client.get(f"/admin/memories/memory/{other.pk}/change/").status_code == 302
    message = Message.objects.get(tenant=other.tenant)
    assert (
        client.get(f"/admin/memories/message/{message.pk}/change/").status_code == 302
    )
    assert "pigeons" not in client.get("/admin/memories/message/").content.decode()
    tenants = client.get("/admin/accounts/tenant/").content.decode()
    assert "tenant-a" in tenants
    assert "tenant-b" not in tenants
    assert (
        client.get(f"/admin/accounts/tenant/{other.tenant_id}/end-users/").status_code
        == 404
    )
    assert "tenant-b" not in client.get("/admin/accounts/apitoken/").content.decode()


def test_scoped_staff_moderate_only_their_tenants(client, groups, memories, tenant_a):
    user = _login(client, "tina", groups[scopes.TENANT_SUPPORT_GROUP])
    tenant_a.support_staff.add(user)
    reason = {"reason": "reported by the user"}
    mine, other = memories["a"], memories["b"]

    refused = client.post(f"/admin/memories/memory/{other.pk}/moderate/hide/", reason)
    assert refused.status_code == 404
    # A bulk action naming the other tenant's memory changes only what they see.
    client.post(
        "/admin/memories/memory/",
        {
            "action": "hide_memories",
            "_selected_action": [mine.pk, other.pk],
            "reason": "reported by the user",
            "apply": "yes",
        },
    )
    other.refresh_from_db()
    assert other.status == Memory.Status.ACTIVE
    done = client.post(f"/admin/memories/memory/{mine.pk}/moderate/hide/", reason)
    assert done.status_code == 302
    mine.refresh_from_db()
    assert mine.status == Memory.Status.HIDDEN


def test_unassigned_scoped_staff_see_nothing(client, groups, memories):
    _login(client, "tina", groups[scopes.TENANT_SUPPORT_GROUP])
    listing = client.get("/admin/memories/memory/").content.decode()
    assert "I keep bees" not in listing
    assert "pigeons" not in listing


def test_the_global_support_role_sees_every_tenant(client, groups, memories):
    _login(client, "sam", groups[support.SUPPORT_GROUP])
    listing = client.get("/admin/memories/memory/").content.decode()
    assert "I keep bees" in listing
    assert "pigeons" in listing
    assert "tenant-b" in client.get("/admin/accounts/tenant/").content.decode()
