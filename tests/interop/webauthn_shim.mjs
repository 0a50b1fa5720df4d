// A software WebAuthn authenticator behind `navigator.credentials`, so that the real
// `@simplewebauthn/browser` (used by better-auth's passkeyClient) runs its ceremonies in Node.
// It plays the browser (clientDataJSON with the page's origin) and a platform authenticator
// with user verification: ES256 keys, "none" attestation, a per-credential signature counter.
// Nothing in better-auth or @simplewebauthn is patched: only the browser API is supplied.

import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";

const b64url = (buf) => Buffer.from(buf).toString("base64url");
const bytes = (value) => Buffer.from(value instanceof ArrayBuffer ? new Uint8Array(value) : value);
const sha256 = (data) => createHash("sha256").update(data).digest();
const toArrayBuffer = (buf) => buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);

// Minimal canonical CBOR (RFC 8949) for what an authenticator emits: ints, byte/text strings, maps.
function cborHead(major, n) {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

function cbor(value) {
  if (Number.isInteger(value)) return value >= 0 ? cborHead(0, value) : cborHead(1, -1 - value);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.concat([cborHead(2, value.length), Buffer.from(value)]);
  if (typeof value === "string") {
    const s = Buffer.from(value, "utf8");
    return Buffer.concat([cborHead(3, s.length), s]);
  }
  if (value instanceof Map) {
    const parts = [cborHead(5, value.size)];
    for (const [k, v] of value) parts.push(cbor(k), cbor(v));
    return Buffer.concat(parts);
  }
  throw new TypeError(`cbor: unsupported value ${value}`);
}

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_AT = 0x40;

class DOMExceptionLike extends Error {
  constructor(message, name) {
    super(message);
    this.name = name;
  }
}

export class SoftwareAuthenticator {
  /** @param {string} origin the page origin the "browser" reports, e.g. http://localhost:8000 */
  constructor(origin) {
    this.origin = origin;
    this.credentials = new Map(); // b64url(id) -> {id, rpId, userHandle, privateKey, counter}
    this.calls = { create: 0, get: 0 };
  }

  clientData(type, challenge) {
    return Buffer.from(JSON.stringify({
      type, challenge: b64url(bytes(challenge)), origin: this.origin, crossOrigin: false,
    }));
  }

  rpIdOf(publicKey) {
    return publicKey.rpId ?? publicKey.rp?.id ?? new URL(this.origin).hostname;
  }

  async create({ publicKey }) {
    this.calls.create += 1;
    const rpId = this.rpIdOf(publicKey);
    for (const d of publicKey.excludeCredentials ?? []) {
      if (this.credentials.has(b64url(bytes(d.id)))) {
        throw new DOMExceptionLike("credential already registered", "InvalidStateError");
      }
    }
    if (!(publicKey.pubKeyCredParams ?? []).some((p) => p.alg === -7)) {
      throw new DOMExceptionLike("only ES256 is supported by this authenticator", "NotSupportedError");
    }
    const { privateKey, publicKey: pub } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = pub.export({ format: "jwk" });
    const cose = cbor(new Map([[1, 2], [3, -7], [-1, 1], [-2, Buffer.from(jwk.x, "base64url")],
      [-3, Buffer.from(jwk.y, "base64url")]]));
    const id = randomBytes(32);
    const idLen = Buffer.alloc(2);
    idLen.writeUInt16BE(id.length);
    const authData = Buffer.concat([
      sha256(rpId), Buffer.from([FLAG_UP | FLAG_UV | FLAG_AT]), Buffer.alloc(4), Buffer.alloc(16), idLen, id, cose,
    ]);
    const attestationObject = cbor(new Map([["fmt", "none"], ["attStmt", new Map()], ["authData", authData]]));
    const clientDataJSON = this.clientData("webauthn.create", publicKey.challenge);
    this.credentials.set(b64url(id), { id, rpId, userHandle: bytes(publicKey.user.id), privateKey, counter: 0 });
    const spki = pub.export({ format: "der", type: "spki" });
    return {
      id: b64url(id),
      rawId: toArrayBuffer(id),
      type: "public-key",
      authenticatorAttachment: "platform",
      response: {
        clientDataJSON: toArrayBuffer(clientDataJSON),
        attestationObject: toArrayBuffer(attestationObject),
        getTransports: () => ["internal"],
        getPublicKeyAlgorithm: () => -7,
        getPublicKey: () => toArrayBuffer(spki),
        getAuthenticatorData: () => toArrayBuffer(authData),
      },
      getClientExtensionResults: () => ({}),
    };
  }

  async get({ publicKey }) {
    this.calls.get += 1;
    const rpId = this.rpIdOf(publicKey);
    const allowed = (publicKey.allowCredentials ?? []).map((d) => b64url(bytes(d.id)));
    const cred = [...this.credentials.values()].find(
      (c) => c.rpId === rpId && (allowed.length === 0 || allowed.includes(b64url(c.id))));
    if (!cred) throw new DOMExceptionLike("no credential for this request", "NotAllowedError");
    cred.counter += 1;
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(cred.counter);
    const authData = Buffer.concat([sha256(rpId), Buffer.from([FLAG_UP | FLAG_UV]), counter]);
    const clientDataJSON = this.clientData("webauthn.get", publicKey.challenge);
    const signature = sign("sha256", Buffer.concat([authData, sha256(clientDataJSON)]), cred.privateKey); // DER
    return {
      id: b64url(cred.id),
      rawId: toArrayBuffer(cred.id),
      type: "public-key",
      authenticatorAttachment: "platform",
      response: {
        clientDataJSON: toArrayBuffer(clientDataJSON),
        authenticatorData: toArrayBuffer(authData),
        signature: toArrayBuffer(signature),
        userHandle: toArrayBuffer(cred.userHandle),
      },
      getClientExtensionResults: () => ({}),
    };
  }
}

/** Install `navigator.credentials` and `PublicKeyCredential` backed by a SoftwareAuthenticator. */
export function installWebAuthn(origin) {
  const authenticator = new SoftwareAuthenticator(origin);
  class PublicKeyCredential {
    static async isUserVerifyingPlatformAuthenticatorAvailable() { return true; }
    static async isConditionalMediationAvailable() { return false; }
  }
  globalThis.PublicKeyCredential = PublicKeyCredential;
  const credentials = {
    create: (options) => authenticator.create(options),
    get: (options) => authenticator.get(options),
  };
  if (globalThis.navigator === undefined) {
    Object.defineProperty(globalThis, "navigator", { value: { credentials }, configurable: true, writable: true });
  } else {
    Object.defineProperty(globalThis.navigator, "credentials", { value: credentials, configurable: true });
  }
  return authenticator;
}
