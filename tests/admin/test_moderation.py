"""Support staff moderate memories in the admin: every action through the admin's
own views, checked against the vector store and the API afterwards."""

import importlib
import time

import numpy as np
import pytest
from django.apps import apps as django_apps
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiToken
from memories.models import Memory, MemoryEvent, VectorOperation
from memories.outbox import vector_metadata as _vector_metadata
from memories.outbox import vector_operations_retry
from memories.providers.embeddings import EmbeddingError, get_embedder
from memories.reconcile import vectors_reconcile
from memories.vectorstores import (
    Namespace,
    VectorRecord,
    VectorStoreError,
    get_vector_store,
)
from tests.helpers import database_rows_containing, post_message

pytestmark = pytest.mark.django_db(transaction=True)

PEANUTS = "I am allergic to peanuts."
FACTS = [PEANUTS, "I have a dog named Rex.", "I play the violin on Sundays."]
REASON = "ticket 4711: the user reported a wrong memory"
MEMORIES = "/admin/memories/memory/"
PEANUTS_FACT = ("fact", PEANUTS)
PEANUTS_EPISODE = ("episode", PEANUTS)
REX_FACT = ("fact", "I have a dog named Rex.")
REX_EPISODE = ("episode", "I have a dog named Rex.")

support_migration = importlib.import_module("memories.migrations.0006_support_group")
scopes_migration = importlib.import_module(
    "accounts.migrations.0004_tenant_support_group"
)


@pytest.fixture
def support_group(db):
    # Made by the data migration; the test database is emptied between
    # transactional tests, groups included, so the migration's function runs
    # again here.
    support_migration.create_support_group(django_apps, None)
    scopes_migration.grant_support_scopes(django_apps, None)
    return Group.objects.get(name=support_migration.SUPPORT_GROUP)


def _staff_client(client, username, groups=(), permissions=()):
    user = get_user_model().objects.create_user(username, password="pw")
    user.is_staff = True
    user.save()
    user.groups.set(groups)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=permissions,
            content_type__app_label__in=["memories", "accounts"],
        )
    )
    client.force_login(user)
    return client


@pytest.fixture
def support_client(client, support_group):
    return _staff_client(client, "sam", groups=[support_group])


@pytest.fixture
def told(client_a):
    """Three facts of user u1 of tenant A, each from its own message (each
    message is also kept as an episode: three more memories)."""
    for fact in FACTS:
        assert post_message(client_a, "u1", fact).json()["added"]
    return {
        memory.text: memory
        for memory in Memory.objects.filter(user_id="u1", kind=Memory.Kind.FACT)
    }


def episode_keys(user_id="u1") -> set[str]:
    return {
        str(key)
        for key in Memory.objects.filter(
            user_id=user_id, kind=Memory.Kind.EPISODE
        ).values_list("vector_key", flat=True)
    }


@pytest.fixture
def peanuts(told):
    return told[PEANUTS]


def vector_keys(memory: Memory) -> set[str]:
    namespace = Namespace(tenant_id=memory.tenant_id, user_id=memory.user_id)
    return set(get_vector_store().list_keys(namespace=namespace))


def recalled_ids(client, question: str) -> set[str]:
    response = post_message(client, "u1", question)
    assert response.status_code == 200
    return {hit["id"] for hit in response.json()["recalled"]}


def search_hits(client, query: str) -> dict[str, dict]:
    response = client.post(
        "/api/v1/memories/search", {"userId": "u1", "query": query}, format="json"
    )
    assert response.status_code == 200, response.content
    return {hit["id"]: hit for hit in response.json()["hits"]}


def found_by_keyword(client, query: str) -> set[str]:
    return {
        key
        for key, hit in search_hits(client, query).items()
        if hit["keywordRank"] is not None
    }


def moderate(client, memory: Memory, name: str, reason: str = REASON):
    return client.post(
        f"{MEMORIES}{memory.pk}/moderate/{name}/", {"reason": reason}, follow=True
    )


def edit_text(client, memory: Memory, text: str, reason: str = REASON):
    return client.post(
        f"{MEMORIES}{memory.pk}/moderate/edit/",
        {"text": text, "reason": reason},
        follow=True,
    )


def bulk(client, action: str, memories: list[Memory], reason: str = REASON):
    """Run a list action as a person does: choose it, then confirm with a reason."""
    selected = [memory.pk for memory in memories]
    confirmation = client.post(
        MEMORIES, {"action": action, ACTION_CHECKBOX_NAME: selected, "index": 0}
    )
    assert confirmation.status_code == 200
    assert 'name="reason"' in confirmation.content.decode()
    return client.post(
        MEMORIES,
        {
            "action": action,
            ACTION_CHECKBOX_NAME: selected,
            "post": "yes",
            "reason": reason,
        },
        follow=True,
    )


