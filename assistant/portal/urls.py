from django.urls import path

from assistant.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("collections/<int:collection_id>/", views.collection_detail, name="collection"),
    path("collections/<int:collection_id>/upload", views.upload, name="upload"),
    path("collections/<int:collection_id>/documents.json", views.documents_status, name="documents_status"),
    path("documents/<int:document_id>/delete", views.document_delete, name="document_delete"),
    path("collections/<int:collection_id>/access/grant", views.access_grant, name="access_grant"),
    path("collections/<int:collection_id>/access/<int:grant_id>/revoke", views.access_revoke, name="access_revoke"),
    path("collections/<int:collection_id>/restrict", views.document_restrict, name="document_restrict"),
    path("feedback.jsonl", views.feedback_export, name="feedback_export"),
]
