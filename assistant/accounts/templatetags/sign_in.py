from django import template
from django.conf import settings
from django.urls import reverse

register = template.Library()


@register.simple_tag
def sso_login_url() -> str:
    """Where the single sign-on button points, or "" when single sign-on is off."""
    return reverse("oidc_authentication_init") if settings.OIDC_ENABLED else ""
