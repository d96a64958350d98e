from django.conf import settings
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

# --- Audit log and single sign-on ---
urlpatterns += [path("portal/audit/", include("assistant.audit.urls"))]
if settings.OIDC_ENABLED:  # nothing of the OIDC library is imported otherwise
    urlpatterns += [path("oidc/", include("mozilla_django_oidc.urls"))]
