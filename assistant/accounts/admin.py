from django.contrib import admin

from assistant.accounts.models import CollectionGrant


@admin.register(CollectionGrant)
class CollectionGrantAdmin(admin.ModelAdmin):
    list_display = ("collection", "group", "user", "role", "created_at")
    list_filter = ("role", "collection")
