"""Helpers shared by the tests."""

from django.apps import apps
from django.db import connection, models


def post_message(client, user_id: str, message: str, *, path: str = "/api/v1/message"):
    return client.post(path, {"userId": user_id, "message": message}, format="json")


def post_forget(client, user_id: str, message: str, *, path: str = "/api/v1/forget"):
    return client.post(path, {"userId": user_id, "message": message}, format="json")


def database_rows_containing(needle: str) -> list[str]:
    """Every row of every table whose text columns contain `needle` (any case)."""
    found = []
    needle = needle.lower()
    for model in apps.get_models():
        text_fields = [
            field.column
            for field in model._meta.concrete_fields
            if isinstance(field, models.CharField | models.TextField)
        ]
        if not text_fields:
            continue
        table = connection.ops.quote_name(model._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(c) for c in text_fields)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {table}")  # noqa: S608
            for row in cursor.fetchall():
                if any(value and needle in str(value).lower() for value in row):
                    found.append(f"{model._meta.label}: {row}")
    return found


def vector_keys(store, tenant, user_id="u1") -> set[str]:
    """The keys the vector store holds for one end user."""
    from memories.vectorstores import Namespace

    return set(
        store.list_keys(namespace=Namespace(tenant_id=tenant.pk, user_id=user_id))
    )


def active_keys(user_id="u1") -> set[str]:
    """The vector keys of one end user's active memories (all tenants)."""
    from memories.models import Memory

    return {
        str(key)
        for key in Memory.objects.filter(user_id=user_id, status="active").values_list(
            "vector_key", flat=True
        )
    }