def events(memory: Memory) -> list[tuple[str, str, str]]:
    return [
        (event.action, event.actor, event.reason)
        for event in MemoryEvent.objects.filter(memory=memory)
    ]


# --- hide and restore --------------------------------------------------------
def test_hiding_removes_the_vector_and_the_memory_from_recall_and_search(
    support_client, client_a, peanuts
):
    key = str(peanuts.vector_key)
    assert key in recalled_ids(client_a, "Am I allergic to peanuts?")

    response = moderate(support_client, peanuts, "hide")

    assert response.status_code == 200
    assert f"Hid memory {peanuts.pk}." in response.content.decode()
    peanuts.refresh_from_db()
    assert peanuts.status == Memory.Status.HIDDEN
    assert peanuts.text == PEANUTS  # kept, only out of sight
    assert key not in vector_keys(peanuts)
    assert key not in recalled_ids(client_a, "Am I allergic to peanuts?")
    assert key not in search_hits(client_a, "peanuts")
    listed = client_a.get("/api/v1/memories", {"userId": "u1"}).json()["results"]
    assert key not in {memory["id"] for memory in listed}
    hidden = client_a.get("/api/v1/memories", {"userId": "u1", "status": "hidden"})
    assert [memory["id"] for memory in hidden.json()["results"]] == [key]
    assert client_a.get(f"/api/v1/memories/{key}").json()["status"] == "hidden"
    assert events(peanuts)[-1] == ("hide", "staff:sam", REASON)


def test_restoring_brings_back_the_vector_recall_and_search(
    support_client, client_a, peanuts
):
    key = str(peanuts.vector_key)
    moderate(support_client, peanuts, "hide")

    response = moderate(support_client, peanuts, "restore", reason="reviewed: fine")

    assert f"Restored memory {peanuts.pk}." in response.content.decode()
    peanuts.refresh_from_db()
    assert peanuts.status == Memory.Status.ACTIVE
    assert key in vector_keys(peanuts)
    assert key in recalled_ids(client_a, "Am I allergic to peanuts?")
    assert key in found_by_keyword(client_a, "peanuts")
    assert [action for action, _, _ in events(peanuts)] == ["add", "hide", "restore"]
    assert events(peanuts)[-1] == ("restore", "staff:sam", "reviewed: fine")


def test_bulk_hide_makes_one_batched_vector_delete(support_client, told, monkeypatch):
    store = get_vector_store()
    deletes = []
    real_delete = store.delete

    def counting_delete(*, namespace, keys):
        deletes.append(sorted(keys))
        return real_delete(namespace=namespace, keys=keys)

    monkeypatch.setattr(store, "delete", counting_delete)
    memories = list(told.values())

    response = bulk(support_client, "hide_memories", memories)

    assert "Hid 3 memories." in response.content.decode()
    assert deletes == [sorted(str(memory.vector_key) for memory in memories)]
    # Only the facts chosen: the episodes of their messages stay.
    assert len(episode_keys()) == 3
    assert vector_keys(memories[0]) == episode_keys()
    assert set(Memory.objects.filter(kind="fact").values_list("status", flat=True)) == {
        "hidden"
    }
    assert set(
        Memory.objects.filter(kind="episode").values_list("status", flat=True)
    ) == {"active"}
    assert not VectorOperation.objects.filter(applied_at__isnull=True).exists()
    for memory in memories:
        assert events(memory)[-1] == ("hide", "staff:sam", REASON)


def test_bulk_restore_puts_the_vectors_back(support_client, client_a, told):
    memories = list(told.values())
    bulk(support_client, "hide_memories", memories)

    response = bulk(support_client, "restore_memories", memories)

    assert "Restored 3 memories." in response.content.decode()
    assert (
        vector_keys(memories[0])
        == {str(memory.vector_key) for memory in memories} | episode_keys()
    )
    assert str(told[PEANUTS].vector_key) in found_by_keyword(client_a, "peanuts")


def test_a_bulk_action_leaves_memories_it_does_not_apply_to_and_says_so(
    support_client, told, peanuts
):
    moderate(support_client, peanuts, "hide")

    response = bulk(support_client, "hide_memories", list(told.values()))

    page = response.content.decode()
    assert "Hid 2 memories." in page
    assert "1 left as they were" in page
    assert f"Memory {peanuts.pk} is hidden" in page
    assert [action for action, _, _ in events(peanuts)] == ["add", "hide"]


