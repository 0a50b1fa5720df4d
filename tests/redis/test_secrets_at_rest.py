"""Secrets at rest (DESIGN rule 7): after every flow has run, no Redis key name and no value of any type
(strings, hash fields and values, set members, stream entries), and no row of any table of the record
store (SQL), holds a TOTP secret (base32, raw, hex, base64; of each of the user's authenticator apps,
confirmed or still being added), a backup code (used, unused or voided), the password, a cookie
token or its random part (session, pending challenge, trusted device), or a one-time code sent by
message (used, wrong, voided by a resend, or still live), in the clear or hashed without a key.

Positive controls keep the scan honest: it must find what *is* stored (the email, the SHA-256 of a live
session id, the TOTP secret's ciphertext). One-time TOTP codes are not searched: six digits turn up in
any timestamp. Codes by message are searched with 8 digits (``OtpConfig(digits=8)``), which do not.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis_support import PASSWORD, Browser, dump_database
from servers import SERVER_KINDS

from banata_middleware import OtpConfig
from banata_middleware.otp import Inbox
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.otpauth import parse_otpauth_uri

pytestmark = pytest.mark.redis

# Every key: the prefix, one hash tag (a user id, or a keyed hash of an email or address), hashed ids.
KEY_NAME = re.compile(r"banata:\{(u:[A-Za-z0-9_.@:+\-]+|e:[0-9a-f]{32}|a:[0-9a-f]{32}|anon)\}(:[A-Za-z0-9_:]+)?")

IN_PROCESS = [pytest.param((kind, "redis"), id=f"{kind}-redis") for kind in SERVER_KINDS]


@pytest.fixture
def browsers(stack_factory: Callable[..., Any], clock: Any) -> Iterator[tuple[Callable[[], Browser], Any]]:
    stack = stack_factory(otp=OtpConfig(sender=INBOX, digits=8, channels=("email", "sms")))
    INBOX.clear()
    yield (lambda: Browser.over(stack.client().http, clock)), stack


INBOX = Inbox()


def _b64_variants(raw: bytes) -> list[str]:
    return [base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")]


def _token_parts(token: str) -> list[str]:
    """A signed cookie value is ``<user id>.<random id>.<signature>``: the whole, its random id and the
    random id's bytes are secrets; the user id is not (it is the hash tag in every key name)."""
    value, _, signature = token.rpartition(".")
    _, _, rid = value.rpartition(".")
    raw = base64.urlsafe_b64decode(rid + "=" * (-len(rid) % 4))
    return [token, rid, signature, raw.hex(), raw.decode("latin-1")]


