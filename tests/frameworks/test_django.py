"""A Django project behind the WSGI middleware (``application = BanataMiddleware(get_wsgi_application(), auth)``).

Settings are configured in-test: no database, no apps, no Django middleware; this module is the URLconf.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django
import httpx
import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test.utils import override_settings
from django.urls import path
from harness import SECRET, SITE

from banata_middleware import BanataAuth, BanataAuthConfig, PasswordHashing
from banata_middleware.adapters.werkzeug import BanataMiddleware
from banata_middleware.simulator.clocks import FrozenClock

from .journey import two_factor_sign_in


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("home")


def me(request: HttpRequest) -> JsonResponse:
    ident = request.META["banata"]
    return JsonResponse({"userId": ident.user_id, "aal": ident.aal})


urlpatterns = [path("", home), path("me", me)]


@pytest.fixture(scope="module")
def django_wsgi() -> Iterator[Any]:
    if not settings.configured:
        settings.configure(
            DEBUG=False, SECRET_KEY="django-insecure-" + "k" * 40, ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["testserver"], INSTALLED_APPS=[], MIDDLEWARE=[], DATABASES={}, USE_TZ=True,
        )
    django.setup()
    from django.core.wsgi import get_wsgi_application

    # Settings are configured once per process: another module (test_raw_paths) may have done it.
    with override_settings(ROOT_URLCONF=__name__):
        yield get_wsgi_application()


@pytest.fixture
def client(django_wsgi: Any, clock: FrozenClock) -> Iterator[httpx.Client]:
    auth = BanataAuth(BanataAuthConfig(
        app_name="Django Test", site_url=SITE, secret=SECRET, clock=clock, public_paths=("/",),
        password_hashing=PasswordHashing(n=2**8),
    ))
    application = BanataMiddleware(django_wsgi, auth)
    with httpx.Client(transport=httpx.WSGITransport(app=application), base_url=SITE) as c:
        yield c


def test_two_factor_sign_in_reaches_the_django_view(client: httpx.Client, clock: FrozenClock) -> None:
    two_factor_sign_in(client, clock, protected="/me")
    assert client.get("/").text == "home"
