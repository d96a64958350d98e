from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from assistant import views
from assistant.ops import views as ops_views

urlpatterns = [
    path("", include("assistant.chat.urls")),
    path("portal/", include("assistant.portal.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("favicon.ico", views.favicon),
    # The page scripts' texts in the user's language (a script file: no inline script).
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["assistant"]), name="javascript-catalog"),
]

# --- Audit log and single sign-on ---
urlpatterns += [path("portal/audit/", include("assistant.audit.urls"))]
if settings.OIDC_ENABLED:  # nothing of the OIDC library is imported otherwise
    urlpatterns += [path("oidc/", include("mozilla_django_oidc.urls"))]

# The REST API and the OpenAI-compatible endpoints (for SDKs pointed at <site>/v1).
from assistant.api import openai_compat  # noqa: E402
from assistant.api.errors import unknown_endpoint  # noqa: E402
from assistant.api.v1 import api as api_v1  # noqa: E402

urlpatterns += [
    path("api/v1/", api_v1.urls),
    path("api/v1/<path:rest>", unknown_endpoint),
    path("v1/models", openai_compat.models, name="openai-models"),
    path("v1/chat/completions", openai_compat.chat_completions, name="openai-chat-completions"),
    path("account/", include("assistant.accounts.urls")),
    # SCIM 2.0 provisioning (Entra ID, Okta); only SCIM tokens open it (docs/directory.md).
    path("scim/v2/", include("assistant.directory.scim.urls")),
]
