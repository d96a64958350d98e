from django.contrib import admin
from django.urls import include, path

from assistant import views

urlpatterns = [
    path("", include("assistant.chat.urls")),
    path("portal/", include("assistant.portal.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
]