def test_a_hide_the_store_failed_to_apply_is_finished_later(
    support_client, client_a, peanuts, monkeypatch
):
    store = get_vector_store()
    key = str(peanuts.vector_key)

    def failing_delete(*, namespace, keys):
        raise VectorStoreError("the store is down")

    monkeypatch.setattr(store, "delete", failing_delete)
    moderate(support_client, peanuts, "hide")

    # The row is hidden and the entry pending; the stale vector is never
    # recalled, because recall reads only active rows.
    assert Memory.objects.get(pk=peanuts.pk).status == Memory.Status.HIDDEN
    assert VectorOperation.objects.filter(applied_at__isnull=True).count() == 1
    assert key in vector_keys(peanuts)
    assert key not in search_hits(client_a, "peanuts")
    monkeypatch.undo()
    time.sleep(1.1)  # the backoff after a first failure
    vector_operations_retry(tenant=peanuts.tenant)
    assert key not in vector_keys(peanuts)


def test_reconcile_expects_no_vector_for_a_hidden_memory(support_client, peanuts):
    moderate(support_client, peanuts, "hide")
    assert vectors_reconcile(tenant=peanuts.tenant).is_clean

    # A vector of a hidden memory (left by a store fault) is an orphan.
    peanuts.refresh_from_db()
    get_vector_store().put(
        namespace=Namespace(tenant_id=peanuts.tenant_id, user_id="u1"),
        records=[
            VectorRecord(
                key=str(peanuts.vector_key),
                vector=np.frombuffer(bytes(peanuts.embedding), dtype="<f4"),
                metadata=_vector_metadata(peanuts),
            )
        ],
    )
    report = vectors_reconcile(tenant=peanuts.tenant, fix=True)
    (tenant_report,) = report.tenants
    assert (tenant_report.orphans, tenant_report.missing) == (1, 0)
    assert f"memory {peanuts.pk} is hidden" in tenant_report.examples[0].detail
    assert str(peanuts.vector_key) not in vector_keys(peanuts)


# --- edit ------------------------------------------------------------------
def test_editing_rewrites_the_text_and_the_vector_and_keeps_the_old_text(
    support_client, client_a, peanuts
):
    key = str(peanuts.vector_key)
    new_text = "I am allergic to shellfish."

    response = edit_text(support_client, peanuts, new_text)

    assert f"Edited memory {peanuts.pk}." in response.content.decode()
    peanuts.refresh_from_db()
    assert peanuts.text == new_text
    namespace = Namespace(tenant_id=peanuts.tenant_id, user_id="u1")
    (stored,) = get_vector_store().get(namespace=namespace, keys=[key])
    assert stored.metadata["text"] == new_text
    (expected,) = get_embedder().embed([new_text])
    assert np.allclose(stored.vector, expected, atol=1e-5)
    assert key in found_by_keyword(client_a, "shellfish")
    assert key not in found_by_keyword(client_a, "peanuts")
    update = MemoryEvent.objects.filter(memory=peanuts).last()
    assert (update.action, update.old_text, update.new_text) == (
        "update",
        PEANUTS,
        new_text,
    )
    assert (update.actor, update.reason) == ("staff:sam", REASON)


def test_the_edit_page_offers_the_current_text(support_client, peanuts):
    page = support_client.get(f"{MEMORIES}{peanuts.pk}/moderate/edit/")
    assert page.status_code == 200
    assert PEANUTS in page.content.decode()


def test_a_deleted_memory_cannot_be_edited(support_client, peanuts):
    moderate(support_client, peanuts, "delete")

    response = edit_text(support_client, peanuts, "I am allergic to shellfish.")

    assert "is deleted: a deleted memory cannot be edited" in response.content.decode()
    peanuts.refresh_from_db()
    assert (peanuts.status, peanuts.text) == ("deleted", "")
    assert [action for action, _, _ in events(peanuts)] == ["add", "delete"]


def test_an_edit_is_refused_when_the_embedding_provider_fails(
    support_client, peanuts, monkeypatch
):
    def failing_embed(texts):
        raise EmbeddingError("provider unreachable")

    monkeypatch.setattr(get_embedder(), "embed", failing_embed)

    response = edit_text(support_client, peanuts, "I am allergic to shellfish.")

    assert "The embedding provider failed: nothing was changed" in (
        response.content.decode()
    )
    peanuts.refresh_from_db()
    assert peanuts.text == PEANUTS


