from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        # Other people's questions and answers (which may quote documents restricted
        # away from this admin user) are for superusers only; the audit log has its role.
        conversations = super().get_queryset(request)
        if request.user.is_superuser:
            return conversations
        return conversations.filter(user_id=request.user.pk)
