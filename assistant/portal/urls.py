from django.urls import path

from assistant.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("collections/<int:collection_id>/", views.collection_detail, name="collection"),
    path("collections/<int:collection_id>/upload", views.upload, name="upload"),
    path("collections/<int:collection_id>/documents.json", views.documents_status, name="documents_status"),
    path("documents/<int:document_id>/delete", views.document_delete, name="document_delete"),
    path("feedback.jsonl", views.feedback_export, name="feedback_export"),
]
