"""pytest fixtures for testing an app's two-factor flows: ``pip install banata-middleware`` and use them.

Registered through the ``pytest11`` entry point ``banata_mfa``, so the fixtures are there in any
project that installs the package (``-p no:banata_mfa`` turns them off). Time is a test input:

- ``mfa_clock`` -- the :class:`~banata_middleware.simulator.clocks.FrozenClock` the server must read:
  ``BanataAuthConfig(..., clock=mfa_clock)``. It is the process-wide ``clocks.shared_clock()``, reset
  for every test, so an app built once at import with ``clock=shared_clock()`` follows it too.
  It starts at the real time rounded down to a 30 s TOTP step, plus 10 s (so a test moving it by
  less than 20 s never crosses a step by accident); ``@pytest.mark.mfa_time(at)`` pins ``at``.
- ``mfa_device_clock`` -- what the virtual phone reads: ``mfa_clock`` plus a skew, which
  ``with clocks.skew(seconds=-45):`` changes (the phone 45 s behind the server).
- ``mfa_freeze`` -- ``mfa_clock`` with ``time.time()``/``datetime.now()`` following it (freezegun).
- ``mfa_authenticator`` -- a :class:`~banata_middleware.simulator.VirtualAuthenticator` on the device clock.
- ``mfa_passkey`` / ``mfa_passkey_factory`` -- :class:`~banata_middleware.simulator.VirtualPasskey`\\ s.
- ``mfa_inbox`` -- an in-memory sender of one-time codes (:class:`~banata_middleware.otp.Inbox`),
  emptied for each test: ``OtpConfig(sender=mfa_inbox)`` (or ``sender=outbox.shared_inbox()`` for an
  app built at import), then ``mfa_inbox.latest_code(user_id=...)`` or ``MfaUser.latest_otp()``.
- ``mfa_outbox`` -- an in-memory notifier (:class:`~banata_middleware.delivery.Outbox`), emptied for
  each test: ``BanataAuth(config, notifier=mfa_outbox)`` (or ``notifier=outbox.shared_outbox()`` for
  an app built at import), then ``mfa_outbox.wait_for("two_factor.enabled", user_id=...)``.

Talking to the app (a synchronous ``httpx.Client``, in-process):

- ``mfa_app`` -- **yours to define**: the app wrapped by ``BanataMiddleware`` (ASGI or WSGI),
  configured with ``clock=mfa_clock``.
- ``mfa_site_url`` (default ``http://testserver``) and ``mfa_base_path`` (default ``/api/auth``) --
  override them to match your ``BanataAuthConfig``.
- ``mfa_client_factory`` -- ``(**options) -> httpx.Client``: a new browser on ``mfa_app`` (own
  cookies; sends the site's ``Origin``); closed after the test.
- ``mfa_client`` -- one such browser.
- ``mfa_enroll`` -- ``(client=None, *, email=None, password=..., ...) -> MfaUser``: sign up, enable
  two-factor, scan the URI into ``mfa_authenticator``, confirm. ``client`` defaults to ``mfa_client``;
  pass any ``httpx.Client`` (e.g. one from ``banata_middleware.simulator.testing.asgi_client``).
- ``mfa_user`` -- ``mfa_enroll()``: an enrolled user signed in on ``mfa_client``.

Nothing beyond the base install is imported until a fixture needs it (httpx for clients,
freezegun for ``mfa_freeze``, cbor2 for passkeys).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ..clock import SYSTEM_CLOCK
from . import clocks
from .authenticator import VirtualAuthenticator
from .testing import DEFAULT_BASE_PATH, DEFAULT_PASSWORD, SITE_URL, MfaEnroll, MfaUser, app_client, enroll

if TYPE_CHECKING:
    import httpx

    from ..delivery import Outbox
    from ..otp import Inbox
    from .passkey import VirtualPasskey

__all__ = [
    "mfa_authenticator",
    "mfa_base_path",
    "mfa_client",
    "mfa_client_factory",
    "mfa_clock",
    "mfa_device_clock",
    "mfa_enroll",
    "mfa_freeze",
    "mfa_inbox",
    "mfa_outbox",
    "mfa_passkey",
    "mfa_passkey_factory",
    "mfa_site_url",
    "mfa_user",
]

_PHASE = 10  # seconds into a 30 s step where mfa_clock starts by default


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mfa_time(at): start mfa_clock at Unix time `at` instead of (about) now",
    )


def _start_time(request: pytest.FixtureRequest) -> float:
    marker = request.node.get_closest_marker("mfa_time")
    if marker is not None:
        if len(marker.args) != 1 or marker.kwargs:
            pytest.fail("use @pytest.mark.mfa_time(at) with one Unix time in seconds", pytrace=False)
        return float(marker.args[0])
    return math.floor(SYSTEM_CLOCK.now() / 30) * 30 + _PHASE


@pytest.fixture
def mfa_clock(request: pytest.FixtureRequest) -> Iterator[clocks.FrozenClock]:
    """The server's clock: give it to ``BanataAuthConfig(clock=...)``. Move it with ``advance``,
    ``set``, ``to_next_step``... The device clock and every virtual device follow."""
    clock = clocks.reset_shared_clocks(_start_time(request))
    yield clock
    clocks.device_clock().seconds = 0.0


@pytest.fixture
def mfa_device_clock(mfa_clock: clocks.FrozenClock) -> clocks.OffsetClock:
    """The phones' clock: ``mfa_clock`` plus the skew that ``clocks.skew(seconds=...)`` sets
    (or set ``.seconds`` directly). Starts in step with the server."""
    return clocks.device_clock()


@pytest.fixture
def mfa_freeze(mfa_clock: clocks.FrozenClock) -> Iterator[clocks.FrozenClock]:
    """``mfa_clock``, with ``time.time()`` and ``datetime.now()`` following it for the test (for app
    code that reads the system time directly). Needs freezegun (the ``simulator`` extra)."""
    try:
        import freezegun  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        pytest.fail(f"mfa_freeze needs freezegun ({exc}): pip install 'banata-middleware[simulator]'", pytrace=False)
    with clocks.freeze(mfa_clock):
        yield mfa_clock


@pytest.fixture
def mfa_outbox() -> Outbox:
    """The notices the app "sent" (``Notice``\\ s, in order): pass it as ``BanataAuth(...,
    notifier=mfa_outbox)``. Delivery runs after commit on a background thread: assert with
    ``mfa_outbox.wait_for(kind, user_id=...)``, or call ``auth.deliver_pending()`` first."""
    from .outbox import shared_outbox

    outbox = shared_outbox()
    outbox.clear()
    return outbox


@pytest.fixture
def mfa_inbox() -> Inbox:
    """The one-time codes the app "sent" by email or SMS (``OtpMessage``\\ s, in order): pass it as
    ``OtpConfig(sender=mfa_inbox)``. Sending happens on the request's path, so a code is there as
    soon as ``send-otp`` answers: ``mfa_inbox.latest_code(user_id=...)``. ``MfaUser`` reads it too."""
    from .outbox import shared_inbox

    inbox = shared_inbox()
    inbox.clear()
    return inbox


@pytest.fixture
def mfa_authenticator(mfa_device_clock: clocks.OffsetClock) -> VirtualAuthenticator:
    """A phone authenticator app reading the device clock; ``mfa_enroll`` scans into it."""
    return VirtualAuthenticator(clock=mfa_device_clock)


@pytest.fixture
def mfa_passkey_factory() -> Callable[..., VirtualPasskey]:
    """``(**behaviour) -> VirtualPasskey``: a new software authenticator per call (arguments as
    ``VirtualPasskey``: ``algorithm``, ``user_verified``, ``sign_count_increment``...). Needs cbor2
    (the ``passkeys`` or ``simulator`` extra)."""
    try:
        from .passkey import VirtualPasskey
    except ImportError as exc:  # pragma: no cover - depends on the install
        pytest.fail(
            f"the passkey fixtures need cbor2 ({exc}): pip install 'banata-middleware[simulator]'", pytrace=False
        )

    def make(**behaviour: Any) -> VirtualPasskey:
        return VirtualPasskey(**behaviour)

    return make


@pytest.fixture
def mfa_passkey(mfa_passkey_factory: Callable[..., VirtualPasskey]) -> VirtualPasskey:
    """A platform passkey provider with defaults: ES256, user verified, discoverable credentials."""
    return mfa_passkey_factory()


@pytest.fixture
def mfa_site_url() -> str:
    """The base URL of ``mfa_client``: override to equal your config's ``site_url``."""
    return SITE_URL


