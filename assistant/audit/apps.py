from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "assistant.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        # Sign-in events and user deletions reach the audit log only through
        # signals: Django's auth views and every way of deleting a user send them.
        from assistant.audit import receivers  # noqa: F401
