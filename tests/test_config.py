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


def test_https_site_gets_secure_prefixed_cookies() -> None:
    from banata_middleware import BanataAuth

    auth = BanataAuth(BanataAuthConfig(app_name="A", site_url="https://a.example", secret=GOOD))
    assert auth.flows.session_cookie == "__Secure-banata.session_token"
    name, value = auth.flows._cookie(auth.flows.session_cookie, "v", 10)
    assert name == "set-cookie" and "Secure" in value and "HttpOnly" in value


def test_allowed_top_origins_must_be_a_tuple_not_a_string() -> None:
    from banata_middleware import PasskeyConfig

    assert PasskeyConfig(allowed_top_origins=("https://portal.example",)).allowed_top_origins
    with pytest.raises(ValueError, match="allowed_top_origins"):
        PasskeyConfig(allowed_top_origins="https://portal.example")  # type: ignore[arg-type]