# --- delete ----------------------------------------------------------------
def test_deleting_leaves_a_tombstone_without_text_or_vector(
    support_client, client_a, peanuts
):
    key = str(peanuts.vector_key)

    response = moderate(support_client, peanuts, "delete")

    assert f"Deleted memory {peanuts.pk}." in response.content.decode()
    peanuts.refresh_from_db()
    assert peanuts.status == Memory.Status.DELETED
    assert (peanuts.text, peanuts.content_hash, bytes(peanuts.embedding)) == (
        "",
        "",
        b"",
    )
    assert key not in vector_keys(peanuts)
    assert database_rows_containing("peanut") == []
    assert events(peanuts) == [
        ("add", "api", ""),
        ("delete", "staff:sam", REASON),
    ]
    assert key not in search_hits(client_a, "peanuts")


def test_bulk_delete_forgets_every_selected_memory(support_client, told):
    memories = list(told.values())

    response = bulk(support_client, "delete_memories", memories)

    assert "Deleted 3 memories." in response.content.decode()
    assert vector_keys(memories[0]) == set()
    assert set(Memory.objects.values_list("text", flat=True)) == {""}


def test_a_hidden_memory_can_be_deleted(support_client, peanuts):
    moderate(support_client, peanuts, "hide")
    moderate(support_client, peanuts, "delete")
    peanuts.refresh_from_db()
    assert (peanuts.status, peanuts.text) == ("deleted", "")


# --- a reason is required ----------------------------------------------------
@pytest.mark.parametrize("reason", ["", "   "])
@pytest.mark.parametrize("name", ["hide", "delete"])
def test_an_action_without_a_reason_changes_nothing(
    support_client, peanuts, name, reason
):
    response = moderate(support_client, peanuts, name, reason=reason)

    assert response.status_code == 200
    assert "A reason is required: nothing was changed." in response.content.decode()
    peanuts.refresh_from_db()
    assert (peanuts.status, peanuts.text) == ("active", PEANUTS)
    assert str(peanuts.vector_key) in vector_keys(peanuts)
    assert [action for action, _, _ in events(peanuts)] == ["add"]


def test_an_edit_without_a_reason_changes_nothing(support_client, peanuts):
    response = edit_text(support_client, peanuts, "I am allergic to cats.", "")

    assert "A reason is required: nothing was changed." in response.content.decode()
    peanuts.refresh_from_db()
    assert peanuts.text == PEANUTS


def test_a_bulk_action_without_a_reason_changes_nothing(support_client, told):
    response = bulk(support_client, "hide_memories", list(told.values()), reason="")

    assert "A reason is required: nothing was changed." in response.content.decode()
    assert set(Memory.objects.values_list("status", flat=True)) == {"active"}
    # Three facts and three episodes.
    assert len(vector_keys(next(iter(told.values())))) == 6


# --- who may moderate --------------------------------------------------------
def test_a_staff_user_outside_the_support_group_cannot_moderate(client, peanuts):
    staff = _staff_client(client, "pat")

    assert staff.get(MEMORIES).status_code == 403
    assert moderate(staff, peanuts, "hide").status_code == 403
    assert edit_text(staff, peanuts, "edited").status_code == 403
    peanuts.refresh_from_db()
    assert (peanuts.status, peanuts.text) == ("active", PEANUTS)


def test_a_viewer_without_the_moderate_permission_sees_no_action(client, told):
    viewer = _staff_client(
        client, "val", permissions=["view_memory", "support_all_tenants"]
    )
    memory = told[PEANUTS]

    page = viewer.get(f"{MEMORIES}{memory.pk}/change/").content.decode()
    listing = viewer.get(MEMORIES).content.decode()

    assert PEANUTS in page
    assert "/moderate/" not in page
    assert "hide_memories" not in listing
    assert moderate(viewer, memory, "hide").status_code == 403
    viewer.post(
        MEMORIES,
        {
            "action": "hide_memories",
            ACTION_CHECKBOX_NAME: [memory.pk],
            "post": "yes",
            "reason": REASON,
        },
    )
    assert set(Memory.objects.values_list("status", flat=True)) == {"active"}


def test_the_support_group_has_view_and_moderate_permissions_only(support_group):
    codenames = set(support_group.permissions.values_list("codename", flat=True))
    assert "moderate_memory" in codenames
    # Views, moderation, and the scope: every tenant.
    assert {codename.split("_")[0] for codename in codenames} == {
        "view",
        "moderate",
        "support",
    }
    assert "support_all_tenants" in codenames
    assert not support_group.permissions.filter(content_type__app_label="auth").exists()


def test_a_support_user_cannot_reach_the_user_admin(support_client):
    assert support_client.get("/admin/auth/user/").status_code == 403
    assert support_client.get("/admin/auth/group/").status_code == 403
    assert support_client.get("/admin/").status_code == 200


