from django.apps import AppConfig


class MemoriesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "memories"
    verbose_name = "Memories"

    def ready(self) -> None:
        from memories import checks  # noqa: F401 - registers the start-up checks