@pytest.mark.parametrize("stack_factory", IN_PROCESS, indirect=True)
def test_no_secret_is_stored_in_the_clear_after_every_flow(browsers: tuple[Callable[[], Browser], Any],
                                                           clock: Any) -> None:
    new_browser, stack = browsers
    a, b = new_browser(), new_browser()
    email = f"rest-{uuid.uuid4().hex[:12]}@example.com"

    # sign-up, enable, confirm
    uid = a.sign_up(email).json()["user"]["id"]
    a.enable_2fa()
    first_codes = list(a.backup_codes)
    uri = a.auth("/two-factor/get-totp-uri", {"password": PASSWORD}).json()["totpURI"]
    params = parse_otpauth_uri(uri)
    secret, raw_secret = params.secret, params.key
    assert a.device is not None and secret == a.device.secret
    # sign-out, sign-in, verify-totp with trustDevice
    assert a.auth("/sign-out").status_code == 200
    assert a.sign_in(email).status_code == 403
    clock.advance(30)
    assert a.verify_totp(a.code(), trustDevice=True).status_code == 200
    # a trusted-device sign-in (rotates the trust record)
    assert a.auth("/sign-out").status_code == 200
    assert a.sign_in(email).status_code == 200
    # a sign-in answered with a backup code, after one wrong code
    assert b.sign_in(email).status_code == 403
    assert b.verify_backup("ZZZZ-ZZZZ").status_code == 401
    r = b.verify_backup(first_codes[0])
    assert r.status_code == 200, r.text
    # regenerate codes, step-up with TOTP and with a new backup code
    r = a.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    second_codes = r.json()["backupCodes"]
    clock.advance(30)
    assert a.verify_totp(a.code()).status_code == 200
    assert a.verify_backup(second_codes[0]).status_code == 200
    assert a.http.post("/api/sensitive").status_code == 200
    # two more authenticator apps (issue 15): one added and confirmed, one left unfinished, so
    # a confirmed and an unconfirmed second secret are at rest during the scan, with their names
    # and last use; the confirmed one answers a sign-in
    added = [a.auth("/two-factor/enable", {"password": PASSWORD, "name": name}) for name in ("Tablet", "Spare")]
    assert all(r.status_code == 200 for r in added), [r.text for r in added]
    tablet = VirtualAuthenticator.from_uri(added[0].json()["totpURI"], clock=clock)
    assert a.verify_totp(tablet.code()).status_code == 200
    clock.advance(30)
    e = new_browser()
    assert e.sign_in(email).status_code == 403
    assert e.verify_totp(tablet.code()).status_code == 200
    listed = {x["name"]: x for x in a.get("/api/auth/two-factor/list-authenticators").json()}
    assert listed["Tablet"]["lastUsedAt"] and not listed["Spare"]["confirmed"]
    more_secrets = [parse_otpauth_uri(r.json()["totpURI"]) for r in added]
    # codes by message: enrol a number (a wrong code, then the right one), sign in with a code
    # after a wrong one and a resend, then leave a step-up code live
    r = a.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "channel": "sms",
                                      "to": "+15551234567"})
    assert r.status_code == 200, r.text
    assert a.auth("/two-factor/verify-otp", {"code": "00000000"}).status_code == 401
    assert a.auth("/two-factor/verify-otp", {"code": INBOX.latest_code(user_id=uid)}).status_code == 200
    d = new_browser()
    assert d.sign_in(email).status_code == 403
    assert d.auth("/two-factor/send-otp", {}).status_code == 200
    clock.advance(30)
    assert d.auth("/two-factor/send-otp", {}).status_code == 200  # the resend voids the first code
    assert d.auth("/two-factor/verify-otp", {"code": "12345678"}).status_code == 401
    assert d.auth("/two-factor/verify-otp", {"code": INBOX.latest_code(user_id=uid)}).status_code == 200
    assert d.auth("/two-factor/send-otp", {}).status_code == 200  # a step-up code, live at the scan
    codes_sent = [m.code for m in INBOX.messages]
    assert len(codes_sent) == 4 and all(len(c) == 8 for c in codes_sent)
    # a pending challenge left open, so one is at rest during the scan
    c = new_browser()
    assert c.sign_in(email).status_code == 403

    tokens = a.seen_tokens | b.seen_tokens | c.seen_tokens | d.seen_tokens | e.seen_tokens
    assert len(tokens) >= 8, tokens  # sessions, pending challenges, trust records
    needles: dict[str, str] = {"password": PASSWORD}
    for n, (b32, raw) in enumerate([(secret, raw_secret), *((p.secret, p.key) for p in more_secrets)]):
        needles.update({
            f"TOTP secret #{n} (base32)": b32,
            f"TOTP secret #{n} (base32, lower case)": b32.lower(),
            f"TOTP secret #{n} (hex)": raw.hex(),
            f"TOTP secret #{n} (HEX)": raw.hex().upper(),
            f"TOTP secret #{n} (raw)": raw.decode("latin-1"),
        })
        for i, text in enumerate(_b64_variants(raw)):
            needles[f"TOTP secret #{n} (base64 #{i})"] = text
    for code in first_codes + second_codes:
        for variant in (code, code.lower(), f"{code[:4]}-{code[4:]}"):
            needles[f"backup code {variant}"] = variant
    for code in codes_sent:
        needles[f"code by message {code}"] = code
        needles[f"code by message {code}, SHA-256"] = hashlib.sha256(code.encode()).hexdigest()
    for token in tokens:
        for n, part in enumerate(_token_parts(token)):
            needles[f"token {token[:20]}… part {n}"] = part

    with redis.Redis(port=stack.redis.port) as raw_client:  # bytes, not decoded text
        dump = dump_database(raw_client)
    assert dump, "the scan found no keys"
    blobs = {key: b"\x00".join([key, *parts]) for key, parts in dump.items()}

    tables = _dump_tables(stack.auth.records)
    assert tables["totp_factors"] and tables["backup_codes"], "the scan found no factor rows"
    blobs.update({f"sql:{name}".encode(): blob for name, blob in tables.items()})

    found = [(label, key) for label, needle in needles.items() for key, blob in blobs.items()
             if needle.encode("latin-1") in blob]
    assert not found, f"secrets at rest: {found}"

    # Key names: no email, no address, nothing but the hash tag's user id and hashes.
    for key in dump:  # the Redis keys
        name = key.decode()
        assert email not in name and "127.0.0.1" not in name, name
        assert KEY_NAME.fullmatch(name), name

    # Positive controls: the scan sees what is stored.
    everything = b"\x00".join(blobs.values())
    assert email.encode() in everything
    assert uid.encode() in everything
    session_rids = [_token_parts(t)[1] for t in a.seen_tokens if t.startswith(uid + ".")]
    assert any(hashlib.sha256(rid.encode()).hexdigest().encode() in everything for rid in session_rids)
    assert len(re.findall(rb"v1\.[0-9a-f]{8}\.", tables["totp_factors"])) == 3, "not three encrypted TOTP secrets"
    assert b"Tablet" in tables["totp_factors"] and b"Spare" in tables["totp_factors"]  # the apps' names
    assert b"+15551234567" in tables["otp_factors"], "no address for codes by message found"
    live = dump[f"banata:{{u:{uid}}}:otp".encode()]
    assert any(re.fullmatch(rb"[0-9a-f]{64}", part) for part in live), "no keyed hash of the live code found"
    values = sum(len(p) for p in dump.values())
    print(f"\nscanned {len(dump)} keys, {values} values, {len(tables)} tables, {len(needles)} secrets: none found")


def _dump_tables(records: Any) -> dict[str, bytes]:
    """Every row of every table of the record store, as bytes (by table name, without the prefix)."""
    from sqlalchemy import select

    schema = records.schema
    out: dict[str, bytes] = {}
    with records.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            cells = [v if isinstance(v, bytes) else str(v).encode("utf-8", "replace") for row in rows for v in row]
            out[table.name.removeprefix(schema.prefix)] = b"\x00".join(cells)
    return out
