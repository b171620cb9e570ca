// Noise_XX_25519_AESGCM_SHA256 *responder* (the server side of WhatsApp's handshake)
// plus the certificate chain and the 3-byte frame splitter.
//
// Baileys only ships the initiator (Utils/noise-handler.js), so this file mirrors it step by step
// using Baileys' own primitives (Curve, hkdf, aesEncryptGCM/aesDecryptGCM, sha256), so that any
// divergence from Baileys would show up as a failed handshake in the conformance test.
import { randomBytes } from 'node:crypto'
import { Curve, hkdf, aesEncryptGCM, aesDecryptGCM, sha256, proto, NOISE_MODE } from 'baileys'

export const WA_HEADER = Buffer.from([0x57, 0x41, 6, 3]) // 'W' 'A' magic 6, DICT_VERSION 3
// Largest frame we accept from a client. The 3-byte length caps it at 2^24-1 anyway; whatsmeow
// rejects >= 2^24 too. We also cap the bytes buffered while waiting for a frame to complete.
export const MAX_FRAME = (1 << 24) - 1

const iv = (n) => {
  const b = Buffer.alloc(12)
  b.writeUInt32BE(n >>> 0, 8)
  return b
}

/**
 * Build a certificate chain that satisfies both Baileys (signatures + intermediate issuerSerial 0) and
 * the stricter whatsmeow rules (64-byte sigs, validity windows, leaf.issuerSerial == intermediate.serial,
 * leaf.key == server static). Returns the serialized proto.CertChain.
 */
export function makeCertChain ({ root, intermediate, serverStatic, now = Math.floor(Date.now() / 1000) }) {
  const D = proto.CertChain.NoiseCertificate.Details
  const notBefore = now - 3600
  const notAfter = now + 30 * 86400
  const interDetails = D.encode({ serial: 1, issuerSerial: 0, key: intermediate.public, notBefore, notAfter }).finish()
  const leafDetails = D.encode({ serial: 2, issuerSerial: 1, key: serverStatic.public, notBefore, notAfter }).finish()
  return proto.CertChain.encode({
    leaf: { details: leafDetails, signature: Buffer.from(Curve.sign(intermediate.private, leafDetails)) },
    intermediate: { details: interDetails, signature: Buffer.from(Curve.sign(root.private, interDetails)) }
  }).finish()
}

/** Transport phase: one key and one uint32 counter per direction, AAD empty (fact sheet §2 step 4). */
class Transport {
  constructor (encKey, decKey) {
    this.encKey = encKey; this.decKey = decKey; this.w = 0; this.r = 0
  }
  encrypt (p) { return aesEncryptGCM(p, this.encKey, iv(this.w++), Buffer.alloc(0)) }
  decrypt (c) { return aesDecryptGCM(c, this.decKey, iv(this.r++), Buffer.alloc(0)) }
}

/**
 * Responder state machine. Usage:
 *   const n = new NoiseResponder({ serverStatic, certChain })
 *   const serverHelloBytes = n.onClientHello(handshakeMessageBytes)
 *   const clientPayloadBytes = n.onClientFinish(handshakeMessageBytes) // n.transport is now set
 */
export class NoiseResponder {
  constructor ({ serverStatic, certChain }) {
    this.s = serverStatic
    this.cert = certChain
    this.e = Curve.generateKeyPair()
    const name = Buffer.from(NOISE_MODE) // exactly 32 bytes -> used directly as h (no hashing)
    this.h = name.length === 32 ? name : sha256(name)
    this.ck = this.h
    this.k = this.h
    this.n = 0
    this.transport = null
    this.clientStatic = null
    this.mixHash(WA_HEADER) // prologue: only the 4-byte WA header, never the ED routing prefix
  }

  mixHash (d) { this.h = sha256(Buffer.concat([this.h, d])) }
  mixKey (ikm) {
    const out = hkdf(Buffer.from(ikm), 64, { salt: this.ck, info: '' })
    this.ck = Buffer.from(out.subarray(0, 32)); this.k = Buffer.from(out.subarray(32, 64)); this.n = 0
  }
  encrypt (p) { const c = aesEncryptGCM(p, this.k, iv(this.n++), this.h); this.mixHash(c); return c }
  decrypt (c) { const p = aesDecryptGCM(c, this.k, iv(this.n++), this.h); this.mixHash(c); return p }

