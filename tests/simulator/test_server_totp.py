"""The server's own TOTP verifier (``banata_middleware.totp.matched_step``) against the published
vectors (RFC 6238 Appendix B, RFC 4226 Appendix D) and against OATH Toolkit's ``oathtool``,
including the 80- and 96-bit secrets that ``import_totp`` accepts from older systems."""

from __future__ import annotations

import base64
import random

import pytest

from banata_middleware import TotpPolicy
from banata_middleware.totp import hotp, matched_step

from .test_oathtool_crosscheck import oathtool, oathtool_codes
from .test_rfc6238_vectors import APPENDIX_B, RFC4226_APPENDIX_D, SEEDS


def b32(key: bytes) -> str:
    return base64.b32encode(key).decode().rstrip("=")


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256", "SHA512"])
def test_matched_step_accepts_each_rfc6238_vector_at_its_step(algorithm: str) -> None:
    column = {"SHA1": 2, "SHA256": 3, "SHA512": 4}[algorithm]
    policy = TotpPolicy(digits=8, algorithm=algorithm, window=0)
    for row in APPENDIX_B:
        at, step, code = row[0], row[1], str(row[column])
        assert matched_step(b32(SEEDS[algorithm]), code, at=at, policy=policy) == step, (at, code)
        # one step later, with no window, the same code is refused
        assert matched_step(b32(SEEDS[algorithm]), code, at=at + 30, policy=policy) is None


def test_hotp_gives_the_rfc4226_appendix_d_values() -> None:
    assert [hotp(SEEDS["SHA1"], c, digits=6, algorithm="SHA1") for c in range(10)] == RFC4226_APPENDIX_D


@pytest.mark.parametrize("bits", [80, 96, 128, 160])
def test_secrets_of_every_importable_length_verify_against_oathtool(bits: int) -> None:
    binary = oathtool()
    rng = random.Random(f"server-{bits}")  # reproducible: a failure names its inputs
    for algorithm, digits in [("SHA1", 6), ("SHA1", 8), ("SHA256", 6), ("SHA512", 8)]:
        policy = TotpPolicy(digits=digits, algorithm=algorithm, window=1)
        for _ in range(10):
            key = rng.randbytes(bits // 8)
            secret = base64.b32encode(key).decode()
            at = rng.randrange(60, 2**33)
            step = at // 30
            # the codes of steps step-1, step, step+1, step+2 as oathtool computes them
            codes = oathtool_codes(binary, secret=secret, algorithm=algorithm, digits=digits, period=30,
                                   at=at - 30, window=3)
            found = [matched_step(secret.rstrip("="), c, at=at, policy=policy) for c in codes]
            assert found[:3] == [step - 1, step, step + 1], f"secret={secret} at={at} {algorithm}/{digits}"
            assert found[3] is None, "a code two steps ahead is outside the window"


def test_malformed_codes_never_match() -> None:
    secret, policy = b32(SEEDS["SHA1"]), TotpPolicy(digits=8, window=0)
    assert matched_step(secret, "94287082", at=59, policy=policy) == 1
    for code in ["9428708", "942870822", "9428708a", "９４２８７０８２", " 4287082", ""]:
        assert matched_step(secret, code, at=59, policy=policy) is None
