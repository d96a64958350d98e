from django.urls import path

from assistant.directory.scim import views

app_name = "scim"

urlpatterns = [
    path(".search", views.search, name="search"),
    path("Users", views.users, name="users"),
    path("Users/.search", views.users_search, name="users_search"),
    path("Groups/.search", views.groups_search, name="groups_search"),
    path("Users/<str:user_id>", views.user, name="user"),
    path("Groups", views.groups, name="groups"),
    path("Groups/<str:group_id>", views.group, name="group"),
    path("ServiceProviderConfig", views.service_provider_config, name="config"),
    path("ResourceTypes", views.resource_types, name="resource_types"),
    path("ResourceTypes/<str:name>", views.resource_types, name="resource_type"),
    path("Schemas", views.schemas, name="schemas"),
    path("Schemas/<str:schema_id>", views.schemas, name="schema"),
    path("<path:rest>", views.unknown, name="unknown"),
]
