from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "assistant.accounts"
    label = "accounts"
