"""The "support" group: what support staff may see and do in the admin.

They view tenants, tokens (never a token's digest: the admin does not show it),
memories with their provenance and history, messages and the vector outbox, and
may moderate memories. Nothing on Django's own users and groups. The permission
list is frozen here, as a migration must be; a later change is a new migration.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT_GROUP = "support"
SUPPORT_PERMISSIONS = [
    ("accounts", "view_tenant"),
    ("accounts", "view_apitoken"),
    ("memories", "view_memory"),
    ("memories", "view_memorysource"),
    ("memories", "view_memoryevent"),
    ("memories", "view_message"),
    ("memories", "view_vectoroperation"),
    ("memories", "moderate_memory"),
]


def create_support_group(apps, schema_editor):
    using = schema_editor.connection.alias if schema_editor else "default"
    # Permissions are normally made after the whole migrate run; the group needs
    # them now.
    for label in {app_label for app_label, _ in SUPPORT_PERMISSIONS}:
        create_permissions(
            global_apps.get_app_config(label), apps=apps, using=using, verbosity=0
        )
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(using).get_or_create(name=SUPPORT_GROUP)
    wanted = [
        Permission.objects.using(using).get(
            content_type__app_label=app_label, codename=codename
        )
        for app_label, codename in SUPPORT_PERMISSIONS
    ]
    group.permissions.set(wanted)


def delete_support_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(
        name=SUPPORT_GROUP
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("accounts", "0002_tenant_usage"),
        ("memories", "0005_hidden_status_and_moderation"),
    ]

    operations = [migrations.RunPython(create_support_group, delete_support_group)]
