#!/usr/bin/env node
// Drives the real better-auth JS client (createAuthClient + twoFactorClient + passkeyClient)
// against a live banata-mfa server and checks every step's result.
//
//   node better_auth_client.mjs --base-url http://localhost:8000 [--mode 403|200] [--no-passkey]
//                               [--mail-dir DIR]
//
// With --mail-dir (the folder given to `banata-mfa demo --mail-dir`, where the demo writes each
// one-time code it "sends" by email), the 403 mode also runs codes by message: enable with method
// "otp", verifyOtp, sendOtp.
// TOTP codes come from the Python simulator: the command in BANATA_MFA_CMD (a JSON array,
// default ["banata-mfa"]) is run as `<cmd> code '<otpauth-uri>' --at <unix>`.
// stdout: one JSON summary {ok, mode, versions, steps:[...], requests:[...]}; exit 0 iff ok.
// Progress and diagnostics go to stderr.

import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

import { passkeyClient } from "@better-auth/passkey/client";
import { createAuthClient } from "better-auth/client";
import { twoFactorClient } from "better-auth/client/plugins";

import { installWebAuthn } from "./webauthn_shim.mjs";

const { values: args } = parseArgs({
  options: {
    "base-url": { type: "string" },
    origin: { type: "string" },
    mode: { type: "string", default: "403" },
    "no-passkey": { type: "boolean", default: false },
    "mail-dir": { type: "string" },
  },
});
const BASE_URL = args["base-url"];
if (!BASE_URL) {
  console.error("usage: node better_auth_client.mjs --base-url http://localhost:PORT [--mode 403|200]");
  process.exit(2);
}
const ORIGIN = args.origin ?? new URL(BASE_URL).origin;
const MODE = args.mode;
const CODE_CMD = JSON.parse(process.env.BANATA_MFA_CMD ?? '["banata-mfa"]');
const PASSWORD = "correct horse battery staple";

const require = createRequire(import.meta.url);
const versionOf = (pkg) => {
  // The packages' export maps hide package.json; read it from the resolved entry's folder.
  const entry = require.resolve(pkg);
  const root = entry.slice(0, entry.lastIndexOf(`/node_modules/${pkg}/`) + `/node_modules/${pkg}/`.length);
  return JSON.parse(readFileSync(`${root}package.json`, "utf8")).version;
};
const versions = {
  node: process.version,
  "better-auth": versionOf("better-auth"),
  "@better-auth/passkey": versionOf("@better-auth/passkey"),
  "@simplewebauthn/browser": versionOf("@simplewebauthn/browser"),
};

// -- a browser-like fetch: cookie jar + Origin --------------------------------------------------
const jar = new Map(); // name -> value (one site, so no domain/path bookkeeping is needed)
const requests = [];

function storeCookie(header) {
  const [pair, ...attrs] = header.split(";");
  const eq = pair.indexOf("=");
  const name = pair.slice(0, eq).trim();
  const value = pair.slice(eq + 1).trim();
  let expired = false;
  for (const attr of attrs) {
    const [k, v = ""] = attr.split("=");
    const key = k.trim().toLowerCase();
    if (key === "max-age" && Number(v) <= 0) expired = true;
    if (key === "expires" && Date.parse(v) <= Date.now()) expired = true;
  }
  if (expired || value === "") jar.delete(name);
  else jar.set(name, value);
}

async function cookieFetch(input, init = {}) {
  const headers = new Headers(init.headers);
  if (jar.size) headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "));
  headers.set("origin", ORIGIN);
  const response = await fetch(input, { ...init, headers });
  const setCookies = response.headers.getSetCookie();
  setCookies.forEach(storeCookie);
  const url = new URL(input instanceof Request ? input.url : String(input));
  requests.push({
    method: init.method ?? "GET", path: url.pathname + url.search, status: response.status,
    setCookie: setCookies.map((c) => c.split("=")[0]),
  });
  return response;
}

const hasCookie = (suffix) => [...jar.keys()].some((k) => k.endsWith(suffix));
const SESSION_COOKIE = "banata.session_token";
const CHALLENGE_COOKIE = "banata.two_factor";

// -- the client under test ----------------------------------------------------------------------
const redirects = [];
const authClient = createAuthClient({
  baseURL: BASE_URL,
  fetchOptions: { customFetchImpl: cookieFetch },
  plugins: [
    twoFactorClient({ onTwoFactorRedirect: (ctx) => { redirects.push(ctx); } }),
    passkeyClient(),
  ],
});

