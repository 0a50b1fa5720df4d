"""The TOTP engine against the published test vectors: RFC 6238 Appendix B and RFC 4226 Appendix D."""

from __future__ import annotations

import base64

import pytest

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.authenticator import hotp

# RFC 6238 Appendix B: the seed is "12345678901234567890" repeated to the hash's block size.
SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890" * 6 + b"1234",
}
# (time, T as printed in the RFC, SHA1, SHA256, SHA512)
APPENDIX_B: list[tuple[int, int, str, str, str]] = [
    (59, 0x0000001, "94287082", "46119246", "90693936"),
    (1111111109, 0x23523EC, "07081804", "68084774", "25091201"),
    (1111111111, 0x23523ED, "14050471", "67062674", "99943326"),
    (1234567890, 0x273EF07, "89005924", "91819424", "93441116"),
    (2000000000, 0x3F940AA, "69279037", "90698825", "38618901"),
    (20000000000, 0x27BC86AA, "65353130", "77737706", "47863826"),
]


def rfc_uri(algorithm: str, *, lowercase: bool = False, padded: bool = True) -> str:
    secret = base64.b32encode(SEEDS[algorithm]).decode()
    if not padded:
        secret = secret.rstrip("=")
    if lowercase:
        secret = secret.lower()
    return f"otpauth://totp/RFC6238:vectors?secret={secret}&algorithm={algorithm}&digits=8&period=30"


def vectors(algorithm: str) -> list[tuple[str, int, int, str]]:
    column = {"SHA1": 2, "SHA256": 3, "SHA512": 4}[algorithm]
    return [(algorithm, row[0], row[1], str(row[column])) for row in APPENDIX_B]


def test_rfc6238_seeds_have_the_lengths_the_rfc_states() -> None:
    assert [len(SEEDS[a]) for a in ("SHA1", "SHA256", "SHA512")] == [20, 32, 64]


@pytest.mark.parametrize(("algorithm", "at", "step", "code"), vectors("SHA1"))
def test_rfc6238_appendix_b_sha1_vectors(algorithm: str, at: int, step: int, code: str) -> None:
    app = VirtualAuthenticator.from_uri(rfc_uri(algorithm))
    assert app.step(at) == step
    assert app.code(at) == code


@pytest.mark.parametrize(("algorithm", "at", "step", "code"), vectors("SHA256"))
def test_rfc6238_appendix_b_sha256_vectors(algorithm: str, at: int, step: int, code: str) -> None:
    app = VirtualAuthenticator.from_uri(rfc_uri(algorithm))
    assert app.step(at) == step
    assert app.code(at) == code


@pytest.mark.parametrize(("algorithm", "at", "step", "code"), vectors("SHA512"))
def test_rfc6238_appendix_b_sha512_vectors(algorithm: str, at: int, step: int, code: str) -> None:
    app = VirtualAuthenticator.from_uri(rfc_uri(algorithm))
    assert app.step(at) == step
    assert app.code(at) == code


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256", "SHA512"])
def test_vectors_hold_for_lowercase_unpadded_secrets(algorithm: str) -> None:
    app = VirtualAuthenticator.from_uri(rfc_uri(algorithm, lowercase=True, padded=False))
    assert [app.code(at) for _, at, _, _ in vectors(algorithm)] == [
        code for _, _, _, code in vectors(algorithm)
    ]


def test_float_instants_floor_to_the_step_like_integers() -> None:
    app = VirtualAuthenticator.from_uri(rfc_uri("SHA1"))
    assert app.code(59.999) == "94287082"
    assert app.step(59.999) == 1
    assert app.step(60.0) == 2
    assert app.code(1111111109.5) == "07081804"


def test_steps_argument_shifts_by_whole_periods() -> None:
    app = VirtualAuthenticator.from_uri(rfc_uri("SHA1"))
    assert app.code(1111111109 - 30, steps=1) == app.code(1111111109) == "07081804"
    assert app.code(1111111111 + 30, steps=-1) == "14050471"


def test_negative_instants_are_refused() -> None:
    app = VirtualAuthenticator.from_uri(rfc_uri("SHA1"))
    with pytest.raises(ValueError, match="counter"):
        app.code(-1)


RFC4226_APPENDIX_D = [
    "755224", "287082", "359152", "969429", "338314",
    "254676", "287922", "162583", "399871", "520489",
]  # fmt: skip


def test_rfc4226_appendix_d_hotp_values() -> None:
    assert [hotp(SEEDS["SHA1"], c) for c in range(10)] == RFC4226_APPENDIX_D
