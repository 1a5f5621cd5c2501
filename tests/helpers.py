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
