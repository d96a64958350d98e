from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "assistant.chat"
    label = "chat"
