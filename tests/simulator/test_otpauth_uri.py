"""Reading otpauth:// URIs as a phone app does, and refusing bad ones with a clear reason."""

from __future__ import annotations

import hashlib

import pyotp
import pytest

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.otpauth import parse_otpauth_uri

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_label_issuer_and_account_are_percent_decoded() -> None:
    params = parse_otpauth_uri(
        f"otpauth://totp/ACME%20Co:alice%40example.com?secret={SECRET}&issuer=ACME%20Co"
    )
    assert (params.issuer, params.name) == ("ACME Co", "alice@example.com")


def test_encoded_colon_in_label_splits_issuer_from_account() -> None:
    params = parse_otpauth_uri(f"otpauth://totp/ACME%3Aalice?secret={SECRET}")
    assert (params.issuer, params.name) == ("ACME", "alice")


def test_spaces_after_label_colon_are_ignored() -> None:
    params = parse_otpauth_uri(f"otpauth://totp/ACME:%20%20alice?secret={SECRET}")
    assert params.name == "alice"


def test_issuer_parameter_alone_names_the_issuer() -> None:
    params = parse_otpauth_uri(f"otpauth://totp/alice?secret={SECRET}&issuer=ACME")
    assert (params.issuer, params.name) == ("ACME", "alice")


def test_no_issuer_anywhere_gives_empty_issuer() -> None:
    params = parse_otpauth_uri(f"otpauth://totp/alice?secret={SECRET}")
    assert (params.issuer, params.name) == ("", "alice")


def test_defaults_are_sha1_six_digits_thirty_seconds() -> None:
    params = parse_otpauth_uri(f"otpauth://totp/ACME:alice?secret={SECRET}")
    assert (params.algorithm, params.digits, params.period) == ("SHA1", 6, 30)


def test_explicit_parameters_are_read_case_insensitively() -> None:
    params = parse_otpauth_uri(
        f"OTPAUTH://TOTP/ACME:alice?Secret={SECRET.lower()}&algorithm=sha512&digits=8&period=60"
    )
    assert (params.secret, params.algorithm, params.digits, params.period) == (
        SECRET,
        "SHA512",
        8,
        60,
    )


def test_padded_and_spaced_secrets_normalise_to_the_same_key() -> None:
    a = parse_otpauth_uri("otpauth://totp/x?secret=MFRGG===")
    b = parse_otpauth_uri("otpauth://totp/x?secret=mfrgg")
    c = parse_otpauth_uri("otpauth://totp/x?secret=MF%20RGG")
    assert a.key == b.key == c.key == b"abc"
    assert a.secret == "MFRGG"


def test_unknown_parameters_such_as_image_are_ignored() -> None:
    params = parse_otpauth_uri(
        f"otpauth://totp/ACME:alice?secret={SECRET}&image=https%3A%2F%2Fexample.com%2Fa.png"
    )
    assert params.name == "alice"


def test_repr_does_not_show_the_secret() -> None:
    params = parse_otpauth_uri(f"otpauth://totp/ACME:alice?secret={SECRET}")
    assert SECRET not in repr(params)
    assert SECRET not in repr(VirtualAuthenticator.from_uri(f"otpauth://totp/a?secret={SECRET}"))


def test_uris_written_by_pyotp_read_back_with_the_same_codes() -> None:
    totp = pyotp.TOTP(SECRET, digits=8, digest=hashlib.sha256, interval=45, issuer="ACME Co")
    uri = totp.provisioning_uri(name="alice@example.com")
    app = VirtualAuthenticator.from_uri(uri)
    assert (app.issuer, app.name, app.digits, app.period, app.algorithm) == (
        "ACME Co",
        "alice@example.com",
        8,
        45,
        "SHA256",
    )
    for at in (0, 1_700_000_000, 1_700_000_044, 1_700_000_045):
        assert app.code(at) == totp.at(at)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://example.com/?secret=" + SECRET, "not an otpauth"),
        (f"otpauth://hotp/ACME:alice?secret={SECRET}&counter=0", "hotp"),
        (f"otpauth://motp/ACME:alice?secret={SECRET}", "unknown OTP type"),
        ("otpauth://totp/ACME:alice?issuer=ACME", "no secret"),
        ("otpauth://totp/ACME:alice?secret=", "empty"),
        ("otpauth://totp/ACME:alice?secret=JBSWY3DP1", "not base32"),
        ("otpauth://totp/ACME:alice?secret=A", "not valid base32"),
        (f"otpauth://totp/ACME:alice?secret={SECRET}&digits=5", "digits=5 is outside 6-8"),
        (f"otpauth://totp/ACME:alice?secret={SECRET}&digits=9", "digits=9 is outside 6-8"),
        (f"otpauth://totp/ACME:alice?secret={SECRET}&digits=six", "not a whole number"),
        (f"otpauth://totp/ACME:alice?secret={SECRET}&period=0", "period=0 is outside"),
        (f"otpauth://totp/ACME:alice?secret={SECRET}&period=-30", "not a whole number"),
        (f"otpauth://totp/ACME:alice?secret={SECRET}&algorithm=MD5", "algorithm"),
        (f"otpauth://totp/ACME:alice?secret={SECRET}&issuer=Other", "differs"),
        (f"otpauth://totp/ACME:alice?secret={SECRET}&secret=AAAAAAAA", "more than once"),
    ],
)
def test_bad_uris_are_refused_with_the_reason(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        VirtualAuthenticator.from_uri(uri)
