from django.urls import path

from assistant.portal import connector_edit, connectors, dashboard, documents, model_page, people, retrieval_test, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("collections/<int:collection_id>/", views.collection_detail, name="collection"),
    path("collections/<int:collection_id>/upload", documents.upload, name="upload"),
    path("collections/<int:collection_id>/documents.json", documents.documents_status, name="documents_status"),
    path("collections/<int:collection_id>/documents/action", documents.documents_action, name="documents_action"),
    path("documents/<int:document_id>/", documents.document_detail, name="document"),
    path("documents/<int:document_id>/delete", views.document_delete, name="document_delete"),
    path("collections/<int:collection_id>/access/grant", views.access_grant, name="access_grant"),
    path("collections/<int:collection_id>/access/<int:grant_id>/revoke", views.access_revoke, name="access_revoke"),
    path("collections/<int:collection_id>/restrict", views.document_restrict, name="document_restrict"),
    path("feedback.jsonl", views.feedback_export, name="feedback_export"),
    path("collections/<int:collection_id>/edit", views.collection_edit, name="collection_edit"),
    path("collections/<int:collection_id>/connectors/add", connectors.connector_add, name="connector_add"),
    path(
        "collections/<int:collection_id>/connectors/add-http", connectors.connector_add_http, name="connector_add_http"
    ),
    path(
        "collections/<int:collection_id>/connectors/progress.json",
        connectors.connectors_progress,
        name="connectors_progress",
    ),
    path(
        "collections/<int:collection_id>/connectors/<int:connector_id>/action",
        connectors.connector_action,
        name="connector_action",
    ),
    path(
        "collections/<int:collection_id>/connectors/<int:connector_id>/edit",
        connector_edit.connector_edit,
        name="connector_edit",
    ),
    path("people/", people.users, name="people"),
    path("people/new", people.user_create, name="people_user_create"),
    path("people/users/<int:user_id>/", people.user_detail, name="people_user"),
    path("people/users/<int:user_id>/active", people.user_active, name="people_user_active"),
    path("people/members/add", people.member_add, name="people_member_add"),
    path("people/members/remove", people.member_remove, name="people_member_remove"),
    path("people/groups/", people.groups, name="people_groups"),
    path("people/groups/<int:group_id>/", people.group_detail, name="people_group"),
    path("people/groups/<int:group_id>/delete", people.group_delete, name="people_group_delete"),
    path("retrieval-test/", retrieval_test.retrieval_test_page, name="retrieval_test"),
    path("models/", model_page.models_page, name="models"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
]
