from django.apps import AppConfig


class AssistantConfig(AppConfig):
    """Project-level commands (``serve``) and the read replicas' fences (``assistant.replica``)."""

    name = "assistant"
    verbose_name = "Assistant"
