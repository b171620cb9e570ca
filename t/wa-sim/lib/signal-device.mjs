// A simulated Signal device (a contact's device, or the account's own phone = device 0), built on the
// `libsignal` package that Baileys itself uses, so both ends run the same Signal implementation.
import libsignal from 'libsignal'
import { unpadRandomMax16, encodeWAMessage, proto } from 'baileys'

const { keyhelper, SessionBuilder, SessionCipher, SessionRecord, ProtocolAddress } = libsignal

const b64 = (b) => Buffer.from(b).toString('base64')
const unb64 = (s) => Buffer.from(s, 'base64')
const strip05 = (k) => (k.length === 33 ? Buffer.from(k.subarray(1)) : Buffer.from(k))
const add05 = (k) => (k.length === 33 ? Buffer.from(k) : Buffer.concat([Buffer.from([5]), k]))

/**
 * Skipped-message keys kept per receiving chain. libsignal stores the key of every message it skipped over (so a
 * late one can still be decrypted); in bench mode most messages are never decrypted, so each sampled decrypt would
 * add N-1 keys to the record forever. Keep the newest few (enough for any reordering seen on one connection).
 */
const KEEP_SKIPPED_KEYS = 200
// In bench mode (Sim: bench_sample > 1) the keys of skipped messages are never used (a resend is a new encryption),
// and 200 of them made every sampled decrypt deserialize and serialize ~10 KB of record: keep 20 there.
const KEEP_SKIPPED_KEYS_BENCH = 20
let keepSkippedKeys = KEEP_SKIPPED_KEYS
export function setBenchMode (on) { keepSkippedKeys = on ? KEEP_SKIPPED_KEYS_BENCH : KEEP_SKIPPED_KEYS }
function pruneSkippedKeys (record) {
  for (const entry of Object.values(record.sessions || {})) {
    for (const [, chain] of entry.chains()) {
      const ks = Object.keys(chain.messageKeys || {})
      if (ks.length <= keepSkippedKeys) continue
      for (const k of ks.map(Number).sort((a, b) => a - b).slice(0, ks.length - keepSkippedKeys)) delete chain.messageKeys[k]
    }
  }
}

/** Signal address of a peer device; names may not contain '.' (libsignal joins name.device). */
export const peerAddress = (name, device) => new ProtocolAddress(String(name).replace(/\./g, '_'), Number(device))

export class SignalDevice {
  /**
   * @param identity optional {pubKey(33 or 32), privKey(32)}: the phone's device 0 uses the account
   *        signature key as its identity, as on a real phone (Baileys trusts that key for LID device 0).
   */
  static create ({ identity, preKeys = 30, refill = 0 } = {}) {
    const d = new SignalDevice()
    d.identity = identity
      ? { pubKey: add05(identity.pubKey), privKey: Buffer.from(identity.privKey) }
      : keyhelper.generateIdentityKeyPair()
    d.registrationId = keyhelper.generateRegistrationId()
    d.signedPreKey = keyhelper.generateSignedPreKey(d.identity, 1)
    d.preKeys = new Map() // id -> keyPair (private parts stay here)
    d.available = [] // prekey ids the server can still hand out
    d.nextPreKeyId = 1
    d.sessions = new Map() // address string -> serialized SessionRecord
    d.refill = refill // when the stock is empty, make this many more (0: run out, like a contact that went away)
    d.addPreKeys(preKeys)
    return d
  }

  addPreKeys (n) {
    for (let i = 0; i < n; i++) {
      const id = this.nextPreKeyId++
      this.preKeys.set(id, keyhelper.generatePreKey(id).keyPair)
      this.available.push(id)
    }
  }

  toJSON () {
    return {
      identity: { pubKey: b64(this.identity.pubKey), privKey: b64(this.identity.privKey) },
      registrationId: this.registrationId,
      signedPreKey: {
        keyId: this.signedPreKey.keyId,
        pubKey: b64(this.signedPreKey.keyPair.pubKey),
        privKey: b64(this.signedPreKey.keyPair.privKey),
        signature: b64(this.signedPreKey.signature)
      },
      preKeys: Object.fromEntries([...this.preKeys].map(([id, kp]) => [id, { pubKey: b64(kp.pubKey), privKey: b64(kp.privKey) }])),
      available: this.available,
      nextPreKeyId: this.nextPreKeyId,
      refill: this.refill || 0,
      sessions: Object.fromEntries(this.sessions)
    }
  }

