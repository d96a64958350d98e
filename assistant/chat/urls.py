from django.urls import path

from assistant.chat import views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("chat/new", views.conversation_new, name="new"),
    path("chat/<int:conversation_id>/", views.conversation, name="conversation"),
    path("chat/<int:conversation_id>/ask", views.ask, name="ask"),
    path("chat/<int:conversation_id>/rename", views.conversation_rename, name="rename"),
    path("chat/<int:conversation_id>/delete", views.conversation_delete, name="delete"),
    path("chat/answers/<int:message_id>/feedback", views.feedback, name="feedback"),
    path("chat/answers/<int:message_id>/sources/<int:n>", views.source, name="source"),
    path("chat/documents/<int:document_id>/", views.document, name="document"),
    path("chat/documents/<int:document_id>/original", views.document_original, name="document_original"),
]