@pytest.fixture
def mfa_base_path() -> str:
    """Where the auth endpoints live: override to equal your config's ``base_path``."""
    return DEFAULT_BASE_PATH


def _project_app(request: pytest.FixtureRequest) -> Any:
    try:
        return request.getfixturevalue("mfa_app")
    except pytest.FixtureLookupError:
        pytest.fail(
            "mfa_client needs your app: define a fixture `mfa_app` returning it wrapped by BanataMiddleware "
            "(configured with clock=mfa_clock), or pass your own httpx.Client to mfa_enroll(client)",
            pytrace=False,
        )


@pytest.fixture
def mfa_client_factory(request: pytest.FixtureRequest, mfa_site_url: str) -> Iterator[Callable[..., httpx.Client]]:
    """``(**options) -> httpx.Client``: a new browser (its own cookie jar) on your ``mfa_app``, ASGI or
    WSGI, sending the site's Origin. Options as ``testing.asgi_client``/``wsgi_client``
    (``origin``, ``headers``, ``client_address``/``remote_addr``...). All are closed after the test."""
    app = _project_app(request)
    made: list[httpx.Client] = []

    def make(**options: Any) -> httpx.Client:
        options.setdefault("base_url", mfa_site_url)
        client = app_client(app, **options)
        made.append(client)
        return client

    yield make
    for client in reversed(made):
        client.close()