  onClientHello (bytes) {
    const msg = proto.HandshakeMessage.decode(bytes)
    const ec = msg.clientHello?.ephemeral
    if (!ec || ec.length !== 32) throw new Error('bad ClientHello')
    this.ec = Buffer.from(ec)
    this.mixHash(this.ec)
    this.mixHash(this.e.public)
    this.mixKey(Curve.sharedKey(this.e.private, this.ec))
    const stat = this.encrypt(this.s.public)
    this.mixKey(Curve.sharedKey(this.s.private, this.ec))
    const payload = this.encrypt(this.cert)
    return proto.HandshakeMessage.encode({ serverHello: { ephemeral: this.e.public, static: stat, payload } }).finish()
  }

  onClientFinish (bytes) {
    const msg = proto.HandshakeMessage.decode(bytes)
    const fin = msg.clientFinish
    if (!fin?.static || !fin?.payload) throw new Error('bad ClientFinish')
    // the client's static is encrypted at counter 1 (the cert payload used 0, no MixKey in between)
    const cs = this.decrypt(Buffer.from(fin.static))
    if (cs.length !== 32) throw new Error('bad client static')
    this.clientStatic = cs
    this.mixKey(Curve.sharedKey(this.e.private, cs))
    const payload = this.decrypt(Buffer.from(fin.payload))
    const out = hkdf(Buffer.alloc(0), 64, { salt: this.ck, info: '' })
    // first half encrypts client->server, second half server->client
    this.transport = new Transport(Buffer.from(out.subarray(32, 64)), Buffer.from(out.subarray(0, 32)))
    return payload
  }
}

/**
 * Incoming byte stream -> frames. Strips the intro (optionally preceded by the 'ED' routing header)
 * from the first bytes only, then splits 3-byte big-endian length-prefixed frames.
 * Throws on a malformed intro or on buffering more than `maxBuffered` bytes.
 */
export class FrameReader {
  constructor ({ maxBuffered = MAX_FRAME + 3 } = {}) {
    this.buf = Buffer.alloc(0)
    this.introDone = false
    this.maxBuffered = maxBuffered
    this.routingInfo = null
  }

  push (data) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : Buffer.from(data)
    if (this.buf.length > this.maxBuffered) throw new Error('frame buffer overflow')
    const frames = []
    if (!this.introDone) {
      if (this.buf.length < 4) return frames
      if (this.buf[0] === 0x45 && this.buf[1] === 0x44) { // 'ED' 00 01 len3 routing WA06 03
        if (this.buf.length < 7) return frames
        if (this.buf[2] !== 0 || this.buf[3] !== 1) throw new Error('bad ED header')
        const rl = this.buf.readUIntBE(4, 3)
        if (this.buf.length < 7 + rl + 4) return frames
        this.routingInfo = this.buf.subarray(7, 7 + rl)
        this.buf = this.buf.subarray(7 + rl)
      }
      if (!this.buf.subarray(0, 4).equals(WA_HEADER)) throw new Error('bad intro header')
      this.buf = this.buf.subarray(4)
      this.introDone = true
    }
    while (this.buf.length >= 3) {
      const len = this.buf.readUIntBE(0, 3)
      if (this.buf.length < 3 + len) break
      frames.push(Buffer.from(this.buf.subarray(3, 3 + len)))
      this.buf = this.buf.subarray(3 + len)
    }
    return frames
  }
}

export function encodeFrame (payload) {
  if (payload.length > MAX_FRAME) throw new Error('frame too large')
  const out = Buffer.allocUnsafe(3 + payload.length)
  out.writeUIntBE(payload.length, 0, 3)
  payload.copy ? payload.copy(out, 3) : out.set(payload, 3)
  return out
}

/** Root/intermediate/server-static keys; persisted in --key-file so the root stays trusted across restarts. */
export function genKeys () {
  return { root: Curve.generateKeyPair(), intermediate: Curve.generateKeyPair(), serverStatic: Curve.generateKeyPair() }
}
export function keysToJSON (k) {
  const o = {}
  for (const [n, kp] of Object.entries(k)) o[n] = { public: kp.public.toString('base64'), private: Buffer.from(kp.private).toString('base64') }
  return o
}
export function keysFromJSON (o) {
  const k = {}
  for (const n of ['root', 'intermediate', 'serverStatic']) {
    if (!o[n]) throw new Error('key file lacks ' + n)
    k[n] = { public: Buffer.from(o[n].public, 'base64'), private: Buffer.from(o[n].private, 'base64') }
  }
  return k
}
export const randomId = (n = 8) => randomBytes(n).toString('hex').toUpperCase()
