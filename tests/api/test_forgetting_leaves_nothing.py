"""After every kind of forget, the forgotten words are in no file of the data
directory (databases and their WAL, as bytes) and in no search."""

from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from memories import moderation
from memories.models import Memory
from tests.helpers import post_forget, post_message

SECRET = "I hid the spare key under the zephyrine flowerpot."
KEPT = "I brew quokkamint tea every morning."


def _data_files() -> list[Path]:
    folders = {Path(settings.LTM_LOCAL_VECTOR_STORE_PATH).parent}
    if connection.vendor == "sqlite":
        folders.add(Path(connection.settings_dict["NAME"]).parent)
    return [
        path
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and ".sqlite3" in path.name
    ]


def _files_with(word: str) -> list[str]:
    return [str(path) for path in _data_files() if word.encode() in path.read_bytes()]


def _forget_by_delete(client, tenant):
    fact = Memory.objects.get(tenant=tenant, kind="fact", text=SECRET)
    assert client.delete(f"/api/v1/memories/{fact.vector_key}").status_code == 204


def _forget_by_staff(client, tenant):
    fact = Memory.objects.get(tenant=tenant, kind="fact", text=SECRET)
    moderation.memory_delete_by_staff(
        memory=fact, actor=moderation.staff_actor("ana"), reason="user asked"
    )


def _forget_one_fact(client, tenant):
    post_forget(client, "u1", "Forget that I hid the spare key under the flowerpot.")


def _forget_the_topic(client, tenant):
    post_forget(client, "u1", "Forget everything about the zephyrine flowerpot.")


def _forget_everything(client, tenant):
    post_forget(client, "u1", "Forget everything you know about me.")


def _forget_user_command(client, tenant):
    call_command("forget_user", "--tenant", tenant.slug, "u1", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "forget",
    [
        _forget_one_fact,
        _forget_the_topic,
        _forget_everything,
        _forget_by_delete,
        _forget_by_staff,
        _forget_user_command,
    ],
)
def test_the_words_leave_every_file_and_every_search(client_a, tenant_a, forget):
    post_message(client_a, "u1", "Good morning!")
    post_message(client_a, "u1", SECRET)
    post_message(client_a, "u1", "Later I also watered the zephyrine flowerpot.")
    post_message(client_a, "u1", KEPT)
    assert _files_with("zephyrine")
    forget(client_a, tenant_a)
    if forget in (_forget_the_topic, _forget_everything, _forget_user_command):
        # Every memory of the topic went, the later message's too.
        assert _files_with("zephyrine") == []
    assert _files_with("spare key") == []
    for row in Memory.objects.filter(tenant=tenant_a):
        assert "spare key" not in row.text + row.context_text + row.search_body
    hits = client_a.post(
        "/api/v1/memories/search",
        {"userId": "u1", "query": "spare key flowerpot", "topK": 10},
        format="json",
    ).json()["hits"]
    assert not [hit for hit in hits if "spare key" in hit["text"]]
    if forget not in (_forget_everything, _forget_user_command):
        assert Memory.objects.filter(tenant=tenant_a, text=KEPT, status="active")
