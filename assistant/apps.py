from django.apps import AppConfig


class AssistantConfig(AppConfig):
    """Project-level commands (``serve``) live in this app; it has no models."""

    name = "assistant"
    verbose_name = "Assistant"
