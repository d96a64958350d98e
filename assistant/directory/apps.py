from django.apps import AppConfig


class DirectoryConfig(AppConfig):
    name = "assistant.directory"
    label = "directory"
