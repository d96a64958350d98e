from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "assistant.portal"
    label = "portal"