def test_a_support_user_never_sees_token_hashes_nor_revokes(support_client, client_a):
    token = ApiToken.objects.get(pk=client_a.token.pk)
    for page in (
        "/admin/accounts/apitoken/",
        f"/admin/accounts/apitoken/{token.pk}/change/",
        f"/admin/accounts/tenant/{token.tenant_id}/change/",
    ):
        response = support_client.get(page)
        assert response.status_code == 200
        assert token.prefix in response.content.decode()
        assert token.digest not in response.content.decode()
    support_client.post(
        "/admin/accounts/apitoken/",
        {"action": "revoke_tokens", ACTION_CHECKBOX_NAME: [token.pk], "index": 0},
    )
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


# --- the pages ---------------------------------------------------------------
def test_a_memory_page_shows_provenance_history_and_the_actions(
    support_client, client_a
):
    client_a.post(
        "/api/v1/memories/import",
        {
            "userId": "u1",
            "messages": [
                {
                    "text": "I moved to Lisbon last month.",
                    "sentAt": "2024-03-01T09:30:00Z",
                    "clientMessageId": "chat-77",
                }
            ],
        },
        format="json",
    )
    memory = Memory.objects.get(kind="fact", text="I moved to Lisbon last month.")
    moderate(support_client, memory, "hide")

    page = support_client.get(f"{MEMORIES}{memory.pk}/change/").content.decode()

    assert "chat-77" in page  # the source message's client id
    assert "March 1, 2024, 9:30" in page  # and when it was sent
    assert REASON in page
    assert "staff:sam" in page
    assert f"{memory.pk}/moderate/restore/" in page
    assert f"{memory.pk}/moderate/hide/" not in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {PEANUTS_FACT, PEANUTS_EPISODE, REX_FACT, REX_EPISODE}),
        ("?source=import", {REX_FACT, REX_EPISODE}),
        ("?source=message", {PEANUTS_FACT, PEANUTS_EPISODE}),
        ("?status__exact=hidden", {PEANUTS_FACT}),
        ("?q=dog", {REX_FACT, REX_EPISODE}),
        ("?q=u2", {REX_FACT, REX_EPISODE}),
        ("?q=tenant-a", {PEANUTS_FACT, PEANUTS_EPISODE, REX_FACT, REX_EPISODE}),
        (
            "?happened_at__gte=2020-01-01T00:00:00%2B00:00"
            "&happened_at__lt=2020-01-02T00:00:00%2B00:00",
            {REX_FACT, REX_EPISODE},
        ),
    ],
)
def test_the_memory_list_searches_and_filters(
    support_client, client_a, query, expected
):
    post_message(client_a, "u1", PEANUTS)
    client_a.post(
        "/api/v1/memories/import",
        {
            "userId": "u2",
            "messages": [
                {"text": "I have a dog named Rex.", "sentAt": "2020-01-01T12:00:00Z"}
            ],
        },
        format="json",
    )
    moderate(support_client, Memory.objects.get(kind="fact", text=PEANUTS), "hide")

    response = support_client.get(MEMORIES + query)

    assert response.status_code == 200
    shown = {
        (memory.kind, memory.text) for memory in response.context["cl"].result_list
    }
    assert shown == expected


def test_the_end_users_page_lists_one_tenants_users_with_counts(
    support_client, client_a, client_b, told
):
    post_message(client_a, "u2", "I live in Porto.")
    post_message(client_b, "other-tenant-user", "I live in Oslo.")
    moderate(support_client, told[PEANUTS], "hide")
    tenant = told[PEANUTS].tenant

    with CaptureQueriesContext(connection) as queries:
        response = support_client.get(f"/admin/accounts/tenant/{tenant.pk}/end-users/")

    assert response.status_code == 200
    rows = {row["user_id"]: row for row in response.context["page"]}
    assert set(rows) == {"u1", "u2"}
    # Facts and episodes are memories alike: 3 facts (one hidden), 3 episodes.
    assert (rows["u1"]["active"], rows["u1"]["hidden"], rows["u1"]["total"]) == (
        5,
        1,
        6,
    )
    assert rows["u2"]["total"] == 2
    assert "other-tenant-user" not in response.content.decode()
    # One aggregate query for the page's rows, one count for the paginator.
    on_memories = [
        query for query in queries if 'FROM "memories_memory"' in query["sql"]
    ]
    assert len(on_memories) == 2
    tenant_page = support_client.get(f"/admin/accounts/tenant/{tenant.pk}/change/")
    assert "7 active, 1 hidden, 0 deleted" in tenant_page.content.decode()
    assert f"/admin/accounts/tenant/{tenant.pk}/end-users/" in (
        tenant_page.content.decode()
    )
