from django.urls import path

from assistant.chat import views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("chat/new", views.conversation_new, name="new"),
    path("chat/<int:conversation_id>/", views.conversation, name="conversation"),
    path("chat/<int:conversation_id>/ask", views.ask, name="ask"),
    path("chat/answers/<int:message_id>/feedback", views.feedback, name="feedback"),
]