// -- checks -------------------------------------------------------------------------------------
class CheckFailed extends Error {}

function check(condition, message, context) {
  if (!condition) {
    const ctx = context === undefined ? "" : ` :: ${JSON.stringify(context, jsonSafe)}`;
    throw new CheckFailed(`${message}${ctx}`);
  }
}

function jsonSafe(_key, value) {
  return value instanceof Error ? { name: value.name, message: value.message } : value;
}

/** better-auth's client parses ISO-8601 strings into Date: check it got the right instant. */
function checkDate(value, what, { near = Date.now(), tolerance = 120_000 } = {}) {
  check(value instanceof Date && !Number.isNaN(value.getTime()), `${what} is not parsed as a Date`, { value });
  check(Math.abs(value.getTime() - near) <= tolerance,
    `${what} is ${value.toISOString()}, expected within ${tolerance / 1000} s of ${new Date(near).toISOString()}`);
}

function ok(res, what) {
  check(res && res.error === null && res.data !== undefined, `${what} failed`, res?.error ?? res);
  return res.data;
}

function failed(res, status, code, what) {
  check(res && res.data === null && res.error, `${what} should have failed with ${status} ${code}`, res);
  check(res.error.status === status && res.error.code === code,
    `${what}: expected ${status} ${code}, got ${res.error.status} ${res.error.code}`, res.error);
  check(typeof res.error.message === "string" && res.error.message.length > 0, `${what}: error has no message`, res.error);
  return res.error;
}

function totpCode(uri, at = Date.now() / 1000) {
  const [cmd, ...rest] = CODE_CMD;
  const out = execFileSync(cmd, [...rest, "code", uri, "--at", String(Math.floor(at))], { encoding: "utf8" });
  const code = out.trim();
  check(/^\d{6}$/.test(code), "the simulator printed no 6-digit code", { out });
  return code;
}

/** The newest one-time code the demo wrote to --mail-dir for this user (and purpose). */
function mailedCode(purpose) {
  const dir = args["mail-dir"];
  const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
  for (const file of files.reverse()) {
    const message = JSON.parse(readFileSync(join(dir, file), "utf8"));
    if (message.userId === state.userId && message.purpose === purpose) return message;
  }
  throw new CheckFailed(`no ${purpose} code for ${state.userId} in ${dir}`);
}

const steps = [];
async function step(name, fn) {
  const started = performance.now();
  const entry = { step: name, ok: false };
  steps.push(entry);
  try {
    Object.assign(entry, (await fn()) ?? {}, { ok: true });
  } catch (error) {
    entry.error = error instanceof CheckFailed ? error.message : `${error?.name}: ${error?.message}\n${error?.stack}`;
    throw error;
  } finally {
    entry.ms = Math.round(performance.now() - started);
  }
}

