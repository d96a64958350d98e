"""The site's URLs with single sign-on's routes, as assistant/urls.py has them when it is on
(that module decides once, at import, from the environment)."""

from django.urls import include, path

from assistant.urls import urlpatterns as site

urlpatterns = [path("oidc/", include("mozilla_django_oidc.urls")), *site]
