from django.contrib import admin

from assistant.chat.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    readonly_fields = (
        "role",
        "content",
        "retrieval_query",
        "model",
        "chunk_ids",
        "removed_citations",
        "error",
        "latency_ms",
        "created_at",
    )
    fields = readonly_fields


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "user", "collection", "updated_at")
    inlines = [MessageInline]