// -- flows --------------------------------------------------------------------------------------
const email = `interop-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
const state = {};

async function signUpAndSignIn() {
  await step("signUp.email", async () => {
    const t0 = Date.now();
    const data = ok(await authClient.signUp.email({ email, password: PASSWORD, name: "Interop User" }), "signUp.email");
    check(typeof data.token === "string" && data.token.length > 0, "signUp.email: no token", data);
    check(data.user?.email === email && data.user.twoFactorEnabled === false, "signUp.email: wrong user", data.user);
    checkDate(data.user.createdAt, "user.createdAt", { near: t0 });
    check(hasCookie(SESSION_COOKIE), "signUp.email set no session cookie", [...jar.keys()]);
    state.userId = data.user.id;
    return { userId: data.user.id };
  });
  await step("getSession (after sign-up)", async () => {
    const data = ok(await authClient.getSession(), "getSession");
    check(data?.user?.id === state.userId, "getSession: wrong user", data);
    check(data.session.aal === 1, "getSession: aal should be 1", data.session);
    checkDate(data.session.createdAt, "session.createdAt");
    checkDate(data.session.expiresAt, "session.expiresAt", { near: Date.now() + 7 * 86400_000 });
    return { aal: data.session.aal };
  });
  await step("signOut", async () => {
    const data = ok(await authClient.signOut(), "signOut");
    check(data.success === true, "signOut: success should be true", data);
    check(!hasCookie(SESSION_COOKIE), "signOut left the session cookie", [...jar.keys()]);
    check(ok(await authClient.getSession(), "getSession") === null, "getSession after signOut should be null");
  });
  await step("signIn.email (no 2FA)", async () => {
    const data = ok(await authClient.signIn.email({ email, password: PASSWORD }), "signIn.email");
    check(typeof data.token === "string" && data.user?.id === state.userId, "signIn.email: no session", data);
    check(!data.twoFactorRedirect && redirects.length === 0, "signIn.email asked for 2FA before it was on", data);
    check(hasCookie(SESSION_COOKIE), "signIn.email set no session cookie");
  });
}

async function enrol() {
  await step("twoFactor.enable (wrong password)", async () => {
    const err = failed(await authClient.twoFactor.enable({ password: "not the password" }), 400, "INVALID_PASSWORD",
      "twoFactor.enable");
    return { status: err.status, code: err.code };
  });
  await step("twoFactor.enable", async () => {
    const data = ok(await authClient.twoFactor.enable({ password: PASSWORD }), "twoFactor.enable");
    check(/^otpauth:\/\/totp\/.+secret=[A-Z2-7]+/.test(data.totpURI), "twoFactor.enable: bad totpURI", data);
    check(Array.isArray(data.backupCodes) && data.backupCodes.length === 10 &&
      data.backupCodes.every((c) => /^[A-Z0-9]{8}$/.test(c)), "twoFactor.enable: bad backupCodes", data.backupCodes);
    state.uri = data.totpURI;
    state.backupCodes = data.backupCodes;
    return { backupCodes: data.backupCodes.length };
  });
  await step("twoFactor.verifyTotp (enrolment)", async () => {
    state.enrolCode = totpCode(state.uri);
    const data = ok(await authClient.twoFactor.verifyTotp({ code: state.enrolCode }), "twoFactor.verifyTotp");
    check(data.status === true && data.user?.twoFactorEnabled === true, "verifyTotp (enrolment): 2FA not on", data);
    const session = ok(await authClient.getSession(), "getSession");
    check(session.user.twoFactorEnabled === true, "getSession: twoFactorEnabled should be true", session.user);
  });
  await step("signOut", async () => {
    ok(await authClient.signOut(), "signOut");
  });
}

async function signInWithSecondFactor403() {
  await step("signIn.email -> 403 two-factor", async () => {
    const res = await authClient.signIn.email({ email, password: PASSWORD });
    const { error } = res;
    // The product docs' check, verbatim:
    check(error && error.status === 403 && error.message.includes("two-factor"),
      "signIn.email: the docs' check `error.status === 403 && error.message.includes(\"two-factor\")` fails", res);
    check(res.data === null && error.code === "TWO_FACTOR_REQUIRED" && error.twoFactorRedirect === true,
      "signIn.email: 403 body", error);
    check(Array.isArray(error.twoFactorMethods) && error.twoFactorMethods.includes("totp") &&
      error.twoFactorMethods.includes("backup_code"), "signIn.email: twoFactorMethods", error.twoFactorMethods);
    check(redirects.length === 0, "onTwoFactorRedirect must not fire on a 403", redirects);
    check(hasCookie(CHALLENGE_COOKIE) && !hasCookie(SESSION_COOKIE), "pending cookie, no session", [...jar.keys()]);
    check(ok(await authClient.getSession(), "getSession") === null, "getSession while pending should be null");
    return { status: error.status, code: error.code, message: error.message, twoFactorMethods: error.twoFactorMethods };
  });
  await step("twoFactor.verifyTotp (replayed enrolment code) -> 401", async () => {
    const err = failed(await authClient.twoFactor.verifyTotp({ code: state.enrolCode }), 401, "INVALID_CODE",
      "verifyTotp with the enrolment code");
    check(err.attemptsRemaining === 4, "attemptsRemaining should be 4", err);
    return { code: err.code, attemptsRemaining: err.attemptsRemaining };
  });
  await step("twoFactor.verifyTotp (sign-in, next step's code)", async () => {
    const data = ok(await authClient.twoFactor.verifyTotp({ code: totpCode(state.uri, Date.now() / 1000 + 30) }),
      "twoFactor.verifyTotp");
    check(typeof data.token === "string" && data.user?.id === state.userId && data.user.twoFactorEnabled === true,
      "verifyTotp (sign-in): no session", data);
    check(hasCookie(SESSION_COOKIE) && !hasCookie(CHALLENGE_COOKIE), "session cookie set, pending cleared",
      [...jar.keys()]);
  });
  await step("getSession (aal 2)", async () => {
    const data = ok(await authClient.getSession(), "getSession");
    check(data?.user?.id === state.userId && data.session.aal === 2, "getSession: expected aal 2", data);
    checkDate(data.session.mfaVerifiedAt, "session.mfaVerifiedAt");
    return { aal: data.session.aal };
  });
}

