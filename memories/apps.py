from django.apps import AppConfig


class MemoriesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "memories"
    verbose_name = "Memories"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from ltm_project.checkpoints import on_connection_created
        from memories import checks  # noqa: F401 - registers the start-up checks

        connection_created.connect(on_connection_created)