  static fromJSON (o) {
    const d = new SignalDevice()
    d.identity = { pubKey: unb64(o.identity.pubKey), privKey: unb64(o.identity.privKey) }
    d.registrationId = o.registrationId
    d.signedPreKey = {
      keyId: o.signedPreKey.keyId,
      keyPair: { pubKey: unb64(o.signedPreKey.pubKey), privKey: unb64(o.signedPreKey.privKey) },
      signature: unb64(o.signedPreKey.signature)
    }
    d.preKeys = new Map(Object.entries(o.preKeys).map(([id, kp]) => [Number(id), { pubKey: unb64(kp.pubKey), privKey: unb64(kp.privKey) }]))
    d.available = o.available
    d.nextPreKeyId = o.nextPreKeyId
    d.refill = o.refill || 0
    d.sessions = new Map(Object.entries(o.sessions || {}))
    return d
  }

  /** libsignal storage interface (same shape as Baileys' signalStorage). */
  get storage () {
    return {
      loadSession: async (id) => {
        const s = this.sessions.get(id)
        return s ? SessionRecord.deserialize(s) : undefined
      },
      storeSession: async (id, rec) => { pruneSkippedKeys(rec); this.sessions.set(id, rec.serialize()) },
      isTrustedIdentity: () => true,
      loadPreKey: async (id) => this.preKeys.get(Number(id)),
      removePreKey: async (id) => { this.preKeys.delete(Number(id)) },
      loadSignedPreKey: async (id) => (Number(id) === this.signedPreKey.keyId ? this.signedPreKey.keyPair : undefined),
      getOurIdentity: async () => this.identity,
      getOurRegistrationId: async () => this.registrationId
    }
  }

  /** Pre-key bundle as served in <iq xmlns=encrypt><list><user>. Hands out (consumes) one prekey if any is left. */
  takeBundle () {
    if (!this.available.length && this.refill) this.addPreKeys(this.refill) // a phone keeps its stock up
    const id = this.available.shift()
    return {
      registrationId: this.registrationId,
      identity: strip05(this.identity.pubKey),
      skey: { id: this.signedPreKey.keyId, value: strip05(this.signedPreKey.keyPair.pubKey), signature: Buffer.from(this.signedPreKey.signature) },
      key: id !== undefined ? { id, value: strip05(this.preKeys.get(id).pubKey) } : undefined
    }
  }

  hasSession (addr) {
    const s = this.sessions.get(addr.toString())
    return !!s && SessionRecord.deserialize(s).haveOpenSession()
  }

  /** Build an outgoing session from a peer's bundle ({registrationId, identity32, skey{id,value,signature}, key?}). */
  async initSession (addr, bundle) {
    await new SessionBuilder(this.storage, addr).initOutgoing({
      registrationId: bundle.registrationId,
      identityKey: add05(bundle.identity),
      signedPreKey: { keyId: bundle.skey.id, publicKey: add05(bundle.skey.value), signature: bundle.skey.signature },
      preKey: bundle.key ? { keyId: bundle.key.id, publicKey: add05(bundle.key.value) } : undefined
    })
  }

  /** Decrypt an <enc> (pkmsg|msg), strip the v2 padding and decode proto.Message. */
  async decrypt (addr, type, ciphertext) {
    const cipher = new SessionCipher(this.storage, addr)
    let plain
    if (type === 'pkmsg') plain = await cipher.decryptPreKeyWhisperMessage(ciphertext)
    else if (type === 'msg') plain = await cipher.decryptWhisperMessage(ciphertext)
    else throw new Error(`unsupported enc type ${type}`)
    return proto.Message.decode(unpadRandomMax16(plain))
  }

  /** Encrypt a proto.Message (padded like Baileys' encodeWAMessage). Returns {type: 'pkmsg'|'msg', ciphertext}. */
  async encrypt (addr, message) {
    const cipher = new SessionCipher(this.storage, addr)
    const { type, body } = await cipher.encrypt(encodeWAMessage(message))
    return { type: type === 3 ? 'pkmsg' : 'msg', ciphertext: Buffer.from(body, 'binary') }
  }
}

export { strip05, add05 }
