"""Configuration: secrets, URLs and the environment."""

from __future__ import annotations

import pytest

from banata_middleware import BanataAuthConfig

GOOD = "z" * 32


def test_a_secret_shorter_than_32_characters_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        BanataAuthConfig(app_name="A", site_url="https://a.example", secret="short")
    with pytest.raises(ValueError, match="previous_secrets"):
        BanataAuthConfig(app_name="A", site_url="https://a.example", secret=GOOD, previous_secrets=("short",))


@pytest.mark.parametrize("url", ["a.example", "ftp://a.example", "https://", ""])
def test_site_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ValueError, match="site_url"):
        BanataAuthConfig(app_name="A", site_url=url, secret=GOOD)


def test_from_env_reads_the_documented_variables() -> None:
    config = BanataAuthConfig.from_env({
        "SITE_URL": "https://shop.example", "BANATA_AUTH_SECRET": GOOD, "PASSKEY_RP_ID": "shop.example",
        "PASSKEY_ORIGIN": "https://shop.example, https://admin.shop.example", "APP_NAME": "Shop",
        "BANATA_AUTH_PREVIOUS_SECRETS": "o" * 40,
    })
    assert (config.site_url, config.secret, config.app_name) == ("https://shop.example", GOOD, "Shop")
    assert config.passkey.rp_id == "shop.example"
    assert config.passkey.origins == ("https://shop.example", "https://admin.shop.example")
    assert config.previous_secrets == ("o" * 40,)
    assert config.secure_cookies and config.site_origin == "https://shop.example"


def test_from_env_accepts_better_auths_secret_name_and_refuses_none() -> None:
    assert BanataAuthConfig.from_env({"BETTER_AUTH_SECRET": GOOD}).secret == GOOD
    with pytest.raises(ValueError, match="BANATA_AUTH_SECRET"):
        BanataAuthConfig.from_env({})
    with pytest.raises(ValueError, match="at least 32"):
        BanataAuthConfig.from_env({"BANATA_AUTH_SECRET": "x"})


def test_https_site_gets_host_prefixed_cookies() -> None:
    from banata_middleware import BanataAuth
    from banata_middleware.flows.passkeys import PasskeyFlows

    auth = BanataAuth(BanataAuthConfig(app_name="A", site_url="https://a.example", secret=GOOD))
    # __Host- (not __Secure-): a sibling subdomain cannot plant a cookie that shadows ours
    assert (auth.flows.session_cookie, auth.flows.challenge_cookie, auth.flows.trust_cookie) == (
        "__Host-banata.session_token", "__Host-banata.two_factor", "__Host-banata.trust_device")
    assert PasskeyFlows(auth.flows).cookie == "__Host-banata.passkey"
    name, value = auth.flows.cookie_header(auth.flows.session_cookie, "v", 10)
    assert name == "set-cookie" and "Secure" in value and "HttpOnly" in value
    assert "Path=/" in value and "Domain" not in value  # what browsers require of a __Host- cookie


def test_allowed_top_origins_must_be_a_tuple_not_a_string() -> None:
    from banata_middleware import PasskeyConfig

    assert PasskeyConfig(allowed_top_origins=("https://portal.example",)).allowed_top_origins
    with pytest.raises(ValueError, match="allowed_top_origins"):
        PasskeyConfig(allowed_top_origins="https://portal.example")  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["public_paths", "trusted_origins", "previous_secrets"])
def test_a_str_where_a_tuple_is_expected_is_refused_showing_the_comma(option: str) -> None:
    with pytest.raises(ValueError, match=rf"{option} must be a tuple of strings, not a str: write "
                                         rf"{option}=\('/health',\) \(note the comma\)"):
        BanataAuthConfig(app_name="A", site_url="https://a.example", secret=GOOD, **{option: "/health"})


def test_passkey_origins_as_a_str_is_refused() -> None:
    from banata_middleware import PasskeyConfig

    with pytest.raises(ValueError, match=r"PasskeyConfig.origins must be a tuple"):
        PasskeyConfig(origins="https://a.example")  # type: ignore[arg-type]


@pytest.mark.parametrize(("option", "pattern", "message"), [
    ("public_paths", "health", "patterns start with '/'"),
    ("public_paths", "*", "patterns start with '/'"),
    ("public_paths", "/static/*/css", "'\\*' is allowed only at the end"),
    ("public_paths", "/a*b", "'\\*' is allowed only at the end"),
    ("fresh_paths", "api/billing/*", "patterns start with '/'"),
    ("fresh_paths", "/api/*/billing", "'\\*' is allowed only at the end"),
])
def test_path_patterns_start_with_a_slash_and_have_a_star_only_at_the_end(option: str, pattern: str,
                                                                         message: str) -> None:
    value: object = (pattern,) if option == "public_paths" else {pattern: 300}
    with pytest.raises(ValueError, match=message):
        BanataAuthConfig(app_name="A", site_url="https://a.example", secret=GOOD, **{option: value})  # type: ignore[arg-type]


def test_valid_patterns_are_accepted() -> None:
    config = BanataAuthConfig(app_name="A", site_url="https://a.example", secret=GOOD,
                              public_paths=("/", "/static/*", "/*"), fresh_paths={"/api/billing/*": 300, "/x": 60})
    assert config.public_paths == ("/", "/static/*", "/*")


def test_from_env_warns_when_site_url_is_unset(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="banata_middleware.config"):
        config = BanataAuthConfig.from_env({"BANATA_AUTH_SECRET": GOOD})
    assert (config.site_url, config.app_name) == ("http://localhost:3000", "Banata")  # the documented defaults
    assert any("SITE_URL is not set" in r.getMessage() for r in caplog.records)


def test_from_env_is_quiet_when_site_url_is_given(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="banata_middleware.config"):
        BanataAuthConfig.from_env({"BANATA_AUTH_SECRET": GOOD, "SITE_URL": "http://localhost:3000"})
        BanataAuthConfig.from_env({"BANATA_AUTH_SECRET": GOOD}, site_url="https://a.example")
    assert not caplog.records


@pytest.mark.parametrize("pattern", ["/api/auth/two-factor/get-totp-uri", "/api/auth/*", "/api/auth/passkey/*",
                                     "/api/auth"])
def test_a_fresh_paths_rule_under_base_path_is_refused(pattern: str) -> None:
    # The auth endpoints are answered by the middleware, never judged by the path policy: such a
    # rule would be silently ignored, so it is refused (factor changes have their own rule).
    with pytest.raises(ValueError, match="factor_change_max_age"):
        BanataAuthConfig(app_name="A", site_url="https://a.example", secret=GOOD, fresh_paths={pattern: 60})


def test_fresh_paths_beside_base_path_are_accepted() -> None:
    config = BanataAuthConfig(app_name="A", site_url="https://a.example", secret=GOOD,
                              fresh_paths={"/api/billing/*": 300, "/api/authors": 60, "/api/auth-log": 60})
    assert config.fresh_paths["/api/billing/*"] == 300