async function backupCodesAndManagement() {
  await step("twoFactor.verifyBackupCode (sign-in)", async () => {
    ok(await authClient.signOut(), "signOut");
    const res = await authClient.signIn.email({ email, password: PASSWORD });
    check(res.error?.status === 403, "signIn.email should ask for the second factor", res);
    const data = ok(await authClient.twoFactor.verifyBackupCode({ code: state.backupCodes[0] }), "verifyBackupCode");
    check(typeof data.token === "string" && data.user?.id === state.userId && data.backupCodesRemaining === 9,
      "verifyBackupCode: expected a session and 9 codes left", data);
    check(ok(await authClient.getSession(), "getSession")?.session.aal === 2, "session after a backup code: aal 2");
    return { backupCodesRemaining: data.backupCodesRemaining };
  });
  await step("twoFactor.verifyBackupCode (used code) -> 401", async () => {
    const err = failed(await authClient.twoFactor.verifyBackupCode({ code: state.backupCodes[0] }), 401,
      "INVALID_CODE", "verifyBackupCode with a used code");
    return { code: err.code };
  });
  await step("twoFactor.generateBackupCodes", async () => {
    const data = ok(await authClient.twoFactor.generateBackupCodes({ password: PASSWORD }), "generateBackupCodes");
    check(data.status === true && data.backupCodes?.length === 10, "generateBackupCodes: bad answer", data);
    check(!data.backupCodes.some((c) => state.backupCodes.includes(c)), "generateBackupCodes: codes repeat the old set");
    failed(await authClient.twoFactor.verifyBackupCode({ code: state.backupCodes[1] }), 401, "INVALID_CODE",
      "verifyBackupCode with a code of the replaced set");
    const stepUp = ok(await authClient.twoFactor.verifyBackupCode({ code: data.backupCodes[0] }), "verifyBackupCode");
    check(stepUp.status === true && stepUp.backupCodesRemaining === 9, "verifyBackupCode (step-up) with a new code",
      stepUp);
    state.backupCodes = data.backupCodes;
    return { backupCodes: data.backupCodes.length };
  });
  await step("twoFactor.getTotpUri", async () => {
    const data = ok(await authClient.twoFactor.getTotpUri({ password: PASSWORD }), "getTotpUri");
    check(data.totpURI === state.uri, "getTotpUri: not the enrolled URI", { got: data.totpURI, want: state.uri });
  });
  // Issue 15: enable while 2FA is on adds another authenticator app (better-auth would replace the
  // secret and the backup codes); its first code through verifyTotp confirms it.
  await step("twoFactor.enable (2FA on: adds an authenticator app)", async () => {
    const data = ok(await authClient.twoFactor.enable({ password: PASSWORD }), "twoFactor.enable (2FA on)");
    check(/^otpauth:\/\/totp\/.+secret=[A-Z2-7]+/.test(data.totpURI) && data.totpURI !== state.uri,
      "twoFactor.enable (2FA on): not a new secret", data);
    check(Array.isArray(data.backupCodes) && data.backupCodes.length === 0,
      "twoFactor.enable (2FA on): backup codes were replaced", data);
    state.secondUri = data.totpURI;
    return { name: data.name };
  });
  await step("twoFactor.verifyTotp (confirms the app added)", async () => {
    const data = ok(await authClient.twoFactor.verifyTotp({ code: totpCode(state.secondUri) }),
      "twoFactor.verifyTotp (app added)");
    check(data.status === true && typeof data.token === "string" && data.user?.twoFactorEnabled === true,
      "verifyTotp (app added): bad answer", data);
    const uri = ok(await authClient.twoFactor.getTotpUri({ password: PASSWORD }), "getTotpUri");
    check(uri.totpURI === state.uri, "getTotpUri after adding an app: not the oldest app", uri);
    const stepUp = ok(await authClient.twoFactor.verifyBackupCode({ code: state.backupCodes[1] }),
      "verifyBackupCode after adding an app");
    check(stepUp.backupCodesRemaining === 8, "the backup codes changed when an app was added", stepUp);
  });
}

