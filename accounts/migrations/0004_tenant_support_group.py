"""Support scopes: the "support" group sees every tenant (support_all_tenants);
the new "tenant support" group may do what support does, for the tenants each
member is assigned to (Tenant.support_staff). Frozen lists, as in memories'
0006_support_group."""

import importlib

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

TENANT_SUPPORT_GROUP = "tenant support"
ALL_TENANTS = ("accounts", "support_all_tenants")


def grant_support_scopes(apps, schema_editor):
    using = schema_editor.connection.alias if schema_editor else "default"
    support = importlib.import_module("memories.migrations.0006_support_group")
    create_permissions(
        global_apps.get_app_config("accounts"), apps=apps, using=using, verbosity=0
    )
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def permission(app_label, codename):
        return Permission.objects.using(using).get(
            content_type__app_label=app_label, codename=codename
        )

    wanted = [permission(*each) for each in support.SUPPORT_PERMISSIONS]
    everyone, _ = Group.objects.using(using).get_or_create(name=support.SUPPORT_GROUP)
    everyone.permissions.add(permission(*ALL_TENANTS))
    scoped, _ = Group.objects.using(using).get_or_create(name=TENANT_SUPPORT_GROUP)
    scoped.permissions.set(wanted)


def remove_support_scopes(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(
        name=TENANT_SUPPORT_GROUP
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_support_scopes"),
        ("memories", "0006_support_group"),
    ]

    operations = [migrations.RunPython(grant_support_scopes, remove_support_scopes)]