@pytest.fixture
def mfa_client(mfa_client_factory: Callable[..., httpx.Client]) -> httpx.Client:
    """A browser on your ``mfa_app``: a synchronous ``httpx.Client`` that keeps cookies."""
    return mfa_client_factory()


@pytest.fixture
def mfa_enroll(
    request: pytest.FixtureRequest,
    mfa_clock: clocks.FrozenClock,
    mfa_authenticator: VirtualAuthenticator,
    mfa_base_path: str,
) -> MfaEnroll:
    """``mfa_enroll(client=None, *, email=None, password=..., name=..., sign_up=True, confirm=True,
    authenticator=None, base_path=None, origin=None) -> MfaUser``.

    Signs a new user up through ``client`` (default: ``mfa_client``), enables two-factor, scans the
    ``totpURI`` into ``authenticator`` (default: ``mfa_authenticator``) and confirms with its code.
    The user's step is then spent: ``MfaUser.fresh_code()`` and the sign-in helpers move ``mfa_clock``
    to the next step when they need a new code.
    """

    def enroll_user(
        client: httpx.Client | None = None,
        *,
        email: str | None = None,
        password: str = DEFAULT_PASSWORD,
        name: str = "Test User",
        sign_up: bool = True,
        confirm: bool = True,
        authenticator: VirtualAuthenticator | None = None,
        base_path: str | None = None,
        origin: str | None = None,
    ) -> MfaUser:
        http: httpx.Client = request.getfixturevalue("mfa_client") if client is None else client
        return enroll(
            http,
            authenticator=mfa_authenticator if authenticator is None else authenticator,
            email=email,
            password=password,
            name=name,
            sign_up=sign_up,
            confirm=confirm,
            base_path=mfa_base_path if base_path is None else base_path,
            origin=origin,
            clock=mfa_clock,
        )

    return enroll_user


@pytest.fixture
def mfa_user(mfa_enroll: MfaEnroll) -> MfaUser:
    """A new user with two-factor on, signed in (AAL2) on ``mfa_client``."""
    return mfa_enroll()