async function passkeys(authenticator) {
  await step("passkey.addPasskey", async () => {
    const res = await authClient.passkey.addPasskey({ name: "interop key" });
    const data = ok(res, "passkey.addPasskey");
    check(typeof data.id === "string" && data.name === "interop key", "addPasskey: bad answer", data);
    checkDate(data.createdAt, "passkey.createdAt");
    check(authenticator.calls.create === 1, "the authenticator was not asked to create a credential");
    state.passkeyId = data.id;
    const list = ok(await authClient.passkey.listUserPasskeys(), "passkey.listUserPasskeys");
    check(Array.isArray(list) && list.length === 1 && list[0].id === data.id, "listUserPasskeys", list);
    return { deviceType: data.deviceType };
  });
  await step("signIn.passkey (passwordless)", async () => {
    ok(await authClient.signOut(), "signOut");
    const data = ok(await authClient.signIn.passkey(), "signIn.passkey");
    check(typeof data.token === "string" && data.user?.id === state.userId, "signIn.passkey: no session", data);
    const session = ok(await authClient.getSession(), "getSession");
    check(session?.session.aal === 2, "a user-verified passkey gives aal 2", session);
  });
  await step("signIn.email -> 403, signIn.passkey as the second factor", async () => {
    ok(await authClient.signOut(), "signOut");
    const res = await authClient.signIn.email({ email, password: PASSWORD });
    check(res.error?.status === 403 && res.error.twoFactorMethods?.includes("passkey"),
      "twoFactorMethods should offer the passkey", res);
    const data = ok(await authClient.signIn.passkey(), "signIn.passkey");
    check(typeof data.token === "string" && data.user?.id === state.userId, "signIn.passkey: no session", data);
    check(hasCookie(SESSION_COOKIE) && !hasCookie(CHALLENGE_COOKIE), "session set, pending cleared", [...jar.keys()]);
  });
  await step("passkey.deletePasskey", async () => {
    const data = ok(await authClient.passkey.deletePasskey({ id: state.passkeyId }), "passkey.deletePasskey");
    check(data.status === true, "deletePasskey", data);
    const list = ok(await authClient.passkey.listUserPasskeys(), "passkey.listUserPasskeys");
    check(Array.isArray(list) && list.length === 0, "listUserPasskeys after delete", list);
  });
}

async function disable() {
  await step("twoFactor.disable", async () => {
    const data = ok(await authClient.twoFactor.disable({ password: PASSWORD }), "twoFactor.disable");
    check(data.status === true, "twoFactor.disable: status", data);
    const session = ok(await authClient.getSession(), "getSession");
    check(session?.user.twoFactorEnabled === false, "twoFactorEnabled should be false", session);
  });
  await step("signIn.email (2FA off again)", async () => {
    ok(await authClient.signOut(), "signOut");
    const data = ok(await authClient.signIn.email({ email, password: PASSWORD }), "signIn.email");
    check(typeof data.token === "string" && !data.twoFactorRedirect, "signIn.email: expected a session", data);
  });
}

