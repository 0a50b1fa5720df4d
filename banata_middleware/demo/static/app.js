// banata-mfa demo: the one script of every page.
//
// It talks to the middleware's JSON endpoints with fetch, making the same calls as better-auth's
// authClient (signIn.email, twoFactor.enable, twoFactor.verifyTotp, passkey.addPasskey, ...): the
// `authClient` object below is a tiny stand-in with the same names, so this file doubles as a
// live example of the wire contract (docs/http-api.md). No framework, no build step.
"use strict";

(() => {
  const BASE = "/api/auth";

  // Every form here is driven by this script. One submitted before its page has bound its handler
  // (a click while the session loads) must not fall back to the browser's own GET to this URL,
  // which would put its fields, passwords included, in the address bar and the server's logs.
  document.addEventListener("submit", (event) => event.preventDefault(), true);

  // -- talking to the server ---------------------------------------------------------------
  // Every call answers { data, error } like better-auth's client. Same-origin fetch sends the
  // session cookies and, on POST, an Origin header: the middleware refuses a state-changing
  // request that carries its cookies without the site's Origin (INVALID_ORIGIN).
  async function request(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { accept: "application/json" } };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      return { data: null, error: { status: 0, code: "NETWORK_ERROR", message: "network error" } };
    }
    let payload = null;
    const text = await response.text();
    if (text) {
      try {
        payload = JSON.parse(text);
      } catch (_) {
        payload = { code: "BAD_RESPONSE", message: text.slice(0, 200) };
      }
    }
    if (response.ok) return { data: payload, error: null };
    const error = Object.assign({ code: "HTTP_" + response.status, message: "" }, payload || {});
    error.status = response.status;
    error.retryAfter = response.headers.get("retry-after");
    return { data: null, error };
  }
  const get = (path) => request("GET", BASE + path);
  const post = (path, body) => request("POST", BASE + path, body || {});

  const authClient = {
    signUp: { email: (body) => post("/sign-up/email", body) },
    signIn: {
      email: (body) => post("/sign-in/email", body),
      passkey: () => passkeySignIn(),
    },
    signOut: () => post("/sign-out"),
    getSession: () => get("/get-session"),
    listSessions: () => get("/list-sessions"),
    revokeSession: (body) => post("/revoke-session", body),
    revokeOtherSessions: () => post("/revoke-other-sessions"),
    revokeSessions: () => post("/revoke-sessions"),
    twoFactor: {
      enable: (body) => post("/two-factor/enable", body),
      verifyTotp: (body) => post("/two-factor/verify-totp", body),
      verifyBackupCode: (body) => post("/two-factor/verify-backup-code", body),
      disable: (body) => post("/two-factor/disable", body),
      getTotpUri: (body) => post("/two-factor/get-totp-uri", body),
      generateBackupCodes: (body) => post("/two-factor/generate-backup-codes", body),
      sendOtp: (body) => post("/two-factor/send-otp", body),
      verifyOtp: (body) => post("/two-factor/verify-otp", body),
      // Ours: stop codes by message (one channel or all).
      disableOtp: (body) => post("/two-factor/disable-otp", body),
      // Ours (better-auth has no trusted-device endpoints).
      listTrustedDevices: () => get("/two-factor/list-trusted-devices"),
      revokeTrustedDevice: (body) => post("/two-factor/revoke-trusted-device", body),
      revokeTrustedDevices: () => post("/two-factor/revoke-trusted-devices"),
      // Ours too: several authenticator apps per user (enable adds one while 2FA is on).
      listAuthenticators: () => get("/two-factor/list-authenticators"),
      renameAuthenticator: (body) => post("/two-factor/rename-authenticator", body),
      removeAuthenticator: (body) => post("/two-factor/remove-authenticator", body),
    },
    passkey: {
      addPasskey: (body) => addPasskey(body || {}),
      listUserPasskeys: () => get("/passkey/list-user-passkeys"),
      deletePasskey: (body) => post("/passkey/delete-passkey", body),
      updatePasskey: (body) => post("/passkey/update-passkey", body),
    },
  };

  // -- error messages: one for every error code of the contract --------------------------------
  function waitText(retryAfter) {
    const seconds = Number.parseInt(retryAfter, 10);
    if (!Number.isFinite(seconds) || seconds <= 0) return "a few minutes";
    if (seconds < 60) return seconds === 1 ? "1 second" : `${seconds} seconds`;
    const minutes = Math.ceil(seconds / 60);
    return minutes === 1 ? "1 minute" : `${minutes} minutes`;
  }

  const MESSAGES = {
    INVALID_CODE: (e) => {
      if (typeof e.attemptsRemaining === "number") {
        const left = e.attemptsRemaining === 1 ? "1 attempt left" : `${e.attemptsRemaining} attempts left`;
        return `That code is not correct (or was already used). ${left}.`;
      }
      return "That code is not correct, has expired or was already used. Try the current code.";
    },
    TOO_MANY_ATTEMPTS: () => "Too many wrong codes: this sign-in has ended. Sign in again with your password.",
    ACCOUNT_TEMPORARILY_LOCKED: (e) =>
      `Too many failed second-factor attempts: this account is locked for now. Try again in ${waitText(e.retryAfter)}.`,
    TOO_MANY_REQUESTS: (e) => (e.message || "").includes("code was sent")
      ? `A code was sent a moment ago: use it, or ask for another in ${waitText(e.retryAfter)}.`
      : `Too many failed sign-ins. Try again in ${waitText(e.retryAfter)}.`,
    OTP_NOT_ENABLED: () => "Codes by email or text message are not set up for this account.",
    OTP_DELIVERY_FAILED: () => "The code could not be sent just now. Nothing was changed; try again in a moment.",
    OTP_ENROLMENT_CONFLICT: () => "Another setup of codes by message finished first. Start again.",
    STORE_UNAVAILABLE: () =>
      "The sign-in service is unavailable right now (its data store cannot be reached). Nothing was changed; try again in a moment.",
    INVALID_PASSWORD: () => "That password is not correct.",
    INVALID_EMAIL_OR_PASSWORD: () => "Invalid email or password.",
    USER_ALREADY_EXISTS: () => "An account with this email exists already. Sign in instead.",
    PASSWORD_TOO_SHORT: (e) => `The password is too short: ${e.message}.`,
    VALIDATION_ERROR: (e) => `Please check what you entered (${e.message}).`,
    TWO_FACTOR_NOT_ENABLED: () => "Two-factor authentication is not set up for this account.",
    TWO_FACTOR_ALREADY_ENABLED: () => "Two-factor authentication is on already. Turn it off first to set it up again.",
    TWO_FACTOR_REQUIRED: () => "Finish signing in with your second factor first.",
    FRESH_TWO_FACTOR_REQUIRED: () => "This action needs a recent second factor: confirm with a code.",
    FRESH_PASSWORD_REQUIRED: () =>
      "This change needs a recent password check: sign out, sign in again, then retry.",
    TWO_FACTOR_ENROLLMENT_REQUIRED: () => "Set up two-factor authentication first.",
    UNAUTHORIZED: () => "You are not signed in (or your sign-in expired). Sign in again.",
    INVALID_ORIGIN: () =>
      `The request was refused: this page's address (${window.location.origin}) is not the site's address. ` +
      "Open the demo at its --site-url (by default http://localhost:PORT, not 127.0.0.1).",
    PAYLOAD_TOO_LARGE: () => "That was too much data to send.",
    CHALLENGE_NOT_FOUND: () => "The passkey request expired or was used already. Try again.",
    AUTHENTICATION_FAILED: (e) => `The passkey was not accepted (${e.message}).`,
    PASSKEY_NOT_FOUND: () => "This passkey is not registered here (it may have been deleted). Sign in another way.",
    FAILED_TO_VERIFY_REGISTRATION: () => "The passkey could not be registered. Try again.",
    PASSKEY_ALREADY_REGISTERED: () => "This passkey is registered already.",
    AUTHENTICATOR_NOT_FOUND: () => "That authenticator app is not on your account any more. Reload the page.",
    AUTHENTICATOR_NAME_TAKEN: () => "Another of your authenticator apps has that name. Choose another one.",
    TOO_MANY_AUTHENTICATORS: () => "You have 10 authenticator apps already. Remove one to add another.",
    BACKUP_CODES_CHANGED: () =>
      "Your backup codes were changed in another tab or window meanwhile. Generate them again if you still need new ones.",
    TWO_FACTOR_CHANGED: () =>
      "Your second factors were changed, or are being changed, in another tab or window. Reload the page and try again in a moment if needed.",
    NETWORK_ERROR: () => "Cannot reach the server. Check that the demo is running and try again.",
  };

  function describeError(error) {
    const make = MESSAGES[error.code];
    if (make) return make(error);
    return error.message ? `Something went wrong: ${error.message}.` : `Something went wrong (HTTP ${error.status}).`;
  }

  // What went wrong in navigator.credentials (a DOMException), in words.
  function describeWebAuthnError(exc) {
    switch (exc && exc.name) {
      case "NotAllowedError":
        return "The passkey prompt was cancelled or timed out.";
      case "InvalidStateError":
        return "This device holds a passkey for this account already.";
      case "SecurityError":
        return "Passkeys need the page to be opened at the demo's site URL (its host is the rpId): " +
          "use http://localhost:PORT, not 127.0.0.1.";
      case "NotSupportedError":
        return "This authenticator does not support what the server asked for.";
      case "AbortError":
        return "The passkey request was cancelled.";
      default:
        return `The passkey request failed: ${exc && exc.message ? exc.message : exc}.`;
    }
  }

  // -- WebAuthn: JSON options <-> the browser's ArrayBuffers -----------------------------------
  function b64urlToBuffer(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function bufferToB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  const descriptors = (list) => (list || []).map((c) => Object.assign({}, c, { id: b64urlToBuffer(c.id) }));

  function creationOptionsFromJSON(json) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: b64urlToBuffer(json.challenge),
      user: Object.assign({}, json.user, { id: b64urlToBuffer(json.user.id) }),
      excludeCredentials: descriptors(json.excludeCredentials),
    });
  }

  function requestOptionsFromJSON(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: b64urlToBuffer(json.challenge),
      allowCredentials: descriptors(json.allowCredentials),
    });
  }

  // The JSON a server expects (WebAuthn Level 3 PublicKeyCredential.toJSON(), or the same by hand).
  function credentialToJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const r = credential.response;
    const json = {
      id: credential.id,
      rawId: bufferToB64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: bufferToB64url(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      json.response.attestationObject = bufferToB64url(r.attestationObject);
      if (typeof r.getTransports === "function") json.response.transports = r.getTransports();
    } else {
      json.response.authenticatorData = bufferToB64url(r.authenticatorData);
      json.response.signature = bufferToB64url(r.signature);
      json.response.userHandle = r.userHandle ? bufferToB64url(r.userHandle) : null;
    }
    return json;
  }

  const webauthnAvailable = () =>
    typeof window.PublicKeyCredential === "function" && !!navigator.credentials;

  // GET options -> navigator.credentials.create -> POST the credential (passkey.addPasskey).
  async function addPasskey({ name }) {
    const query = name ? `?name=${encodeURIComponent(name)}` : "";
    const options = await get(`/passkey/generate-register-options${query}`);
    if (options.error) return options;
    let credential;
    try {
      credential = await navigator.credentials.create({ publicKey: creationOptionsFromJSON(options.data) });
    } catch (exc) {
      return { data: null, error: { code: "WEBAUTHN", message: describeWebAuthnError(exc) } };
    }
    return post("/passkey/verify-registration", { response: credentialToJSON(credential), name: name || undefined });
  }

  // GET options -> navigator.credentials.get -> POST the assertion (signIn.passkey). With the
  // pending-challenge cookie of a password sign-in, the passkey answers it as the second factor.
  async function passkeySignIn() {
    const options = await get("/passkey/generate-authenticate-options");
    if (options.error) return options;
    let credential;
    try {
      credential = await navigator.credentials.get({ publicKey: requestOptionsFromJSON(options.data) });
    } catch (exc) {
      return { data: null, error: { code: "WEBAUTHN", message: describeWebAuthnError(exc) } };
    }
    return post("/passkey/verify-authentication", { response: credentialToJSON(credential) });
  }

  // -- page helpers ---------------------------------------------------------------------------
  const $ = (selector) => document.querySelector(selector);
  const show = (el) => { if (el) el.hidden = false; };
  const hide = (el) => { if (el) el.hidden = true; };

  function setError(el, error) {
    if (!el) return;
    if (!error) { el.textContent = ""; return; }
    el.textContent = error.code === "WEBAUTHN" ? error.message : describeError(error);
  }

  // Runs `work` with the form's submit button disabled; a second submit meanwhile is ignored.
  async function busy(button, work) {
    if (button.disabled) return undefined;
    button.disabled = true;
    try {
      return await work();
    } finally {
      button.disabled = false;
    }
  }

  function onSubmit(form, handler) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]") || form;
      busy(button, () => handler(new FormData(form)));
    });
  }

  function onClick(button, handler) {
    button.addEventListener("click", () => busy(button, handler));
  }

  function flash(message) { sessionStorage.setItem("banata.flash", message); }
  function showFlash() {
    const message = sessionStorage.getItem("banata.flash");
    const el = $("#flash");
    if (message && el) {
      el.textContent = message;
      show(el);
      sessionStorage.removeItem("banata.flash");
    }
  }

  const digits = (value) => String(value || "").replace(/\s+/g, "");

  function focusSoon(el) { if (el) setTimeout(() => el.focus(), 0); }

  // A sign-in answer: a session, or a second factor due (403 TWO_FACTOR_REQUIRED by the contract,
  // or 200 {twoFactorRedirect: true} with challenge_status=200, as better-auth answers).
  function afterSignIn(result, errorEl) {
    const due = (result.data && result.data.twoFactorRedirect) ||
      (result.error && result.error.code === "TWO_FACTOR_REQUIRED");
    if (due) {
      const methods = (result.data || result.error).twoFactorMethods || [];
      sessionStorage.setItem("banata.twoFactorMethods", JSON.stringify(methods));
      window.location.assign("/two-factor");
      return;
    }
    if (result.error) { setError(errorEl, result.error); return; }
    window.location.assign("/dashboard");
  }

  function wireSignOut() {
    const button = $("#sign-out");
    if (!button) return;
    onClick(button, async () => {
      await authClient.signOut();
      flash("You are signed out.");
      window.location.assign("/sign-in");
    });
  }

  function hideWithoutWebAuthn() {
    if (webauthnAvailable()) return;
    document.querySelectorAll("[data-needs-webauthn]").forEach(hide);
    show($("#webauthn-missing"));
  }

  // Changing a factor needs a second factor from the last few minutes: on 403
  // FRESH_TWO_FACTOR_REQUIRED, ask for a code, step up (verify-totp or verify-backup-code with the
  // session, which rotates it) and try once more.
  async function withFreshFactor(call) {
    const first = await call();
    if (!first.error || first.error.code !== "FRESH_TWO_FACTOR_REQUIRED") return first;
    const typed = window.prompt("Confirm it is you: enter the 6-digit code from your authenticator app (or a " +
      "backup code). Leave it empty to get a code by email or text message instead.");
    if (typed === null) return first;
    let code = digits(typed);
    let stepUp;
    if (!code) {  // a code by message, if the account has them
      const sent = await authClient.twoFactor.sendOtp();
      if (sent.error) return sent;
      code = digits(window.prompt("Enter the code we just sent you by email or text message."));
      if (!code) return first;
      stepUp = await authClient.twoFactor.verifyOtp({ code });
    } else {
      stepUp = /^\d{6}$/.test(code)
        ? await authClient.twoFactor.verifyTotp({ code })
        : await authClient.twoFactor.verifyBackupCode({ code });
    }
    return stepUp.error ? stepUp : call();
  }

  // -- pages ----------------------------------------------------------------------------------
  const pages = {};

  pages["sign-up"] = () => {
    onSubmit($("#sign-up-form"), async (form) => {
      setError($("#sign-up-error"), null);
      const result = await authClient.signUp.email({
        name: form.get("name") || "", email: form.get("email"), password: form.get("password"),
      });
      if (result.error) { setError($("#sign-up-error"), result.error); return; }
      flash("Your account is ready. Next: turn on two-factor authentication in Security settings.");
      window.location.assign("/dashboard");
    });
  };

  pages["sign-in"] = async () => {
    showFlash();
    onSubmit($("#sign-in-form"), async (form) => {
      setError($("#sign-in-error"), null);
      const result = await authClient.signIn.email({
        email: form.get("email"), password: form.get("password"), rememberMe: form.get("rememberMe") === "on",
      });
      afterSignIn(result, $("#sign-in-error"));
    });
    onClick($("#passkey-sign-in"), async () => {
      setError($("#passkey-sign-in-error"), null);
      afterSignIn(await authClient.signIn.passkey(), $("#passkey-sign-in-error"));
    });
    const session = await authClient.getSession();
    if (session.data) show($("#signed-in-note"));
  };

  pages["two-factor"] = () => {
    let methods = null;
    try { methods = JSON.parse(sessionStorage.getItem("banata.twoFactorMethods") || "null"); } catch (_) { /* */ }
    const offers = (m) => !Array.isArray(methods) || methods.length === 0 || methods.includes(m);
    const totpStep = $("#totp-step");
    const backupStep = $("#backup-step");
    const otpStep = $("#otp-step");
    if (!offers("backup_code")) { hide($("#use-backup-code")); hide($("#otp-use-backup-code")); }
    if (offers("passkey") && webauthnAvailable()) show($("#passkey-option"));
    const byMessage = Array.isArray(methods) && methods.includes("otp");
    if (byMessage) show($("#use-otp"));
    if (Array.isArray(methods) && !methods.includes("totp")) {
      hide($("#otp-use-totp")); hide($("#use-totp"));
      if (byMessage) { hide(totpStep); show(otpStep); }
    }

    function done(result, errorEl) {
      if (result.error) {
        setError(errorEl, result.error);
        if (["TOO_MANY_ATTEMPTS", "UNAUTHORIZED"].includes(result.error.code)) show($("#restart"));
        return;
      }
      sessionStorage.removeItem("banata.twoFactorMethods");
      if (typeof result.data.backupCodesRemaining === "number") {
        const n = result.data.backupCodesRemaining;
        flash(`Signed in with a backup code. ${n} backup code${n === 1 ? "" : "s"} left.`);
      }
      window.location.assign("/dashboard");
    }

    onSubmit($("#totp-form"), async (form) => {
      const code = digits(form.get("code"));
      if (!/^\d{6}$/.test(code)) {
        $("#totp-error").textContent = "Enter the 6-digit code your authenticator app shows.";
        return;
      }
      setError($("#totp-error"), null);
      const result = await authClient.twoFactor.verifyTotp({ code, trustDevice: form.get("trustDevice") === "on" });
      if (result.error) { $("#totp-code").select(); }
      done(result, $("#totp-error"));
    });
    onSubmit($("#backup-form"), async (form) => {
      setError($("#backup-error"), null);
      const result = await authClient.twoFactor.verifyBackupCode({
        code: String(form.get("code")).trim(), trustDevice: form.get("trustDevice") === "on",
      });
      done(result, $("#backup-error"));
    });
    $("#use-backup-code").addEventListener("click", () => {
      hide(totpStep); show(backupStep); focusSoon($("#backup-code"));
    });
    $("#otp-use-backup-code").addEventListener("click", () => {
      hide(otpStep); show(backupStep); focusSoon($("#backup-code"));
    });
    $("#use-otp").addEventListener("click", () => {
      hide(totpStep); show(otpStep); focusSoon($("#send-otp"));
    });
    $("#otp-use-totp").addEventListener("click", () => {
      hide(otpStep); show(totpStep); focusSoon($("#totp-code"));
    });
    onClick($("#send-otp"), async () => {
      setError($("#otp-error"), null);
      $("#otp-sent").textContent = "";
      const result = await authClient.twoFactor.sendOtp();
      if (result.error) { setError($("#otp-error"), result.error); return; }
      $("#otp-sent").textContent = "A code is on its way. It works once, for 5 minutes.";
      focusSoon($("#otp-code"));
    });
    onSubmit($("#otp-form"), async (form) => {
      setError($("#otp-error"), null);
      const result = await authClient.twoFactor.verifyOtp({
        code: digits(form.get("code")), trustDevice: form.get("trustDevice") === "on",
      });
      if (result.error) { $("#otp-code").select(); }
      done(result, $("#otp-error"));
    });
    $("#use-totp").addEventListener("click", () => {
      hide(backupStep); show(totpStep); focusSoon($("#totp-code"));
    });
    onClick($("#passkey-second-factor"), async () => {
      setError($("#passkey-error"), null);
      done(await authClient.signIn.passkey(), $("#passkey-error"));
    });
    focusSoon(otpStep.hidden ? $("#totp-code") : $("#send-otp"));
  };

  pages.dashboard = async () => {
    showFlash();
    wireSignOut();
    const session = await authClient.getSession();
    if (session.data) $("#account-email").textContent = session.data.user.email || session.data.user.name;

    const result = $("#sensitive-result");
    const stepUp = $("#step-up-form");
    async function attempt() {
      const response = await request("POST", "/api/sensitive", {});
      if (!response.error) {
        result.textContent = "Done: the server accepted the sensitive action.";
        hide(stepUp);
        return;
      }
      if (response.error.code === "FRESH_TWO_FACTOR_REQUIRED" && session.data && session.data.user.twoFactorEnabled) {
        result.textContent = describeError(response.error);
        show(stepUp);
        focusSoon($("#step-up-code"));
        return;
      }
      if (response.error.code === "FRESH_TWO_FACTOR_REQUIRED") {
        result.textContent = "This action needs a second factor: turn on two-factor authentication in Security settings first.";
        return;
      }
      result.textContent = describeError(response.error);
    }
    onClick($("#sensitive-action"), attempt);
    onSubmit(stepUp, async (form) => {
      setError($("#step-up-error"), null);
      const code = digits(form.get("code"));
      const verified = await authClient.twoFactor.verifyTotp({ code });
      if (verified.error) { setError($("#step-up-error"), verified.error); return; }
      stepUp.reset();
      await attempt();
    });
  };

  // Settings: codes by email or text message (enable with method "otp", confirmed by verify-otp).
  function wireCodesByMessage() {
    const channel = $("#otp-channel");
    channel.addEventListener("change", () => {
      if (channel.value === "sms") show($("#otp-to-field")); else hide($("#otp-to-field"));
    });
    onSubmit($("#otp-enable-form"), async (form) => {
      setError($("#otp-enable-error"), null);
      const body = { password: form.get("password"), method: "otp", channel: form.get("channel") };
      if (body.channel === "sms") body.to = form.get("to");
      const result = await withFreshFactor(() => authClient.twoFactor.enable(body));
      if (result.error) { setError($("#otp-enable-error"), result.error); return; }
      $("#otp-enable-form").reset();
      hide($("#otp-enable-form"));
      $("#otp-confirm-note").textContent = `A code went to ${result.data.to}. Enter it to turn codes on.`;
      show($("#otp-confirm-form"));
      focusSoon($("#otp-confirm-code"));
    });
    onSubmit($("#otp-confirm-form"), async (form) => {
      setError($("#otp-confirm-error"), null);
      const result = await authClient.twoFactor.verifyOtp({ code: digits(form.get("code")) });
      if (result.error) { setError($("#otp-confirm-error"), result.error); return; }
      flash("Codes by message are on: signing in can now ask for a code sent to you.");
      window.location.reload();
    });
    onSubmit($("#otp-disable-form"), async (form) => {
      setError($("#otp-disable-error"), null);
      const result = await withFreshFactor(() => authClient.twoFactor.disableOtp({ password: form.get("password") }));
      if (result.error) { setError($("#otp-disable-error"), result.error); return; }
      flash(result.data.twoFactorEnabled ? "Codes by message are off."
        : "Codes by message are off, and with them two-factor authentication.");
      window.location.reload();
    });
  }

  pages.settings = async () => {
    showFlash();
    wireSignOut();
    hideWithoutWebAuthn();
    const panels = ["#tfa-loading", "#tfa-off", "#tfa-scan", "#backup-codes-panel", "#tfa-on"];
    const only = (selector) => panels.forEach((p) => (p === selector ? show($(p)) : hide($(p))));

    const session = await authClient.getSession();
    if (!session.data) {
      flash("Your sign-in has ended. Sign in again.");
      window.location.assign("/sign-in");
      return;
    }
    only(session.data.user.twoFactorEnabled ? "#tfa-on" : "#tfa-off");
    wireCodesByMessage();

    // Backup codes, shown once: here, then never again (the server keeps only keyed hashes).
    let shownCodes = [];
    let afterCodes = () => showOn();
    function showCodes(codes, { setup }) {
      shownCodes = codes;
      const list = $("#backup-codes");
      list.replaceChildren(...codes.map((code) => {
        const li = document.createElement("li");
        li.textContent = code;
        return li;
      }));
      $("#copy-status").textContent = "";
      $("#setup-progress-codes").hidden = !setup;
      only("#backup-codes-panel");
      focusSoon($("#codes-done"));
    }
    const codesText = () =>
      `Banata Demo backup codes for ${session.data.user.email}\n` +
      "Each code works once. Generated " + new Date().toISOString() + "\n\n" + shownCodes.join("\n") + "\n";
    $("#copy-codes").addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(shownCodes.join("\n"));
        $("#copy-status").textContent = "Copied to the clipboard.";
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents($("#backup-codes"));
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        $("#copy-status").textContent = "Copying is blocked here: the codes are selected, press Ctrl+C.";
      }
    });
    $("#download-codes").addEventListener("click", () => {
      const url = URL.createObjectURL(new Blob([codesText()], { type: "text/plain" }));
      const link = document.createElement("a");
      link.href = url;
      link.download = "banata-demo-backup-codes.txt";
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    });
    $("#codes-done").addEventListener("click", () => {
      shownCodes = [];
      $("#backup-codes").replaceChildren();
      afterCodes();
    });

    // Setup: password -> QR code and secret -> verify a code -> backup codes -> on.
    let pendingCodes = [];
    onSubmit($("#enable-form"), async (form) => {
      setError($("#enable-error"), null);
      const result = await authClient.twoFactor.enable({ password: form.get("password") });
      if (result.error) { setError($("#enable-error"), result.error); return; }
      $("#enable-form").reset();
      pendingCodes = result.data.backupCodes;
      const uri = result.data.totpURI;
      // The QR code is drawn by the demo server (segno), never by a third-party image service.
      const qr = await request("POST", "/demo/qr", { uri });
      if (qr.error) { setError($("#enable-error"), qr.error); return; }
      $("#qr-image").src = qr.data.svg;
      const secret = new URL(uri).searchParams.get("secret") || "";
      $("#manual-secret").textContent = secret.replace(/(.{4})(?=.)/g, "$1 ");
      $("#otpauth-uri").textContent = uri;
      setError($("#verify-error"), null);
      only("#tfa-scan");
      focusSoon($("#setup-code"));
    });
    onSubmit($("#verify-form"), async (form) => {
      const code = digits(form.get("code"));
      if (!/^\d{6}$/.test(code)) {
        $("#verify-error").textContent = "Enter the 6-digit code your authenticator app shows.";
        return;
      }
      setError($("#verify-error"), null);
      const result = await authClient.twoFactor.verifyTotp({ code });
      if (result.error) { setError($("#verify-error"), result.error); $("#setup-code").select(); return; }
      $("#verify-form").reset();
      $("#qr-image").removeAttribute("src");
      $("#manual-secret").textContent = "";
      $("#otpauth-uri").textContent = "";
      afterCodes = () => {
        showOn();
        $("#flash").textContent = "Two-factor authentication is on.";
        show($("#flash"));
      };
      showCodes(pendingCodes, { setup: true });
      pendingCodes = [];
    });
    $("#setup-cancel").addEventListener("click", () => {
      // Nothing is active until a code is verified; a later setup replaces this one.
      pendingCodes = [];
      $("#verify-form").reset();
      only("#tfa-off");
    });
    onSubmit($("#regenerate-form"), async (form) => {
      setError($("#regenerate-error"), null);
      const result = await withFreshFactor(
        () => authClient.twoFactor.generateBackupCodes({ password: form.get("password") }));
      if (result.error) { setError($("#regenerate-error"), result.error); return; }
      $("#regenerate-form").reset();
      afterCodes = () => showOn();
      showCodes(result.data.backupCodes, { setup: false });
    });
    onSubmit($("#disable-form"), async (form) => {
      setError($("#disable-error"), null);
      const result = await withFreshFactor(() => authClient.twoFactor.disable({ password: form.get("password") }));
      if (result.error) { setError($("#disable-error"), result.error); return; }
      $("#disable-form").reset();
      only("#tfa-off");
      $("#flash").textContent = "Two-factor authentication is off.";
      show($("#flash"));
    });

    // Passkeys: list, add, rename, delete.
    async function loadPasskeys() {
      const result = await authClient.passkey.listUserPasskeys();
      setError($("#passkey-list-error"), result.error);
      const items = result.data || [];
      $("#passkey-list").replaceChildren(...items.map(passkeyItem));
      $("#passkey-empty").hidden = items.length > 0;
    }
    function passkeyItem(passkey) {
      const li = document.createElement("li");
      li.dataset.id = passkey.id;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = passkey.name || "Passkey";
      const meta = document.createElement("span");
      meta.className = "meta";
      const created = passkey.createdAt ? new Date(passkey.createdAt).toLocaleString() : "";
      meta.textContent = `added ${created}` +
        (passkey.deviceType === "multi_device" ? " · synced" : " · this device only");
      const rename = document.createElement("button");
      rename.type = "button";
      rename.className = "secondary";
      rename.textContent = "Rename";
      rename.setAttribute("aria-label", `Rename passkey ${passkey.name}`);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "danger";
      remove.textContent = "Delete";
      remove.setAttribute("aria-label", `Delete passkey ${passkey.name}`);
      const error = document.createElement("p");
      error.className = "error";
      error.setAttribute("role", "alert");
      const info = document.createElement("div");
      info.className = "info";
      info.append(name, meta);
      li.append(info, rename, remove, error);

      rename.addEventListener("click", () => {
        const form = document.createElement("form");
        form.className = "row";
        const inputId = `rename-${passkey.id}`;
        const label = document.createElement("label");
        label.htmlFor = inputId;
        label.textContent = "New name";
        const input = document.createElement("input");
        input.id = inputId;
        input.name = "name";
        input.type = "text";
        input.maxLength = 64;
        input.required = true;
        input.value = passkey.name || "";
        const save = document.createElement("button");
        save.type = "submit";
        save.textContent = "Save";
        const cancel = document.createElement("button");
        cancel.type = "button";
        cancel.className = "secondary";
        cancel.textContent = "Cancel";
        form.append(label, input, save, cancel);
        li.replaceChildren(form, error);
        input.focus();
        input.select();
        cancel.addEventListener("click", () => loadPasskeys());
        onSubmit(form, async (data) => {
          const result = await withFreshFactor(
            () => authClient.passkey.updatePasskey({ id: passkey.id, name: data.get("name") }));
          if (result.error) { setError(error, result.error); return; }
          await loadPasskeys();
        });
      });
      remove.addEventListener("click", () => {
        const ask = document.createElement("span");
        ask.textContent = `Delete “${passkey.name}”? You can no longer sign in with it.`;
        const yes = document.createElement("button");
        yes.type = "button";
        yes.className = "danger";
        yes.textContent = "Yes, delete";
        const no = document.createElement("button");
        no.type = "button";
        no.className = "secondary";
        no.textContent = "Keep it";
        li.replaceChildren(ask, yes, no, error);
        yes.focus();
        no.addEventListener("click", () => loadPasskeys());
        onClick(yes, async () => {
          const result = await withFreshFactor(() => authClient.passkey.deletePasskey({ id: passkey.id }));
          if (result.error) { setError(error, result.error); return; }
          await loadPasskeys();
        });
      });
      return li;
    }
    onSubmit($("#add-passkey-form"), async (form) => {
      setError($("#add-passkey-error"), null);
      const name = String(form.get("name") || "").trim();
      const result = await withFreshFactor(() => authClient.passkey.addPasskey({ name }));
      if (result.error) { setError($("#add-passkey-error"), result.error); return; }
      $("#add-passkey-form").reset();
      await loadPasskeys();
    });
    await loadPasskeys();

    // Sessions and trusted devices: list them, end one or all (each end asks for a fresh factor).
    function describeAgent(agent) {
      const text = agent || "Unknown browser";
      return text.length > 80 ? `${text.slice(0, 77)}…` : text;
    }
    const when = (iso) => (iso ? new Date(iso).toLocaleString() : "?");
    function listItem(label, meta, button) {
      const li = document.createElement("li");
      const info = document.createElement("div");
      info.className = "info";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = label;
      const details = document.createElement("span");
      details.className = "meta";
      details.textContent = meta;
      info.append(name, details);
      const error = document.createElement("p");
      error.className = "error";
      error.setAttribute("role", "alert");
      li.append(info);
      if (button) li.append(button);
      li.append(error);
      return { li, error };
    }
    function actionButton(text, label, className) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = className;
      button.textContent = text;
      button.setAttribute("aria-label", label);
      return button;
    }
    async function loadSessions() {
      const result = await authClient.listSessions();
      setError($("#session-list-error"), result.error);
      const items = (result.data || []).map((s) => {
        const agent = describeAgent(s.userAgent);
        const meta = `${s.current ? "this browser · " : ""}${s.ipAddress || "unknown address"} · signed in ` +
          `${when(s.createdAt)} · last active ${when(s.lastUsedAt)} · ${s.aal >= 2 ? "AAL2" : "AAL1"}` +
          (s.amr ? ` (${s.amr.join(", ")})` : "");
        const button = s.current ? null
          : actionButton("Sign out", `Sign out ${agent} (${s.ipAddress || "unknown address"})`, "danger");
        const { li, error } = listItem(agent, meta, button);
        li.dataset.id = s.id;
        if (button) {
          onClick(button, async () => {
            const ended = await withFreshFactor(() => authClient.revokeSession({ token: s.token }));
            if (ended.error) { setError(error, ended.error); return; }
            await loadSessions();
          });
        }
        return li;
      });
      $("#session-list").replaceChildren(...items);
    }
    onClick($("#sign-out-others"), async () => {
      const ended = await withFreshFactor(() => authClient.revokeOtherSessions());
      setError($("#session-list-error"), ended.error);
      await loadSessions();
    });
    async function loadDevices() {
      const result = await authClient.twoFactor.listTrustedDevices();
      setError($("#device-list-error"), result.error);
      const items = (result.data || []).map((d) => {
        const agent = describeAgent(d.userAgent);
        const meta = `${d.current ? "this browser · " : ""}${d.ipAddress || "unknown address"} · trusted ` +
          `${when(d.createdAt)} · last used ${when(d.lastUsedAt)} · until ${when(d.expiresAt)}`;
        const button = actionButton("Forget", `Forget ${agent} (${d.ipAddress || "unknown address"})`, "danger");
        const { li, error } = listItem(agent, meta, button);
        li.dataset.id = d.id;
        onClick(button, async () => {
          const forgotten = await withFreshFactor(() => authClient.twoFactor.revokeTrustedDevice({ id: d.id }));
          if (forgotten.error) { setError(error, forgotten.error); return; }
          await loadDevices();
        });
        return li;
      });
      $("#device-list").replaceChildren(...items);
      $("#device-empty").hidden = items.length > 0;
      $("#forget-devices").hidden = items.length === 0;
    }
    onClick($("#forget-devices"), async () => {
      const forgotten = await withFreshFactor(() => authClient.twoFactor.revokeTrustedDevices());
      setError($("#device-list-error"), forgotten.error);
      await loadDevices();
    });
    // Authenticator apps (2FA on): the list, another app added (QR code, then its first code),
    // rename, remove. Adding is better-auth's enable while 2FA is on; its first code goes to
    // verifyTotp, which confirms it. Removing the last one turns two-factor authentication off.
    function showOn() {
      only("#tfa-on");
      loadAuthenticators();
    }
    let adding = null;
    async function loadAuthenticators() {
      const result = await authClient.twoFactor.listAuthenticators();
      setError($("#authenticator-list-error"), result.error);
      const apps = result.data || [];
      const confirmed = apps.filter((a) => a.confirmed).length;
      $("#authenticator-list").replaceChildren(...apps.map((app) => authenticatorItem(app, confirmed)));
    }
    function authenticatorItem(app, confirmed) {
      const meta = app.confirmed
        ? `added ${when(app.createdAt)} · last used ${app.lastUsedAt ? when(app.lastUsedAt) : "never"}`
        : "being added: waiting for its first code";
      const rename = actionButton("Rename", `Rename authenticator app ${app.name}`, "secondary");
      const remove = actionButton("Remove", `Remove authenticator app ${app.name}`, "danger");
      const { li, error } = listItem(app.name, meta, rename);
      li.dataset.id = app.id;
      li.insertBefore(remove, error);
      rename.addEventListener("click", () => {
        const form = document.createElement("form");
        form.className = "row";
        const label = document.createElement("label");
        label.htmlFor = `rename-app-${app.id}`;
        label.textContent = "New name";
        const input = document.createElement("input");
        input.id = label.htmlFor;
        input.name = "name";
        input.type = "text";
        input.maxLength = 64;
        input.required = true;
        input.value = app.name;
        const save = document.createElement("button");
        save.type = "submit";
        save.textContent = "Save";
        const cancel = actionButton("Cancel", "Keep the name", "secondary");
        form.append(label, input, save, cancel);
        li.replaceChildren(form, error);
        input.focus();
        input.select();
        cancel.addEventListener("click", () => loadAuthenticators());
        onSubmit(form, async (data) => {
          const result = await withFreshFactor(
            () => authClient.twoFactor.renameAuthenticator({ id: app.id, name: data.get("name") }));
          if (result.error) { setError(error, result.error); return; }
          await loadAuthenticators();
        });
      });
      remove.addEventListener("click", () => {
        const last = app.confirmed && confirmed === 1;
        const ask = document.createElement("span");
        ask.textContent = last
          ? `Remove “${app.name}”, your last authenticator app? Two-factor authentication turns off.`
          : `Remove “${app.name}”? Its codes stop working.`;
        const yes = actionButton("Yes, remove", `Yes, remove ${app.name}`, "danger");
        const no = actionButton("Keep it", `Keep ${app.name}`, "secondary");
        // Turning two-factor off needs the password, as "Turn off" does: the server refuses the
        // last app's removal without it (codes by message may keep 2FA on; the password is then
        // checked all the same).
        let password = null;
        if (last) {
          const label = document.createElement("label");
          label.htmlFor = `remove-app-password-${app.id}`;
          label.textContent = "Your password, to turn two-factor off";
          password = document.createElement("input");
          password.id = label.htmlFor;
          password.name = "password";
          password.type = "password";
          password.autocomplete = "current-password";
          password.required = true;
          li.replaceChildren(ask, label, password, yes, no, error);
          password.focus();
        } else {
          li.replaceChildren(ask, yes, no, error);
          yes.focus();
        }
        no.addEventListener("click", () => loadAuthenticators());
        onClick(yes, async () => {
          if (password && !password.value) {
            error.textContent = "Enter your password to turn two-factor authentication off.";
            password.focus();
            return;
          }
          const body = password ? { id: app.id, password: password.value } : { id: app.id };
          const result = await withFreshFactor(() => authClient.twoFactor.removeAuthenticator(body));
          if (result.error) { setError(error, result.error); return; }
          if (!result.data.twoFactorEnabled) {
            addingDone();
            only("#tfa-off");
            $("#flash").textContent = "Two-factor authentication is off: you removed your last authenticator app.";
            show($("#flash"));
            return;
          }
          await loadAuthenticators();
        });
      });
      return li;
    }
    function addingDone() {
      adding = null;
      $("#app-verify-form").reset();
      $("#app-qr-image").removeAttribute("src");
      $("#app-manual-secret").textContent = "";
      hide($("#add-app-scan"));
      show($("#add-app-form"));
    }
    onSubmit($("#add-app-form"), async (form) => {
      setError($("#add-app-error"), null);
      const name = String(form.get("name") || "").trim();
      const result = await withFreshFactor(
        () => authClient.twoFactor.enable({ password: form.get("password"), ...(name ? { name } : {}) }));
      if (result.error) { setError($("#add-app-error"), result.error); return; }
      $("#add-app-form").reset();
      adding = result.data;
      const qr = await request("POST", "/demo/qr", { uri: adding.totpURI });
      if (qr.error) { setError($("#add-app-error"), qr.error); return; }
      $("#app-qr-image").src = qr.data.svg;
      const secret = new URL(adding.totpURI).searchParams.get("secret") || "";
      $("#app-manual-secret").textContent = secret.replace(/(.{4})(?=.)/g, "$1 ");
      setError($("#app-verify-error"), null);
      hide($("#add-app-form"));
      show($("#add-app-scan"));
      focusSoon($("#app-code"));
      await loadAuthenticators();
    });
    onSubmit($("#app-verify-form"), async (form) => {
      const code = digits(form.get("code"));
      if (!/^\d{6}$/.test(code)) {
        $("#app-verify-error").textContent = "Enter the 6-digit code the new app shows.";
        return;
      }
      setError($("#app-verify-error"), null);
      const result = await withFreshFactor(() => authClient.twoFactor.verifyTotp({ code }));
      if (result.error) { setError($("#app-verify-error"), result.error); $("#app-code").select(); return; }
      const name = adding ? adding.name : "The new app";
      addingDone();
      $("#flash").textContent = `Authenticator app “${name}” added: its codes sign you in too.`;
      show($("#flash"));
      await loadAuthenticators();
    });
    onClick($("#app-cancel"), async () => {
      // Not active until its first code; removed here so that it does not linger in the list.
      const id = adding && adding.id;
      addingDone();
      if (id) await withFreshFactor(() => authClient.twoFactor.removeAuthenticator({ id }));
      await loadAuthenticators();
    });

    await Promise.all([loadSessions(), loadDevices(),
      session.data.user.twoFactorEnabled ? loadAuthenticators() : null]);
    if (window.location.hash === "#two-factor") focusSoon($("#enable-password"));
  };

  // For the browser tests and the curious: window.BanataDemo.describeError({code, ...}).
  window.BanataDemo = { authClient, describeError, describeWebAuthnError, b64urlToBuffer, bufferToB64url };

  // The navigation offers "Sign in" and "Create account" only to a visitor without a session.
  async function navForSession() {
    const links = document.querySelectorAll("[data-signed-out]");
    if (links.length && (await authClient.getSession()).data) links.forEach(hide);
  }

  navForSession();
  const start = pages[document.body.dataset.page];
  // data-ready: the page's handlers are bound (the browser tests wait for it before they click).
  Promise.resolve(start && start()).finally(() => { document.body.dataset.ready = "1"; });
})();
