from django.urls import path

from assistant.audit import views

app_name = "audit"

urlpatterns = [
    path("", views.log, name="log"),
    path("export.<str:fmt>", views.export, name="export"),
    path("data-boundary", views.data_boundary, name="boundary"),
    path("delete-user", views.user_delete, name="user_delete"),
]