// Another browser's session, signed in with plain fetch (its own cookie jar: none); its token is
// used as a bearer token to see whether it is still alive.
async function signInElsewhere() {
  const response = await fetch(new URL("/api/auth/sign-in/email", BASE_URL), {
    method: "POST", headers: { "content-type": "application/json", "user-agent": "elsewhere/1.0" },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  const body = await response.json();
  check(response.status === 200 && typeof body.token === "string", "sign-in elsewhere", body);
  return body.token;
}

async function aliveElsewhere(token) {
  const response = await fetch(new URL("/api/auth/get-session", BASE_URL),
    { headers: { authorization: `Bearer ${token}` } });
  return (await response.json()) !== null;
}

async function sessions() {
  await step("listSessions", async () => {
    const other = await signInElsewhere();
    const list = ok(await authClient.listSessions(), "listSessions");
    check(Array.isArray(list) && list.length === 2, "listSessions: this session and the other", list);
    const own = ok(await authClient.getSession(), "getSession").session;
    check(list[0].id === own.id && list[0].current === true, "listSessions: the caller's own first", list);
    const elsewhere = list[1];
    check(elsewhere.userAgent === "elsewhere/1.0" && typeof elsewhere.ipAddress === "string",
      "listSessions: user agent and address", elsewhere);
    check(elsewhere.token === elsewhere.id && elsewhere.token !== other, "listSessions: token is the id", elsewhere);
    checkDate(elsewhere.createdAt, "session.createdAt");
    checkDate(elsewhere.updatedAt, "session.updatedAt");
    checkDate(elsewhere.expiresAt, "session.expiresAt", { near: Date.now() + 7 * 86_400_000 });
    check(elsewhere.aal === 1, "listSessions: aal", elsewhere);
    state.other = other;
    return { sessions: list.length };
  });
  await step("revokeSession (a listed session's token)", async () => {
    const list = ok(await authClient.listSessions(), "listSessions");
    const data = ok(await authClient.revokeSession({ token: list[1].token }), "revokeSession");
    check(data.status === true, "revokeSession: status", data);
    check(!(await aliveElsewhere(state.other)), "the revoked session still answers get-session");
    check(ok(await authClient.getSession(), "getSession") !== null, "revokeSession ended the caller's session");
  });
  await step("revokeOtherSessions", async () => {
    const others = [await signInElsewhere(), await signInElsewhere()];
    check(ok(await authClient.listSessions(), "listSessions").length === 3, "three sessions before");
    const data = ok(await authClient.revokeOtherSessions(), "revokeOtherSessions");
    check(data.status === true, "revokeOtherSessions: status", data);
    for (const token of others) check(!(await aliveElsewhere(token)), "another session survived revokeOtherSessions");
    const list = ok(await authClient.listSessions(), "listSessions");
    check(list.length === 1 && list[0].current === true, "only this session is left", list);
  });
  await step("revokeSessions", async () => {
    const other = await signInElsewhere();
    const data = ok(await authClient.revokeSessions(), "revokeSessions");
    check(data.status === true, "revokeSessions: status", data);
    check(!(await aliveElsewhere(other)), "another session survived revokeSessions");
    check(!hasCookie(SESSION_COOKIE), "revokeSessions should clear this session's cookie", [...jar.keys()]);
    check(ok(await authClient.getSession(), "getSession") === null, "getSession after revokeSessions");
  });
}

async function codesByMessage() {
  await step("twoFactor.enable (method otp)", async () => {
    ok(await authClient.signIn.email({ email, password: PASSWORD }), "signIn.email");
    const data = ok(await authClient.twoFactor.enable({ password: PASSWORD, method: "otp" }), "twoFactor.enable");
    check(data.method === "otp" && data.status === true && data.channel === "email", "enable (otp): bad answer", data);
    const message = mailedCode("enrol");
    check(message.to === email && /^\d{6}$/.test(message.code), "the enrolment code went elsewhere", message);
    const session = ok(await authClient.getSession(), "getSession");
    check(session.user.twoFactorEnabled === false, "codes must not be on before the address is confirmed", session);
    return { to: data.to };
  });
  await step("twoFactor.verifyOtp (enrolment)", async () => {
    const data = ok(await authClient.twoFactor.verifyOtp({ code: mailedCode("enrol").code }), "verifyOtp");
    check(data.status === true && data.user?.twoFactorEnabled === true, "verifyOtp (enrolment): 2FA not on", data);
    ok(await authClient.signOut(), "signOut");
  });
  await step("signIn.email -> 403, twoFactorMethods otp", async () => {
    const res = await authClient.signIn.email({ email, password: PASSWORD });
    check(res.error?.status === 403 && res.error.code === "TWO_FACTOR_REQUIRED", "signIn.email: expected 403", res);
    check(JSON.stringify(res.error.twoFactorMethods) === JSON.stringify(["otp"]), "twoFactorMethods", res.error);
    return { twoFactorMethods: res.error.twoFactorMethods };
  });
  await step("twoFactor.sendOtp (sign-in)", async () => {
    const data = ok(await authClient.twoFactor.sendOtp(), "twoFactor.sendOtp");
    check(data.status === true, "sendOtp: status", data);
    check(mailedCode("sign_in").to === email, "the sign-in code went elsewhere");
  });
  await step("twoFactor.verifyOtp (wrong code) -> 401", async () => {
    const right = mailedCode("sign_in").code;
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, "0");
    const err = failed(await authClient.twoFactor.verifyOtp({ code: wrong }), 401, "INVALID_CODE", "verifyOtp");
    check(err.attemptsRemaining === 4, "attemptsRemaining should be 4", err);
    return { attemptsRemaining: err.attemptsRemaining };
  });
  await step("twoFactor.verifyOtp (sign-in)", async () => {
    const data = ok(await authClient.twoFactor.verifyOtp({ code: mailedCode("sign_in").code }), "verifyOtp");
    check(typeof data.token === "string" && data.user?.id === state.userId, "verifyOtp (sign-in): no session", data);
    check(hasCookie(SESSION_COOKIE) && !hasCookie(CHALLENGE_COOKIE), "session set, pending cleared", [...jar.keys()]);
    const session = ok(await authClient.getSession(), "getSession");
    check(session?.session.aal === 2 && session.session.amr.includes("otp"), "getSession: aal 2 by otp", session);
    return { aal: session.session.aal, amr: session.session.amr };
  });
  await step("twoFactor.sendOtp (step-up), again at once -> 429", async () => {
    check(ok(await authClient.twoFactor.sendOtp(), "twoFactor.sendOtp").status === true, "sendOtp (step-up)");
    const err = failed(await authClient.twoFactor.sendOtp(), 429, "TOO_MANY_REQUESTS", "sendOtp again at once");
    return { code: err.code };
  });
  await step("twoFactor.verifyOtp (step-up)", async () => {
    const data = ok(await authClient.twoFactor.verifyOtp({ code: mailedCode("step_up").code }), "verifyOtp");
    check(data.status === true && typeof data.token === "string", "verifyOtp (step-up)", data);
  });
}

async function signInWithRedirect200() {
  await step("signIn.email -> 200 twoFactorRedirect, onTwoFactorRedirect fires", async () => {
    const res = await authClient.signIn.email({ email, password: PASSWORD });
    const data = ok(res, "signIn.email");
    check(data.twoFactorRedirect === true && !data.token, "signIn.email: expected {twoFactorRedirect:true}", data);
    check(redirects.length === 1, "onTwoFactorRedirect should fire exactly once", redirects);
    const methods = redirects[0].twoFactorMethods;
    check(Array.isArray(methods) && methods.includes("totp"), "onTwoFactorRedirect({twoFactorMethods})", redirects);
    check(hasCookie(CHALLENGE_COOKIE) && !hasCookie(SESSION_COOKIE), "pending cookie, no session", [...jar.keys()]);
    check(ok(await authClient.getSession(), "getSession") === null, "getSession while pending should be null");
    return { twoFactorMethods: methods };
  });
  await step("twoFactor.verifyTotp (sign-in, next step's code)", async () => {
    const data = ok(await authClient.twoFactor.verifyTotp({ code: totpCode(state.uri, Date.now() / 1000 + 30) }),
      "twoFactor.verifyTotp");
    check(typeof data.token === "string" && data.user?.id === state.userId, "verifyTotp (sign-in): no session", data);
    const session = ok(await authClient.getSession(), "getSession");
    check(session?.session.aal === 2, "getSession: expected aal 2", session);
  });
}

async function main() {
  const authenticator = installWebAuthn(ORIGIN);
  await signUpAndSignIn();
  await enrol();
  if (MODE === "200") {
    await signInWithRedirect200();
    return;
  }
  await signInWithSecondFactor403();
  await backupCodesAndManagement();
  if (!args["no-passkey"]) await passkeys(authenticator);
  await disable();
  await sessions();
  if (args["mail-dir"]) await codesByMessage();
}

let success = false;
try {
  if (MODE !== "403" && MODE !== "200") throw new CheckFailed(`unknown --mode ${MODE}`);
  await main();
  success = true;
} catch (error) {
  console.error(error instanceof CheckFailed ? `FAILED: ${error.message}` : error);
}
process.stdout.write(`${JSON.stringify({ ok: success, mode: MODE, baseURL: BASE_URL, versions, steps, requests }, jsonSafe)}\n`);
process.exitCode = success ? 0 : 1;
