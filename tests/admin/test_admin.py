import pytest
from django.contrib.auth import get_user_model

from accounts.models import ApiToken
from accounts.services import usage_record
from tests.helpers import post_message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def told(client_a):
    post_message(client_a, "u1", "I live in Porto.")
    return post_message(client_a, "u1", "I moved to Lisbon last month.").json()


@pytest.mark.parametrize(
    "page",
    [
        "/admin/accounts/tenant/",
        "/admin/accounts/apitoken/",
        "/admin/memories/memory/",
        "/admin/memories/message/",
        "/admin/memories/vectoroperation/",
        "/admin/memories/memory/?q=Lisbon",
        "/admin/memories/memory/?status__exact=active",
    ],
)
def test_staff_can_browse_every_list(staff_client, told, page):
    assert staff_client.get(page).status_code == 200


def test_a_memory_page_shows_its_source_and_full_history(staff_client, told):
    from memories.models import Memory

    memory = Memory.objects.get(vector_key=told["updated"][0]["id"])
    page = staff_client.get(
        f"/admin/memories/memory/{memory.pk}/change/"
    ).content.decode()
    assert "I moved to Lisbon last month." in page
    assert "I live in Porto." in page  # the old text, in history
    assert "update" in page


def test_token_pages_never_show_the_hash(staff_client, client_a):
    token = ApiToken.objects.get(pk=client_a.token.pk)
    for page in (
        "/admin/accounts/apitoken/",
        f"/admin/accounts/apitoken/{token.pk}/change/",
        f"/admin/accounts/tenant/{token.tenant_id}/change/",
    ):
        content = staff_client.get(page).content.decode()
        assert token.prefix in content
        assert token.digest not in content


def test_staff_can_revoke_tokens_from_the_admin(staff_client, client_a):
    token = client_a.token
    response = staff_client.post(
        "/admin/accounts/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    denied = post_message(client_a, "u1", "hi")
    assert denied.json()["error"]["code"] == "token_revoked"


def test_memories_change_only_through_moderation_not_the_change_form(
    staff_client, told
):
    from memories.models import Memory

    memory = Memory.objects.get(vector_key=told["updated"][0]["id"])
    assert staff_client.get("/admin/memories/memory/add/").status_code == 403
    response = staff_client.post(
        f"/admin/memories/memory/{memory.pk}/change/", {"text": "edited"}
    )
    assert response.status_code == 403
    memory.refresh_from_db()
    assert memory.text == "I moved to Lisbon last month."


def test_a_tenants_page_shows_the_tokens_it_spent(staff_client, tenant_a):
    usage_record(tenant=tenant_a, calls=3, input_tokens=1200, output_tokens=345)
    usage_record(tenant=tenant_a, calls=2, input_tokens=800, output_tokens=55)

    page = staff_client.get(f"/admin/accounts/tenant/{tenant_a.pk}/change/")
    listing = staff_client.get("/admin/accounts/tenant/")

    text = page.content.decode()
    assert "2000" in text  # input tokens
    assert "400" in text  # output tokens
    assert "2400" in listing.content.decode()  # tokens spent, in the list
