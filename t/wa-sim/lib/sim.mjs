// Sim core: what the WhatsApp server (and the phones behind it) do above the Noise transport.
// Stanza shapes follow the fact sheet (/work/shared/docs/wa-protocol.md) and were checked against
// Baileys 7.0.0-rc14's compiled code (node_modules/baileys/lib); see NOTES.md for corrections.
import { randomBytes, randomInt, createHash } from 'node:crypto'
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import {
  proto, Curve, hkdf, hmacSign, aesDecryptGCM, aesEncryptCTR, aesDecryptCTR, derivePairingCodeKey,
  jidDecode, encodeBigEndian
} from 'baileys'
import { newStats, summarize } from './server.mjs'
import { httpError } from './control.mjs'
import { Store, S_WHATSAPP_NET, pnJid, lidJid, validPhone } from './accounts.mjs'
import { peerAddress, setBenchMode } from './signal-device.mjs'
import { mediaOf } from './media.mjs'
import libsignalCurve from 'libsignal/src/curve.js'

const now = () => Math.floor(Date.now() / 1000)
const u32 = (n) => encodeBigEndian(n, 4)
const u24 = (n) => encodeBigEndian(n, 3)
const readUInt = (buf) => { let n = 0; for (const b of buf || []) n = n * 256 + b; return n }
/**
 * A real XEdDSA check. Baileys' Curve.verify cannot be used here: it returns true for any well-formed
 * input (NOTES.md §1), so the pair-device-sign check would accept any device signature.
 */
export function verifyXEdDSA (pub, msg, sig) {
  try {
    const k = Buffer.from(pub)
    return libsignalCurve.verifySignature(k.length === 33 ? k : Buffer.concat([Buffer.from([5]), k]), Buffer.from(msg), Buffer.from(sig)) === true
  } catch {
    return false
  }
}
const ADV_ACCOUNT_SIG_PREFIX = Buffer.from([6, 0])
const ADV_DEVICE_SIG_PREFIX = Buffer.from([6, 1])
const LOW_PREKEYS = 5 // Baileys MIN_PREKEY_COUNT; also the threshold of the encrypt low-count notification
const PAIR_REPLY_TIMEOUT_MS = 15000
// Children by tag, with Baileys' semantics (generic-utils.js) but without its per-node index in a WeakMap: under
// bench load that cache kept every decoded stanza's index alive into V8's ephemeron tables, and the simulator's
// garbage collections were the longest pauses a client saw through it.
const getBinaryNodeChildren = (node, tag) => Array.isArray(node?.content) ? node.content.filter(c => c.tag === tag) : []
const getBinaryNodeChild = (node, tag) => Array.isArray(node?.content) ? node.content.find(c => c.tag === tag) : undefined
const getBinaryNodeChildBuffer = (node, tag) => {
  const c = getBinaryNodeChild(node, tag)?.content
  return c instanceof Uint8Array ? c : undefined
}
const RECEIPT_LIST_MAX = 10 // message ids per receipt with receipt_lists (the first in `id`, the rest in <list>)

const node = (tag, attrs = {}, content) => ({ tag, attrs, content })
const textOf = (m) => {
  const inner = m?.deviceSentMessage?.message ?? m // unwrap a deviceSentMessage copy
  return inner?.conversation ?? inner?.extendedTextMessage?.text ?? null
}
/** "2.3000.1047769893" -> [2, 3000, 1047769893]; null/undefined -> null; anything else throws */
export function parseVersion (v) {
  if (v === null || v === undefined) return null
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(String(v))
  if (!m) throw httpError(400, 'version must be "primary.secondary.tertiary", e.g. "2.3000.1047769893"')
  return m.slice(1).map(Number)
}
/** What GET /contacts/:phone/inbox shows of an inbox entry (older state files lack the newer fields: null). */
const INBOX_FIELDS = ['from', 'id', 'text', 'device', 't', 'type', 'sender_device', 'addressing', 'to', 'to_jid', 'peer_recipient_pn',
  'device_identity_ok', 'tctoken', 'tctoken_valid', 'phash', 'retries', 'retry_count', 'media']
const inboxView = (e) => Object.fromEntries(INBOX_FIELDS.map(k => [k, e[k] ?? null]))
const ACK_PHASH_MODES = ['client', 'always', 'never']
const REACHOUT_QUERY_ID = '23983697327930364' // Baileys QueryIds.REACHOUT_TIMELOCK (xwa2_fetch_account_reachout_timelock)
const cmpVersion = (a, b) => { for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1; return 0 }
// phone numbers may be given as "+57 300-123 4567": keep the digits
const digits = (p) => (p === undefined || p === null ? p : String(p).replace(/[^0-9]/g, ''))

export class Sim {
  constructor (opts) {
    this.opts = opts
    this.log = opts.log
    this.stats = newStats()
    this.stats.decrypt_failures = 0
    this.stats.faults_injected = 0
    this.stats.failures_sent = {} // <failure reason=N> sent, by N
    this.stats.failures_405 = 0
    this.stats.last_client_version = null // appVersion of the last ClientPayload (login or registration)
    this.stats.client_versions = {} // appVersion -> number of ClientPayloads that advertised it
    this.stats.imports = 0 // devices created by POST /accounts/import
    this.stats.login_faults = 0 // logins that got an on:"next_login" fault instead of <success>
    this.stats.companion_removals = 0 // <remove-companion-device> iqs that removed a device (client logouts)
    this.stats.device_max_concurrent = 0 // most simultaneous logged-in connections any one device ever had
    this.minVersion = parseVersion(opts.minVersion ?? null)
    this.stats.passkey_requests = 0 // passkey_prologue_request notifications sent to registrations
    this.stats.passkey_acks = 0 // acks the clients sent for them
    this.stats.passkey_prologues = 0 // <passkey_prologue> answers (md iq) received
    this.passkeyEnabled = !!opts.passkey
    // messaging (issue 9): addressing, acks, device identity, tokens, retries, bench mode
    Object.assign(this.stats, {
      messages_in_total: 0, // <message> stanzas from clients
      unknown_recipients: 0, // messages whose `to` names no known user (ack error 400)
      ack_errors_sent: {}, // <ack error=N> sent for messages, by N (faults, unknown recipients, tctoken/timelock 463)
      phash_mismatches: 0, // client phash differs from the server's participant list hash
      missing_device_identity: 0, // stanzas with a pkmsg and no <device-identity>
      bad_device_identity: 0, // <device-identity> that does not verify
      tctokens_received: 0, // <tctoken> children on client messages to contacts
      tctokens_invalid: 0, // ... that the contact never issued to that account
      privacy_token_iqs: 0, // <iq xmlns="privacy" type="set"><tokens> from clients
      privacy_token_notifications: 0, // privacy_token notifications sent
      reachout_timelock_notifications: 0, // mex reachout timelock notifications sent
      notification_acks: {}, // <ack class="notification"> from clients, by the notification's type
      retry_receipts_with_keys: 0, // retry receipts sent by simulated devices that carried <keys>
      retry_receipts_suppressed: 0, // failures after the 4th retry receipt (count 5: no more receipts)
      receipt_lists_sent: 0, // receipts that carried a <list> of further message ids (receipt_lists)
      bench_sampled: 0, // bench mode: messages fully decrypted
      bench_skipped: 0, // bench mode: messages only acked and delivery-receipted
      bench_text_errors: 0, // bench mode: sampled messages without text (or not matching bench_text_pattern)
      offline_batch_requests: 0, // <ib><offline_batch> from clients
      redelivered: 0 // messages put back in the offline queue because the device closed before its receipt
    })
    this.retryCounts = new Map() // 'msgid|phone:dev' -> retry receipts sent by that simulated device
    this.sentNotifications = new Map() // notification id -> type (for notification_acks)
    this.readReceipts = opts.readReceipts !== false
    this.receiptLists = opts.receiptLists === true // one receipt for several messages (queueReceipt)
    this.benchSample = 0
    this.benchCounter = 0
    this.benchTextRe = null
    this.ackPhash = 'client'
    this.setConfig({ bench_sample: opts.benchSample ?? 0, ack_phash: opts.ackPhash ?? 'client' }, { quiet: true })
    this.lastPasskey = null // the last request sent and what came back
    this.store = new Store({ file: opts.stateFile, atomicWrite: opts.atomicWrite, log: opts.log })
    this.qrFirstTtlMs = opts.qrFirstTtlMs ?? 60000
    this.qrNextTtlMs = opts.qrNextTtlMs ?? 20000
    this.refs = new Map() // QR ref -> { conn, expiresAt }
    this.linkCodeRegs = new Map() // phone -> { conn, ref, wrappedCompanionEph, ... } (pairing by code)
    this.online = new Map() // 'phone:device' -> Set<Conn> (logged-in connections)
    this.offlineQueue = new Map() // 'phone:device' -> [node]
    this.pendingFaults = new Map() // 'phone:device' -> [{type, code}]
    this.sent = new Map() // message id -> record of a contact->account message (for receipts/retries)
    this.phoneInbox = [] // what the account phones (device 0) decrypted
    this.iqSeq = 0
    // gap between the delivery and the read receipt; Baileys merges updates that arrive in one buffer window
    this.readDelayMs = opts.readDelayMs ?? 300
    this.deliveryDelayMs = opts.deliveryDelayMs ?? 250
    // The simulator's own pauses (its event loop's lateness, V8's garbage collections): a client's latency
    // through the simulator includes them, so benchmarks report them beside their own figures (GET /stats).
    this.loopDelay = monitorEventLoopDelay({ resolution: 1 })
    this.loopDelay.enable()
    this.gcPauses = { count: 0, total_ms: 0, max_ms: 0, by_kind: {} }
    // V8's kinds: 1 scavenge (young generation), 2 mark-sweep-compact, 4 incremental marking, 8 weak callbacks
    const kindName = { 1: 'scavenge', 2: 'mark_compact', 4: 'incremental', 8: 'weak' }
    this.gcObserver = new PerformanceObserver(list => {
      for (const e of list.getEntries()) {
        this.gcPauses.count++
        this.gcPauses.total_ms += e.duration
        this.gcPauses.max_ms = Math.max(this.gcPauses.max_ms, e.duration)
        const k = kindName[e.detail?.kind] || String(e.detail?.kind)
        const b = (this.gcPauses.by_kind[k] ||= { count: 0, total_ms: 0, max_ms: 0 })
        b.count++
        b.total_ms += e.duration
        b.max_ms = Math.max(b.max_ms, e.duration)
      }
    })
    this.gcObserver.observe({ entryTypes: ['gc'] })
  }

  pauseStats () {
    const d = this.loopDelay
    const ms = (ns) => Math.round(ns / 1e4) / 100
    return {
      loop_delay: { p50_ms: ms(d.percentile(50)), p99_ms: ms(d.percentile(99)), max_ms: ms(d.max) },
      gc: {
        count: this.gcPauses.count,
        total_ms: Math.round(this.gcPauses.total_ms),
        max_ms: Math.round(this.gcPauses.max_ms * 100) / 100,
        by_kind: Object.fromEntries(Object.entries(this.gcPauses.by_kind).map(([k, b]) =>
          [k, { count: b.count, total_ms: Math.round(b.total_ms), max_ms: Math.round(b.max_ms * 100) / 100 }]))
      }
    }
  }

  async load () { this.store.load() }
  attach (ws) { this.ws = ws }
  attachMedia (media) { this.media = media } // lib/media.mjs MediaHost (--media-dir), or none
  shutdown () {
    this.loopDelay.disable()
    this.gcObserver.disconnect()
    try { this.store.save() } catch (err) { this.log(`save on shutdown failed: ${err.message}`) }
  }
  nextId (p = 'sim') { return `${p}-${++this.iqSeq}` }

  getStats () {
    let open = 0
    for (const s of this.online.values()) open += s.size
    return { ...this.stats, connections_open: open, ...this.pauseStats() }
  }

  resetStats () {
    const s = this.stats
    s.ws_total = 0
    s.ws_max_concurrent = s.ws_open
    s.device_max_concurrent = 0
    this.loopDelay.reset()
    this.gcPauses = { count: 0, total_ms: 0, max_ms: 0, by_kind: {} }
    for (const set of this.online.values()) s.device_max_concurrent = Math.max(s.device_max_concurrent, [...set].filter(c => !c.closed).length)
    return this.getStats()
  }

  // ------------------------------------------------------------------ connection entry points

  async onClientPayload (conn, p) {
    const av = p.userAgent?.appVersion
    const ver = [av?.primary || 0, av?.secondary || 0, av?.tertiary || 0]
    conn.clientVersion = ver.join('.')
    this.stats.last_client_version = conn.clientVersion
    this.stats.client_versions[conn.clientVersion] = (this.stats.client_versions[conn.clientVersion] || 0) + 1
    if (this.minVersion && cmpVersion(ver, this.minVersion) < 0) {
      // WhatsApp refuses outdated clients (login and registration alike) with 405 (wa-protocol-2026.md "Versions")
      if (!p.devicePairingData) this.stats.login_failures++
      this.log(`conn ${conn.id}: client version ${conn.clientVersion} < ${this.minVersion.join('.')} -> failure 405`)
      return this.sendFailure(conn, 405)
    }
    if (p.devicePairingData) return this.onRegistration(conn, p)
    if (p.username !== undefined && p.username !== null) return this.onLogin(conn, p)
    this.log(`conn ${conn.id}: ClientPayload with neither pairing data nor username; closing`)
    conn.close()
  }

  onConnClosed (conn) {
    if (conn.refs) for (const r of conn.refs) this.refs.delete(r)
    if (conn.qrTimer) clearTimeout(conn.qrTimer)
    if (conn.offlineTimer) clearTimeout(conn.offlineTimer)
    for (const [phone, reg] of this.linkCodeRegs) if (reg.conn === conn) this.linkCodeRegs.delete(phone)
    for (const p of conn.pending?.values() || []) p.resolve(null)
    if (conn.deviceKey) {
      this.requeueInflight(conn)
      const set = this.online.get(conn.deviceKey)
      if (set) { set.delete(conn); if (!set.size) this.online.delete(conn.deviceKey) }
      this.log(`conn ${conn.id}: device ${conn.deviceKey} offline`)
    }
  }

  /** <failure reason=N …attrs/> then close (counted in failures_sent / failures_405). */
  sendFailure (conn, reason, attrs = {}) {
    const r = String(reason)
    this.stats.failures_sent[r] = (this.stats.failures_sent[r] || 0) + 1
    if (r === '405') this.stats.failures_405++
    conn.send(node('failure', { reason: r, ...attrs }))
    setTimeout(() => conn.close(), 50)
  }

  /** GET /config */
  getConfig () {
    return {
      min_version: this.minVersion ? this.minVersion.join('.') : null,
      passkey: this.passkeyEnabled,
      bench_sample: this.benchSample,
      bench_text_pattern: this.benchTextRe ? this.benchTextRe.source : null,
      read_receipts: this.readReceipts,
      receipt_lists: this.receiptLists,
      ack_phash: this.ackPhash
    }
  }

  /** POST /config {min_version?, passkey?}: only the keys present change. */
  setConfig (body, { quiet = false } = {}) {
    const b = body || {}
    const known = ['min_version', 'passkey', 'bench_sample', 'bench_text_pattern', 'read_receipts', 'receipt_lists', 'ack_phash']
    const unknown = Object.keys(b).filter(k => !known.includes(k))
    if (unknown.length) throw httpError(400, `unknown config key(s): ${unknown.join(', ')}`)
    if ('passkey' in b && typeof b.passkey !== 'boolean') throw httpError(400, 'passkey must be true or false')
    if ('read_receipts' in b && typeof b.read_receipts !== 'boolean') throw httpError(400, 'read_receipts must be true or false')
    if ('receipt_lists' in b && typeof b.receipt_lists !== 'boolean') throw httpError(400, 'receipt_lists must be true or false')
    if ('bench_sample' in b && !(Number.isInteger(b.bench_sample) && b.bench_sample >= 0 && b.bench_sample <= 1000)) throw httpError(400, 'bench_sample must be 0..1000 (0 or 1: decrypt everything)')
    if ('ack_phash' in b && !ACK_PHASH_MODES.includes(b.ack_phash)) throw httpError(400, `ack_phash must be one of ${ACK_PHASH_MODES.join('|')}`)
    let re
    if ('bench_text_pattern' in b && b.bench_text_pattern !== null) {
      try { re = new RegExp(String(b.bench_text_pattern), 'u') } catch { throw httpError(400, 'bench_text_pattern is not a valid regular expression') }
    }
    if ('min_version' in b) this.minVersion = parseVersion(b.min_version)
    if ('passkey' in b) this.passkeyEnabled = b.passkey
    if ('read_receipts' in b) this.readReceipts = b.read_receipts
    if ('receipt_lists' in b) this.receiptLists = b.receipt_lists
    if ('ack_phash' in b) this.ackPhash = b.ack_phash
    if ('bench_text_pattern' in b) this.benchTextRe = re ?? null
    if ('bench_sample' in b) { this.benchSample = b.bench_sample; this.benchCounter = 0; setBenchMode(b.bench_sample > 1) }
    if (!quiet) this.log(`config: ${JSON.stringify(this.getConfig())}`)
    return this.getConfig()
  }

  /** Send an iq to the client and wait for its result/error (used for pair-success). */
  request (conn, iq, timeoutMs = PAIR_REPLY_TIMEOUT_MS) {
    conn.pending ||= new Map()
    return new Promise((resolve) => {
      const t = setTimeout(() => { conn.pending.delete(iq.attrs.id); resolve(null) }, timeoutMs)
      conn.pending.set(iq.attrs.id, { resolve: (n) => { clearTimeout(t); conn.pending.delete(iq.attrs.id); resolve(n) } })
      conn.send(iq)
    })
  }

  // ------------------------------------------------------------------ registration / pairing

  onRegistration (conn, p) {
    const d = p.devicePairingData
    this.stats.registrations++
    conn.reg = {
      noisePub: Buffer.from(conn.clientStatic),
      identityPub: Buffer.from(d.eIdent),
      registrationId: readUInt(d.eRegid),
      skey: { id: readUInt(d.eSkeyId), value: Buffer.from(d.eSkeyVal), signature: Buffer.from(d.eSkeySig) },
      platform: p.userAgent?.platform,
      deviceProps: d.deviceProps ? proto.DeviceProps.decode(d.deviceProps) : null
    }
    // 6 refs like the real server: the client shows the first for 60 s and each next one for 20 s
    // (Baileys socket.js 'CB:iq,type:set,pair-device'); a ref is accepted until its window ends.
    const t0 = Date.now()
    conn.refs = []
    const refNodes = []
    for (let i = 0; i < 6; i++) {
      const ref = '2@' + randomBytes(33).toString('base64')
      conn.refs.push(ref)
      this.refs.set(ref, { conn, index: i, expiresAt: t0 + this.qrFirstTtlMs + this.qrNextTtlMs * i })
      refNodes.push(node('ref', {}, Buffer.from(ref))) // bytes, never a string (the encoder would JID-parse "2@…")
    }
    conn.send(node('iq', { from: S_WHATSAPP_NET, type: 'set', id: this.nextId('pair'), xmlns: 'md' }, [node('pair-device', {}, refNodes)]))
    // end of the whole window: the server closes an unpaired registration connection
    conn.qrTimer = setTimeout(() => { if (!conn.paired) conn.close() }, this.qrFirstTtlMs + this.qrNextTtlMs * 5 + 5000)
    this.log(`conn ${conn.id}: registration, sent pair-device with 6 refs`)
    if (this.passkeyEnabled) this.sendPasskeyRequest(conn)
  }

  /**
   * Linking behind a passkey (wa-protocol-2026.md; whatsmeow pair-passkey.go, notification.go): right after
   * pair-device, <notification from=s.whatsapp.net type="passkey_prologue_request" id t>
   * <passkey_request_options>{WebAuthn PublicKeyCredentialRequestOptions JSON}</passkey_request_options>.
   * whatsmeow parses that child (or asks with <iq xmlns="md" type="get"><passkey_request_options/>), has the
   * browser sign the challenge and answers with <iq xmlns="md" type="set"><passkey_prologue>. The JSON values
   * (rpId, timeout, credential id) are the simulator's own; only their shape follows whatsmeow's types.WebAuthnPublicKey.
   */
  passkeyOptions (conn) {
    const b64url = (b) => Buffer.from(b).toString('base64url')
    conn.passkeyOptions ||= {
      challenge: b64url(randomBytes(32)),
      timeout: 300000,
      rpId: 'whatsapp.com',
      allowCredentials: [{ id: b64url(randomBytes(16)), type: 'public-key', transports: ['internal', 'hybrid'] }],
      userVerification: 'required',
      extensions: {}
    }
    return conn.passkeyOptions
  }

  sendPasskeyRequest (conn) {
    const id = this.nextId('pk')
    conn.passkeyNotifId = id
    const options = this.passkeyOptions(conn)
    conn.send(node('notification', { from: S_WHATSAPP_NET, type: 'passkey_prologue_request', id, t: String(now()) }, [
      node('passkey_request_options', {}, Buffer.from(JSON.stringify(options)))
    ]))
    this.stats.passkey_requests++
    this.lastPasskey = { conn: conn.id, notification_id: id, options, ack: null, prologue: null, t: now() }
    this.log(`conn ${conn.id}: sent passkey_prologue_request ${id}`)
  }

  /** GET /passkey */
  getPasskey () {
    return { enabled: this.passkeyEnabled, last: this.lastPasskey }
  }

  /** POST /passkey {enabled} */
  setPasskey (body) {
    if (typeof body?.enabled !== 'boolean') throw httpError(400, 'enabled must be true or false')
    this.passkeyEnabled = body.enabled
    return this.getPasskey()
  }

  /** md iqs of the passkey flow on a registration connection. */
  onPasskeyIq (conn, iq, child) {
    if (child.tag === 'passkey_request_options') {
      return conn.send(iqResult(iq, [node('passkey_request_options', {}, Buffer.from(JSON.stringify(this.passkeyOptions(conn))))]))
    }
    if (child.tag === 'ref') {
      const ref = conn.refs?.find(r => this.refs.has(r))
      if (!ref) return conn.send(iqError(iq, 404, 'item-not-found'))
      return conn.send(iqResult(iq, [node('ref', {}, Buffer.from(ref))]))
    }
    // passkey_prologue: record what the companion relayed from the authenticator. The continuation
    // (crsc_continuation, companion_nonce, encrypted_pairing_request) is not simulated.
    const part = (tag) => getBinaryNodeChildBuffer(child, tag)
    const b64 = (b) => b ? Buffer.from(b).toString('base64') : null
    const assertion = part('webauthn_assertion')
    this.stats.passkey_prologues++
    const rec = {
      conn: conn.id,
      credential_id: b64(part('credential_id')),
      webauthn_assertion: assertion ? Buffer.from(assertion).toString('utf8') : null,
      prologue_payload: b64(part('prologue_payload')),
      pairing_handoff_proof: b64(part('pairing_handoff_proof')),
      t: now()
    }
    if (this.lastPasskey && this.lastPasskey.conn === conn.id) this.lastPasskey.prologue = rec
    else this.lastPasskey = { conn: conn.id, notification_id: null, options: conn.passkeyOptions ?? null, ack: null, prologue: rec, t: now() }
    this.log(`conn ${conn.id}: passkey_prologue received`)
    return conn.send(iqResult(iq))
  }

  /** POST /scan {qr, phone}: the phone scans a QR. */
  async scan (body) {
    const { qr } = body || {}
    const phone = digits(body?.phone)
    if (typeof qr !== 'string') throw httpError(400, 'qr missing')
    if (!validPhone(phone)) throw httpError(400, 'phone must be 7-15 digits, no leading 0')
    const parts = qr.slice(qr.indexOf('#') + 1).split(',')
    if (parts.length < 5) throw httpError(400, 'malformed QR string')
    const [ref, noiseB64, identityB64, advB64, platform] = parts
    const entry = this.refs.get(ref)
    if (!entry) throw httpError(404, 'unknown ref')
    if (Date.now() > entry.expiresAt) throw httpError(410, 'ref expired')
    const conn = entry.conn
    if (conn.closed) throw httpError(410, 'connection gone')
    if (!Buffer.from(noiseB64, 'base64').equals(conn.reg.noisePub)) throw httpError(400, 'noise key does not match the connection')
    if (!Buffer.from(identityB64, 'base64').equals(conn.reg.identityPub)) throw httpError(400, 'identity key does not match the registration')
    if (this.store.contacts.has(phone)) throw httpError(409, 'phone belongs to a contact')
    const advSecret = Buffer.from(advB64, 'base64')
    if (advSecret.length !== 32) throw httpError(400, 'bad adv secret')
    return this.completePairing(conn, this.store.getOrCreateAccount(phone), advSecret, platform)
  }

  /**
   * The phone side of linking (fact sheet §5a): build ADVDeviceIdentity, sign it with the account key,
   * wrap it in the HMAC container keyed by the adv secret, send pair-success, verify the client's
   * pair-device-sign (deviceSignature), store the device, then <stream:error code="515"/> and close.
   */
  async completePairing (conn, account, advSecret, platform) {
    if (conn.pairing) throw httpError(409, 'pairing already in progress on this connection')
    conn.pairing = true
    for (const r of conn.refs || []) this.refs.delete(r)
    const deviceId = account.nextDevice
    const keyIndex = account.nextKeyIndex
    const details = proto.ADVDeviceIdentity.encode({
      rawId: randomInt(1, 2 ** 31), timestamp: now(), keyIndex, accountType: proto.ADVEncryptionType.E2EE, deviceType: proto.ADVEncryptionType.E2EE
    }).finish()
    const accountSignature = Buffer.from(Curve.sign(account.accountKey.private, Buffer.concat([ADV_ACCOUNT_SIG_PREFIX, details, conn.reg.identityPub])))
    const signed = proto.ADVSignedDeviceIdentity.encode({ details, accountSignatureKey: account.accountKey.public, accountSignature }).finish()
    const container = proto.ADVSignedDeviceIdentityHMAC.encode({
      details: signed, hmac: hmacSign(signed, advSecret), accountType: proto.ADVEncryptionType.E2EE
    }).finish()
    const jid = pnJid(account.phone, deviceId)
    const lid = lidJid(account.lid, deviceId)
    const reply = await this.request(conn, node('iq', { from: S_WHATSAPP_NET, type: 'set', id: this.nextId('pair'), t: String(now()) }, [
      node('pair-success', {}, [
        node('device-identity', { 'key-index': String(keyIndex) }, Buffer.from(container)),
        node('platform', { name: 'android' }),
        node('device', { jid, lid })
      ])
    ]))
    if (!reply) { conn.pairing = false; throw httpError(504, 'client did not answer pair-success') }
    if (reply.attrs.type !== 'result') { conn.pairing = false; throw httpError(502, `client rejected pair-success: ${summarize(reply)}`) }
    const di = getBinaryNodeChild(getBinaryNodeChild(reply, 'pair-device-sign'), 'device-identity')
    if (!di || !(di.content instanceof Uint8Array)) { conn.pairing = false; throw httpError(502, 'pair-device-sign missing') }
    const back = proto.ADVSignedDeviceIdentity.decode(di.content)
    const devMsg = Buffer.concat([ADV_DEVICE_SIG_PREFIX, details, conn.reg.identityPub, account.accountKey.public])
    if (!back.deviceSignature || !verifyXEdDSA(conn.reg.identityPub, devMsg, back.deviceSignature)) {
      conn.pairing = false
      throw httpError(502, 'device signature in pair-device-sign does not verify')
    }
    account.nextDevice++
    account.nextKeyIndex++
    account.devices.set(deviceId, {
      id: deviceId,
      keyIndex,
      noisePub: conn.reg.noisePub,
      identityPub: conn.reg.identityPub,
      registrationId: conn.reg.registrationId,
      skey: conn.reg.skey,
      preKeys: new Map(),
      platform: platform ?? null,
      os: conn.reg.deviceProps?.os ?? null,
      removed: false,
      linkedAt: now(),
      maxConcurrent: 0,
      lastSeen: null
    })
    this.store.save()
    conn.paired = true
    this.stats.pairings++
    this.log(`paired ${jid} (${lid}); sending stream:error 515`)
    conn.streamError({ code: '515' })
    return { device_jid: jid, lid, device: deviceId, phone: account.phone }
  }

  /** <iq xmlns="md"><link_code_companion_reg stage=companion_hello|companion_finish> (fact sheet §5b). */
  onLinkCodeIq (conn, iq, reg) {
    const stage = reg.attrs.stage
    if (stage === 'companion_hello') {
      const phone = jidDecode(reg.attrs.jid || '')?.user
      const wrapped = getBinaryNodeChildBuffer(reg, 'link_code_pairing_wrapped_companion_ephemeral_pub')
      if (!validPhone(phone) || !wrapped || wrapped.length < 80 || !conn.reg) {
        return conn.send(iqError(iq, 400, 'bad-request'))
      }
      const ref = Buffer.from('2@' + randomBytes(24).toString('base64'))
      this.linkCodeRegs.set(phone, { conn, phone, ref, wrapped: Buffer.from(wrapped), platformId: getBinaryNodeChild(reg, 'companion_platform_id')?.content?.toString() })
      this.log(`conn ${conn.id}: link code requested for ${phone}`)
      return conn.send(iqResult(iq, [node('link_code_companion_reg', {}, [node('link_code_pairing_ref', {}, ref)])]))
    }
    if (stage === 'companion_finish') {
      const phone = jidDecode(reg.attrs.jid || '')?.user
      const lc = this.linkCodeRegs.get(phone)
      const bundle = getBinaryNodeChildBuffer(reg, 'link_code_pairing_wrapped_key_bundle')
      const companionIdentity = getBinaryNodeChildBuffer(reg, 'companion_identity_public')
      conn.send(iqResult(iq))
      if (lc?.onFinish) lc.onFinish({ bundle: bundle && Buffer.from(bundle), companionIdentity: companionIdentity && Buffer.from(companionIdentity) })
      return
    }
    conn.send(iqResult(iq))
  }

  /** POST /pairing-code {phone, code}: the user types the code shown by the companion into the phone. */
  async pairingCode (body) {
    const { code } = body || {}
    const phone = digits(body?.phone)
    if (!validPhone(phone)) throw httpError(400, 'bad phone')
    if (typeof code !== 'string' || !/^[0-9A-Z]{8}$/.test(code.replace('-', ''))) throw httpError(400, 'code must be 8 characters')
    const lc = this.linkCodeRegs.get(phone)
    if (!lc || lc.conn.closed) throw httpError(404, 'no pending pairing-code request for this phone')
    if (this.store.contacts.has(phone)) throw httpError(409, 'phone belongs to a contact')
    if (lc.busy) throw httpError(409, 'pairing already in progress')
    lc.busy = true
    try {
      const account = this.store.getOrCreateAccount(phone)
      const codeStr = code.replace('-', '')
      // unwrap the companion's ephemeral key with the code (PBKDF2 + AES-CTR)
      const w = lc.wrapped
      const key = await derivePairingCodeKey(codeStr, w.subarray(0, 32))
      const companionEph = aesDecryptCTR(w.subarray(48, 80), key, w.subarray(32, 48))
      // wrap our own (primary) ephemeral key with the same code
      const primaryEph = Curve.generateKeyPair()
      const salt = randomBytes(32)
      const iv = randomBytes(16)
      const wrappedPrimary = Buffer.concat([salt, iv, aesEncryptCTR(primaryEph.public, await derivePairingCodeKey(codeStr, salt), iv)])
      const finished = new Promise((resolve) => {
        const t = setTimeout(() => resolve(null), PAIR_REPLY_TIMEOUT_MS)
        lc.onFinish = (r) => { clearTimeout(t); resolve(r) }
      })
      lc.conn.send(node('notification', { from: S_WHATSAPP_NET, type: 'link_code_companion_reg', id: this.nextId('lc'), t: String(now()) }, [
        node('link_code_companion_reg', { stage: 'primary_hello' }, [
          node('link_code_pairing_ref', {}, lc.ref),
          node('primary_identity_pub', {}, account.accountKey.public),
          node('link_code_pairing_wrapped_primary_ephemeral_pub', {}, wrappedPrimary)
        ])
      ]))
      const fin = await finished
      if (!fin?.bundle || fin.bundle.length < 32 + 12 + 16) throw httpError(504, 'companion did not finish')
      const shared = Curve.sharedKey(primaryEph.private, companionEph)
      const bundleKey = hkdf(shared, 32, { salt: fin.bundle.subarray(0, 32), info: 'link_code_pairing_key_bundle_encryption_key' })
      let plain
      try {
        plain = aesDecryptGCM(fin.bundle.subarray(44), Buffer.from(bundleKey), fin.bundle.subarray(32, 44), Buffer.alloc(0))
      } catch {
        throw httpError(400, 'wrong pairing code (key bundle does not decrypt)')
      }
      const companionIdentity = plain.subarray(0, 32)
      if (!plain.subarray(32, 64).equals(account.accountKey.public)) throw httpError(400, 'key bundle names another primary')
      if (!companionIdentity.equals(lc.conn.reg.identityPub)) throw httpError(400, 'companion identity mismatch')
      const identityShared = Curve.sharedKey(account.accountKey.private, companionIdentity)
      const advSecret = Buffer.from(hkdf(Buffer.concat([shared, identityShared, plain.subarray(64, 96)]), 32, { info: 'adv_secret' }))
      this.linkCodeRegs.delete(phone)
      return await this.completePairing(lc.conn, account, advSecret, lc.platformId)
    } finally {
      lc.busy = false
    }
  }

  // ------------------------------------------------------------------ login

  onLogin (conn, p) {
    const phone = String(p.username)
    const deviceId = Number(p.device || 0)
    const account = this.store.accounts.get(phone)
    const dev = account?.devices.get(deviceId)
    let reason = null
    if (!dev) reason = 'unknown device'
    else if (dev.removed) reason = 'device removed'
    else if (!dev.noisePub.equals(conn.clientStatic)) reason = 'noise key mismatch'
    if (reason) {
      this.stats.login_failures++
      this.log(`conn ${conn.id}: login ${phone}:${deviceId} refused (${reason}) -> failure 401`)
      return this.sendFailure(conn, 401, { location: 'sim' })
    }
    const key = `${phone}:${deviceId}`
    const lf = this.takeLoginFault(key)
    if (lf) {
      // a fault armed with on:"next_login": this login does not succeed
      this.stats.login_failures++
      this.stats.login_faults++
      this.log(`conn ${conn.id}: login ${phone}:${deviceId}: armed fault ${JSON.stringify(lf)} instead of success`)
      return this.applyConnFault(conn, lf)
    }
    conn.deviceKey = key
    conn.account = account
    conn.dev = dev
    const set = this.online.get(key) || new Set()
    set.add(conn)
    this.online.set(key, set)
    dev.maxConcurrent = Math.max(dev.maxConcurrent || 0, set.size)
    this.stats.device_max_concurrent = Math.max(this.stats.device_max_concurrent, set.size)
    // a second connection as the same device replaces the older one
    for (const old of set) {
      if (old === conn) continue
      this.stats.conflicts_sent++
      this.log(`conn ${old.id}: replaced by conn ${conn.id} -> stream:error conflict`)
      old.streamError({}, [node('conflict', { type: 'replaced' })])
      set.delete(old)
      this.requeueInflight(old)
      old.deviceKey = null
    }
    let n = 0
    for (const s of this.online.values()) for (const c of s) if (c.account === account) n++
    account.maxConcurrent = Math.max(account.maxConcurrent || 0, n)
    dev.lastSeen = now()
    this.stats.logins++
    this.log(`conn ${conn.id}: login ${pnJid(phone, deviceId)} ok`)
    conn.send(node('success', { t: String(now()), lid: lidJid(account.lid, deviceId), props: '1', creation: String(dev.linkedAt || now()), location: 'sim' }))
    // like the real server, hand out routing info; Baileys then prefixes its next intro with 'ED'
    if (this.opts.edgeRouting !== false) {
      conn.send(node('ib', { from: S_WHATSAPP_NET }, [node('edge_routing', {}, [node('routing_info', {}, Buffer.from([0x08, 0x01]))])]))
    }
    // offline messages go out once the client is active (passive iq) or after 3 s at the latest
    conn.offlineTimer = setTimeout(() => this.flushOffline(conn), 3000)
  }

  /**
   * What was queued for the device, once it is active (`passive active` iq, or 3 s after login): an
   * <ib><offline_preview count message notification receipt call appdata/></ib> when there is anything (the
   * client may answer <ib><offline_batch count/>; counted, the simulator does not wait for it), every queued
   * stanza with offline="1", then <ib><offline count/></ib>.
   */
  flushOffline (conn) {
    if (conn.offlineFlushed || conn.closed || !conn.deviceKey) return
    conn.offlineFlushed = true
    clearTimeout(conn.offlineTimer)
    const q = this.offlineQueue.get(conn.deviceKey) || []
    this.offlineQueue.delete(conn.deviceKey)
    if (q.length) {
      const n = (tag) => String(q.filter(x => x.tag === tag).length)
      conn.send(node('ib', { from: S_WHATSAPP_NET }, [node('offline_preview', {
        count: String(q.length), message: n('message'), notification: n('notification'), receipt: n('receipt'), call: '0', appdata: '0'
      })]))
    }
    for (const x of q) { x.attrs.offline = '1'; this.sendTracked(conn, x) }
    conn.send(node('ib', { from: S_WHATSAPP_NET }, [node('offline', { count: String(q.length) })]))
  }

  /** Send to a device's connection; a <message> stays "in flight" until that device sends a receipt (or nack) for it. */
  sendTracked (conn, n) {
    conn.send(n)
    if (n.tag === 'message' && n.attrs.id) (conn.inflight ||= new Map()).set(n.attrs.id, n)
  }

  /**
   * The connection closed (or was replaced) before the device sent a receipt for some messages: put them back at
   * the head of its offline queue, so they are delivered again (offline="1") at its next login, as the real
   * server redelivers what was never acknowledged (the exact rule is a guess, NOTES.md §8).
   */
  requeueInflight (conn) {
    if (!conn.inflight?.size || !conn.deviceKey || !conn.dev || conn.dev.removed) return
    const q = this.offlineQueue.get(conn.deviceKey) || []
    const back = [...conn.inflight.values()].filter(n => !q.some(x => x.tag === 'message' && x.attrs.id === n.attrs.id))
    conn.inflight.clear()
    if (!back.length) return
    this.offlineQueue.set(conn.deviceKey, [...back, ...q])
    this.stats.redelivered += back.length
    this.log(`conn ${conn.id}: ${back.length} message(s) without a receipt from ${conn.deviceKey} queued again`)
  }

  /** Deliver a node to a logged-in device now, or queue it for its next login. */
  deliver (phone, deviceId, n) {
    const key = `${phone}:${deviceId}`
    const set = this.online.get(key)
    const conn = set && [...set].find(c => c.offlineFlushed && !c.closed)
    if (conn) { this.sendTracked(conn, n); return true }
    const q = this.offlineQueue.get(key) || []
    q.push(n)
    this.offlineQueue.set(key, q)
    return false
  }

  /** A notification to every linked device of an account (queued for those offline); returns its id. */
  notifyAccount (account, type, attrs, content) {
    const id = this.nextId(type.replace(/[^a-z]/g, ''))
    this.sentNotifications.set(id, type)
    if (this.sentNotifications.size > 10000) this.sentNotifications.delete(this.sentNotifications.keys().next().value)
    let devices = 0
    for (const dev of account.devices.values()) {
      if (dev.removed) continue
      this.deliver(account.phone, dev.id, node('notification', { from: S_WHATSAPP_NET, type, id, t: String(now()), ...attrs }, content))
      devices++
    }
    return { id, devices }
  }

  connsOf (phone, deviceId) { return [...(this.online.get(`${phone}:${deviceId}`) || [])].filter(c => !c.closed) }

  // ------------------------------------------------------------------ stanzas from clients

  async onNode (conn, n) {
    if (this.opts.verbose) this.log(`conn ${conn.id} << ${summarize(n)}`)
    if (!conn.deviceKey && !conn.reg) return // nothing is allowed before login/registration
    switch (n.tag) {
      case 'iq': return this.onIq(conn, n)
      case 'message': return this.onClientMessage(conn, n)
      case 'receipt': return this.onClientReceipt(conn, n)
      case 'ack':
        if (n.attrs.class === 'notification' && conn.passkeyNotifId && n.attrs.id === conn.passkeyNotifId) {
          this.stats.passkey_acks++
          if (this.lastPasskey?.notification_id === n.attrs.id) this.lastPasskey.ack = { ...n.attrs }
        }
        if (n.attrs.class === 'notification' && this.sentNotifications.has(n.attrs.id)) {
          const t = this.sentNotifications.get(n.attrs.id)
          this.stats.notification_acks[t] = (this.stats.notification_acks[t] || 0) + 1
        }
        if (n.attrs.class === 'message') conn.inflight?.delete(n.attrs.id) // a nack: the device will not want it again
        return
      case 'ib':
        if (getBinaryNodeChild(n, 'offline_batch')) this.stats.offline_batch_requests++
        return
      case 'presence': case 'chatstate': case 'notification': case 'call':
        return
      default:
        this.log(`conn ${conn.id}: ignoring <${n.tag}>`)
    }
  }

  async onIq (conn, iq) {
    const { type, id, xmlns } = iq.attrs
    if (type === 'result' || type === 'error') {
      const p = conn.pending?.get(id)
      if (p) p.resolve(iq)
      return
    }
    this.stats.iqs++
    const child = Array.isArray(iq.content) ? iq.content[0] : undefined
    switch (xmlns) {
      case 'w:p':
        return conn.send(iqResult(iq))
      case 'passive':
        conn.send(iqResult(iq))
        if (child?.tag === 'active') this.flushOffline(conn)
        return
      case 'encrypt':
        return this.onEncryptIq(conn, iq, child)
      case 'usync':
        return conn.send(iqResult(iq, [this.usync(getBinaryNodeChild(iq, 'usync'))]))
      case 'abt':
        return conn.send(iqResult(iq, [node('props', { protocol: '1', hash: '0', refresh: '86400' }, [])]))
      case 'blocklist':
        return conn.send(iqResult(iq, [node('list', {}, [])]))
      case 'privacy':
        if (type === 'get' && child?.tag === 'privacy') {
          return conn.send(iqResult(iq, [node('privacy', {}, ['last', 'online', 'profile', 'status', 'readreceipts', 'groupadd', 'calladd']
            .map(name => node('category', { name, value: name === 'readreceipts' ? 'all' : name === 'online' ? 'all' : 'contacts' })))]))
        }
        if (type === 'set' && child?.tag === 'tokens' && conn.account) {
          // the client issues its trusted-contact token to a contact (Baileys after every 1:1 send, whatsmeow once
          // per 7-day bucket, tctoken.go); recorded, answered with an empty result
          this.stats.privacy_token_iqs++
          const list = (conn.account.privacyTokensIssued ||= [])
          for (const tk of getBinaryNodeChildren(child, 'token')) {
            list.push({ jid: tk.attrs.jid ?? null, t: tk.attrs.t ? Number(tk.attrs.t) : null, type: tk.attrs.type ?? null, device: conn.dev?.id ?? null, at: now() })
          }
          if (list.length > 1000) list.splice(0, list.length - 1000)
        }
        return conn.send(iqResult(iq))
      case 'w:mex': {
        const q = getBinaryNodeChild(iq, 'query')
        if (q?.attrs.query_id === REACHOUT_QUERY_ID && conn.account) {
          // Baileys' fetchAccountReachoutTimelock (its 463 handling does not reach it in rc14, NOTES.md §5)
          const tl = this.activeTimelock(conn.account)
          const data = { xwa2_fetch_account_reachout_timelock: tl
            ? { is_active: true, time_enforcement_ends: String(tl.ends), enforcement_type: tl.type }
            : { is_active: false, time_enforcement_ends: '0', enforcement_type: 'DEFAULT' } }
          return conn.send(iqResult(iq, [node('result', {}, Buffer.from(JSON.stringify({ data })))]))
        }
        return conn.send(iqResult(iq))
      }
      case 'w:m':
        if (child?.tag === 'media_conn' && type === 'set') {
          // whatsmeow mediaconn.go queryMediaConn / Baileys refreshMediaConn
          if (!this.media) return conn.send(iqError(iq, 503, 'media host not enabled (start with --media-dir)'))
          const r = this.media.mediaConn()
          if (r.error) return conn.send(iqError(iq, r.error, 'fault media_conn_error'))
          return conn.send(iqResult(iq, [r.node]))
        }
        return conn.send(iqResult(iq))
      case 'md':
        if (child?.tag === 'link_code_companion_reg') return this.onLinkCodeIq(conn, iq, child)
        if (child?.tag === 'remove-companion-device') return this.onRemoveCompanion(conn, iq, child)
        if (['passkey_request_options', 'ref', 'passkey_prologue'].includes(child?.tag) && conn.reg && !conn.dev) return this.onPasskeyIq(conn, iq, child)
        return conn.send(iqResult(iq))
      default:
        return conn.send(iqResult(iq)) // every iq is answered; unknown ones with an empty result
    }
  }

  /**
   * <iq xmlns="md" type="set"><remove-companion-device jid reason/></iq>: a companion logs itself out
   * (Baileys sock.logout(), whatsmeow Logout()). The device is removed like an unlink by the phone: later logins
   * get failure 401, its keys are no longer handed out. A companion may only remove itself.
   */
  onRemoveCompanion (conn, iq, child) {
    if (!conn.dev) return conn.send(iqError(iq, 401, 'not-authorized'))
    const account = conn.account
    const dev = conn.dev
    const d = child.attrs.jid ? jidDecode(child.attrs.jid) : null
    if (d && !((d.server === 'lid' ? d.user === account.lid : d.user === account.phone) && (d.device || 0) === dev.id)) {
      this.log(`conn ${conn.id}: remove-companion-device for ${child.attrs.jid} refused (not the sender)`)
      return conn.send(iqError(iq, 403, 'forbidden'))
    }
    this.removeDevice(account, dev, `companion:${child.attrs.reason || ''}`)
    this.stats.companion_removals++
    conn.send(iqResult(iq))
    // the device is gone: its connections (this one too, if the client has not closed it yet) are told so
    const conns = this.connsOf(account.phone, dev.id)
    setTimeout(() => { for (const c of conns) c.streamError({ code: '401' }, [node('conflict', { type: 'device_removed' })]) }, 100)
    this.log(`conn ${conn.id}: ${pnJid(account.phone, dev.id)} removed itself (reason ${child.attrs.reason})`)
  }

  /** Mark a linked device removed (unlink by the phone, or the companion's own logout). */
  removeDevice (account, dev, reason) {
    dev.removed = true
    dev.removedAt = now()
    dev.removedReason = reason
    dev.preKeys.clear()
    this.offlineQueue.delete(`${account.phone}:${dev.id}`)
    this.store.save()
  }

  onEncryptIq (conn, iq, child) {
    const dev = conn.dev
    if (!child) return conn.send(iqResult(iq))
    if (child.tag === 'count') {
      return conn.send(iqResult(iq, [node('count', { value: String(dev ? dev.preKeys.size : 0) })]))
    }
    if (iq.attrs.type === 'set' && getBinaryNodeChild(iq, 'registration')) {
      if (!dev) return conn.send(iqError(iq, 401, 'not-authorized'))
      // prekey upload: <registration><type><identity><list><key><id><value>…</list><skey>
      const reg = getBinaryNodeChildBuffer(iq, 'registration')
      const identity = getBinaryNodeChildBuffer(iq, 'identity')
      if (identity && !Buffer.from(identity).equals(dev.identityPub)) this.log(`conn ${conn.id}: uploaded identity differs from the paired one`)
      dev.registrationId = readUInt(reg)
      let added = 0
      for (const k of getBinaryNodeChildren(getBinaryNodeChild(iq, 'list'), 'key')) {
        const kid = readUInt(getBinaryNodeChildBuffer(k, 'id'))
        const val = getBinaryNodeChildBuffer(k, 'value')
        if (val?.length === 32) { dev.preKeys.set(kid, Buffer.from(val)); added++ }
      }
      const sk = getBinaryNodeChild(iq, 'skey')
      if (sk) dev.skey = parseSkey(sk)
      if (dev.preKeys.size >= LOW_PREKEYS) dev.lowNotified = false
      this.store.save()
      this.log(`conn ${conn.id}: ${conn.deviceKey} uploaded ${added} prekeys (stock ${dev.preKeys.size})`)
      return conn.send(iqResult(iq))
    }
    if (child.tag === 'rotate') {
      const sk = getBinaryNodeChild(child, 'skey')
      if (dev && sk) { dev.skey = parseSkey(sk); this.store.save() }
      return conn.send(iqResult(iq))
    }
    if (child.tag === 'digest') {
      if (!dev) return conn.send(iqResult(iq))
      const ids = [...dev.preKeys.keys()].sort((a, b) => a - b)
      return conn.send(iqResult(iq, [node('digest', {}, [
        node('registration', {}, u32(dev.registrationId)),
        node('type', {}, Buffer.from([5])),
        node('identity', {}, dev.identityPub),
        skeyNode(dev.skey),
        node('list', {}, ids.map(i => node('id', {}, u24(i)))),
        node('hash', {}, Buffer.alloc(20))
      ])]))
    }
    if (child.tag === 'key') {
      const users = getBinaryNodeChildren(child, 'user')
      if (this.opts.verbose) this.log(`key fetch: ${users.map(u => u.attrs.jid + (u.attrs.reason ? `(${u.attrs.reason})` : '')).join(' ')}`)
      return conn.send(iqResult(iq, [node('list', {}, users.map(u => this.bundleFor(u.attrs.jid)))]))
    }
    return conn.send(iqResult(iq))
  }

  /** Pre-key bundle node for any device JID (contacts, the account phone, linked companions). */
  bundleFor (jid) {
    const d = jidDecode(jid || '')
    const notFound = node('user', { jid }, [node('error', { code: '404', text: 'item-not-found' })])
    if (!d?.user) return notFound
    const owner = this.store.findUser(d.user, d.server)
    const device = d.device || 0
    let b = null
    if (owner?.kind === 'contact') {
      b = owner.obj.devices.find(x => x.id === device)?.signal.takeBundle()
    } else if (owner?.kind === 'account') {
      if (device === 0) b = owner.obj.phoneDevice.takeBundle()
      else {
        const dev = owner.obj.devices.get(device)
        if (dev && !dev.removed && dev.skey) b = this.takeCompanionBundle(owner.obj, dev)
      }
    }
    if (!b) return notFound
    this.store.save()
    return node('user', { jid }, [
      node('registration', {}, u32(b.registrationId)),
      node('type', {}, Buffer.from([5])),
      node('identity', {}, b.identity),
      skeyNode(b.skey),
      ...(b.key ? [node('key', {}, [node('id', {}, u24(b.key.id)), node('value', {}, b.key.value)])] : [])
    ])
  }

  /** Hand out one of a companion's uploaded prekeys; notify it when its stock runs low. */
  takeCompanionBundle (account, dev) {
    const ids = [...dev.preKeys.keys()].sort((a, b) => a - b)
    let key
    if (ids.length) { key = { id: ids[0], value: dev.preKeys.get(ids[0]) }; dev.preKeys.delete(ids[0]) }
    if (dev.preKeys.size < LOW_PREKEYS && !dev.lowNotified) {
      dev.lowNotified = true
      const n = node('notification', { from: S_WHATSAPP_NET, type: 'encrypt', id: this.nextId('enc'), t: String(now()) }, [node('count', { value: String(dev.preKeys.size) })])
      for (const c of this.connsOf(account.phone, dev.id)) c.send(n)
    }
    return { registrationId: dev.registrationId, identity: dev.identityPub, skey: dev.skey, key }
  }

  /** usync: devices (+key-index), lid, contact; one <user> per queried user. */
  usync (us) {
    const query = getBinaryNodeChild(us, 'query')
    const wanted = new Set((Array.isArray(query?.content) ? query.content : []).map(q => q.tag))
    const users = getBinaryNodeChildren(getBinaryNodeChild(us, 'list'), 'user')
    if (this.opts.verbose) this.log(`usync ${us.attrs.context}/${us.attrs.mode} [${[...wanted]}]: ${users.map(u => u.attrs.jid || 'contact').join(' ')}`)
    const out = []
    for (const u of users) {
      let jid = u.attrs.jid
      const contactNode = getBinaryNodeChild(u, 'contact')
      let owner = null
      if (jid) {
        const d = jidDecode(jid)
        if (d?.user) owner = this.store.findUser(d.user, d.server)
      } else if (contactNode?.content) {
        const digits = contactNode.content.toString().replace(/[^0-9]/g, '')
        owner = this.store.findUser(digits, 's.whatsapp.net')
        jid = `${digits}@s.whatsapp.net`
      }
      const isLidQuery = jid && jid.endsWith('@lid')
      const children = []
      if (wanted.has('contact')) {
        children.push(node('contact', { type: owner ? 'in' : 'out' }, contactNode?.content))
      }
      if (wanted.has('devices') && owner) {
        const devs = owner.kind === 'contact'
          ? owner.obj.devices.map(d => ({ id: d.id, keyIndex: d.id }))
          : [{ id: 0 }, ...[...owner.obj.devices.values()].filter(d => !d.removed).map(d => ({ id: d.id, keyIndex: d.keyIndex }))]
        children.push(node('devices', {}, [node('device-list', {}, devs.map(d =>
          node('device', d.id ? { id: String(d.id), 'key-index': String(d.keyIndex) } : { id: '0' })))]))
      }
      if (wanted.has('lid') && owner && !isLidQuery) children.push(node('lid', { val: lidJid(owner.obj.lid) }))
      if (wanted.has('status') && owner) children.push(node('status', { t: '0' }, Buffer.from('')))
      if (wanted.has('disappearing_mode') && owner) children.push(node('disappearing_mode', { duration: '0', t: '0' }))
      out.push(node('user', { jid }, children))
    }
    return node('usync', { ...pick(us.attrs, ['sid', 'mode', 'context', 'last', 'index']) }, [
      node('result', {}, [...wanted].map(t => node(t, {}))),
      node('list', {}, out)
    ])
  }

  // ------------------------------------------------------------------ messages from clients

  /**
   * participantListHashV2 as whatsmeow computes it (send.go): "2:" + unpadded base64 of the first 6 bytes of
   * SHA-256 over the sorted ADString()s ("user.agent:device@server") of every device of the recipient and of the
   * sender's own account (sending device included), all in the addressing of `to` (LID chats: LID device JIDs).
   * The server's view is the simulator's device lists, so a client that missed a device gets a different hash.
   */
  participantHash (toOwner, account, addressing) {
    const server = addressing === 'lid' ? 'lid' : 's.whatsapp.net'
    const ad = (user, dev) => `${user}.0:${dev}@${server}`
    const userOf = (o) => addressing === 'lid' ? o.lid : o.phone
    const devsOf = (owner) => owner.kind === 'contact'
      ? owner.obj.devices.map(d => d.id)
      : [0, ...[...owner.obj.devices.values()].filter(d => !d.removed).map(d => d.id)]
    const list = devsOf(toOwner).map(d => ad(userOf(toOwner.obj), d))
    if (toOwner.obj !== account) list.push(...devsOf({ kind: 'account', obj: account }).map(d => ad(userOf(account), d)))
    list.sort()
    return '2:' + createHash('sha256').update(list.join('')).digest().subarray(0, 6).toString('base64').replace(/=+$/, '')
  }

  /**
   * <device-identity> of a message: an ADVSignedDeviceIdentity whose account signature (06 00 ‖ details ‖ device
   * identity key) verifies with the account's key, whose details name this device's key index, and whose device
   * signature (06 01 ‖ details ‖ identity ‖ account key) verifies with the device's identity key. Cached by content
   * (a client attaches the same bytes to every pkmsg stanza; XEdDSA in pure JS costs ~2 ms).
   */
  checkDeviceIdentity (account, dev, bytes) {
    if (!(bytes instanceof Uint8Array)) return false
    const key = `${account.phone}:${dev.id}:${Buffer.from(bytes).toString('base64')}`
    this.diCache ||= new Map()
    if (this.diCache.has(key)) return this.diCache.get(key)
    let ok = false
    try {
      const s = proto.ADVSignedDeviceIdentity.decode(bytes)
      const details = proto.ADVDeviceIdentity.decode(s.details)
      const acctKey = Buffer.from(account.accountKey.public)
      ok = (!s.accountSignatureKey?.length || Buffer.from(s.accountSignatureKey).equals(acctKey)) &&
        (details.keyIndex ?? 0) === (dev.keyIndex ?? 0) &&
        verifyXEdDSA(acctKey, Buffer.concat([ADV_ACCOUNT_SIG_PREFIX, s.details, dev.identityPub]), s.accountSignature) &&
        !!s.deviceSignature?.length &&
        verifyXEdDSA(dev.identityPub, Buffer.concat([ADV_DEVICE_SIG_PREFIX, s.details, dev.identityPub, acctKey]), s.deviceSignature)
    } catch { ok = false }
    if (this.diCache.size > 10000) this.diCache.clear()
    this.diCache.set(key, ok)
    return ok
  }

  /** Does `account` already have a chat with contact `c` (for the reachout timelock's "new contact" rule)? */
  hasChat (account, c) {
    if (c.inbox.some(e => e.from === account.phone)) return true
    for (const r of this.sent.values()) if (r.contact === c.phone && r.to === account.phone) return true
    return false
  }

  /** The account's reachout timelock, or null when none is in force now. */
  activeTimelock (account) {
    const tl = account.timelock
    return tl && tl.active && tl.ends > now() ? tl : null
  }

  async onClientMessage (conn, msg) {
    const { id, to } = msg.attrs
    if (!conn.dev || !id || !to) return
    this.stats.messages_in_total++
    const account = conn.account
    const senderDevice = conn.dev.id
    const toD = jidDecode(to)
    const userTo = !!toD?.user && (toD.server === 'lid' || toD.server === 's.whatsapp.net')
    const addressing = toD?.server === 'lid' ? 'lid' : 'pn'
    const toOwner = userTo ? this.store.findUser(toD.user, toD.server) : null
    // collect (device jid, enc) pairs
    const items = []
    const participants = getBinaryNodeChild(msg, 'participants')
    if (participants) {
      for (const t of getBinaryNodeChildren(participants, 'to')) {
        const enc = getBinaryNodeChild(t, 'enc')
        if (enc) items.push({ jid: t.attrs.jid, enc })
      }
    }
    const direct = getBinaryNodeChildren(msg, 'enc')
    if (direct.length) {
      // a resend to one device (retry): Baileys rc14 puts the enc there *and* a second encryption for the same
      // device in <participants> (NOTES.md §8); the device gets one copy, the direct one (whatsmeow's only one)
      for (let i = items.length - 1; i >= 0; i--) if (items[i].jid === to) items.splice(i, 1)
      for (const enc of direct) items.push({ jid: to, enc })
    }
    if (this.opts.verbose) this.log(`message ${id} to ${to}: ${items.map(i => `${i.jid}/${i.enc.attrs.type}`).join(' ')}`)

    const ackAttrs = { class: 'message', id, from: to, t: String(now()) }
    const nack = (code, why) => {
      this.log(`conn ${conn.id}: message ${id} to ${to}: ack error ${code} (${why})`)
      this.stats.ack_errors_sent[code] = (this.stats.ack_errors_sent[code] || 0) + 1
      conn.send(node('ack', { ...ackAttrs, error: String(code) }))
    }
    const fault = this.useFault(conn.deviceKey, 'ack_error')
    if (fault) return nack(fault.code || 479, 'fault ack_error')
    if (userTo && !toOwner) {
      // the server cannot route to a user it does not know; a guess at its answer (NOTES.md §8)
      this.stats.unknown_recipients++
      return nack(400, 'unknown recipient')
    }
    const tctoken = getBinaryNodeChildBuffer(msg, 'tctoken')
    const tctokenB64 = tctoken ? Buffer.from(tctoken).toString('base64') : null
    let tctokenValid = null
    if (toOwner?.kind === 'contact') {
      const c = toOwner.obj
      if (tctokenB64) {
        tctokenValid = (c.tokensIssued?.[account.phone] || []).some(x => x.token === tctokenB64)
        this.stats.tctokens_received++
        if (!tctokenValid) this.stats.tctokens_invalid++
      }
      if (c.requireTcToken && !tctokenValid) return nack(463, `contact ${c.phone} requires a tctoken`)
      const tl = this.activeTimelock(account)
      if (tl?.enforce && !this.hasChat(account, c)) return nack(463, `reachout timelock until ${tl.ends}`)
    }
    // phash: the server's participant list hash; echoed in the ack when the client sent one (or always/never)
    const clientPhash = msg.attrs.phash ?? null
    let serverPhash = null
    // (only when something reads it: a sort and a SHA-256 per stanza otherwise)
    if (toOwner && participants && (clientPhash !== null || this.ackPhash === 'always')) serverPhash = this.participantHash(toOwner, account, addressing)
    if (clientPhash !== null && clientPhash !== serverPhash) {
      this.stats.phash_mismatches++
      this.log(`message ${id}: client phash ${clientPhash} != server ${serverPhash}`)
    }
    if (serverPhash && (this.ackPhash === 'always' || (this.ackPhash === 'client' && clientPhash !== null))) ackAttrs.phash = serverPhash
    // fault no_ack: the message is relayed but its ack never comes (a server that went away after taking it)
    const withheld = this.useFault(conn.deviceKey, 'no_ack')
    if (withheld) {
      this.stats.acks_withheld = (this.stats.acks_withheld || 0) + 1
      this.log(`conn ${conn.id}: message ${id}: ack withheld (fault no_ack)`)
    } else {
      conn.send(node('ack', ackAttrs))
    }

    // <device-identity> is required when any enc is a pkmsg (wa-protocol.md §7)
    const hasPkmsg = items.some(i => i.enc.attrs.type === 'pkmsg')
    const diNode = getBinaryNodeChild(msg, 'device-identity')
    let diOk = null
    if (diNode) {
      diOk = this.checkDeviceIdentity(account, conn.dev, diNode.content)
      if (!diOk) this.stats.bad_device_identity++
    } else if (hasPkmsg) {
      diOk = false
      this.stats.missing_device_identity++
      this.log(`message ${id} from ${conn.deviceKey}: pkmsg without <device-identity>`)
    }

    // bench mode: decrypt 1 message in N (resends and messages a retry fault waits for are always decrypted)
    const isResend = items.some(i => i.enc.attrs.count !== undefined) || msg.attrs.device_fanout === 'false'
    let decryptThis = true
    let forced = false
    if (this.benchSample > 1) {
      forced = isResend || this.pendingFaults.get(conn.deviceKey)?.some(f => f.type === 'retry_request' && (!f.bound || f.bound.startsWith(`${id}|`)))
      decryptThis = forced || (this.benchCounter++ % this.benchSample === 0)
      if (decryptThis) this.stats.bench_sampled++
      else this.stats.bench_skipped++
    }
    // Relaying to the devices: decrypting (when this one is not skipped), inbox, receipts.
    const relay = async () => {
      const meta = {
        addressing,
        to,
        peer_recipient_pn: msg.attrs.peer_recipient_pn ?? null,
        device_identity_ok: diOk,
        tctoken: tctokenB64,
        tctoken_valid: tctokenValid,
        phash: clientPhash
      }
      const peerAddr = peerAddress(`acct_${account.phone}`, senderDevice)
      const delivered = new Map() // contact phone -> contact
      let benchBad = false
      for (const { jid, enc } of items) {
        const d = jidDecode(jid)
        if (!d?.user) continue
        const owner = this.store.findUser(d.user, d.server)
        const devNo = d.device || 0
        const ct = enc.content instanceof Uint8Array ? Buffer.from(enc.content) : null
        if (!ct) continue
        const retryCount = enc.attrs.count !== undefined ? Number(enc.attrs.count) : 0
        if (owner?.kind === 'contact') {
          const c = owner.obj
          const cdev = c.devices.find(x => x.id === devNo)
          if (!cdev) { this.log(`message ${id}: contact ${c.phone} has no device ${devNo}`); continue }
          const fromJid = addressing === 'lid' ? lidJid(c.lid, devNo) : pnJid(c.phone, devNo)
          const rkey = `${id}|${c.phone}:${devNo}`
          if (!decryptThis) { delivered.set(c.phone, c); continue }
          try {
            const m = await cdev.signal.decrypt(peerAddr, enc.attrs.type, ct)
            if (this.useFault(conn.deviceKey, 'retry_request', f => f.target === 'contact' && (f.device === undefined || f.device === devNo), rkey)) {
              // pretend this device could not decrypt: ask for a retry (the resend is a new encryption)
              this.contactRetry(conn, msg, fromJid, cdev.signal, rkey, addressing === 'lid' ? { sender_pn: pnJid(c.phone) } : {})
              continue
            }
            const text = textOf(m)
            if (!mediaOf(m) && !this.benchTextOk(text)) benchBad = true
            // a resend of the same message (retry, or a resend to all devices) is recorded once
            c.inboxKeys ||= new Set(c.inbox.map(e => `${e.id}|${e.device}`))
            if (!c.inboxKeys.has(`${id}|${devNo}`)) {
              c.inboxKeys.add(`${id}|${devNo}`)
              const entry = {
                from: account.phone,
                id,
                text,
                device: devNo,
                t: Number(msg.attrs.t || now()),
                type: enc.attrs.type,
                sender_device: senderDevice,
                ...meta,
                to_jid: jid,
                retries: this.retryCounts.get(rkey) || 0,
                retry_count: retryCount
              }
              c.inbox.push(entry)
              this.receiveMedia(entry, m, `contact ${c.phone}.${devNo}`)
            }
            delivered.set(c.phone, c)
          } catch (err) {
            this.stats.decrypt_failures++
            this.log(`message ${id}: contact ${c.phone}.${devNo} failed to decrypt: ${err.message}`)
            this.contactRetry(conn, msg, fromJid, cdev.signal, rkey, addressing === 'lid' ? { sender_pn: pnJid(c.phone) } : {})
          }
        } else if (owner?.kind === 'account' && owner.obj === account) {
          if (devNo === 0) {
            // the own phone: receives the deviceSentMessage copy (or peer messages)
            const chat = msg.attrs.recipient || msg.attrs.to
            const ownJid = d.server === 'lid' ? lidJid(account.lid) : pnJid(account.phone)
            const rkey = `${id}|${account.phone}:0`
            if (!decryptThis) continue
            try {
              const m = await account.phoneDevice.decrypt(peerAddr, enc.attrs.type, ct)
              if (this.useFault(conn.deviceKey, 'retry_request', f => f.target !== 'contact', rkey)) {
                this.contactRetry(conn, msg, ownJid, account.phoneDevice, rkey, { recipient: chat })
                continue
              }
              const text = textOf(m.deviceSentMessage?.message ?? m)
              if (!mediaOf(m) && !this.benchTextOk(text)) benchBad = true
              this.phoneInboxKeys ||= new Set()
              if (!this.phoneInboxKeys.has(`${account.phone}|${id}`)) {
                this.phoneInboxKeys.add(`${account.phone}|${id}`)
                const entry = {
                  ...meta,
                  retry_count: retryCount,
                  account: account.phone,
                  id,
                  to: m.deviceSentMessage?.destinationJid ?? msg.attrs.to, // the chat (what the phone shows)
                  stanza_to: msg.attrs.to, // the raw `to` of the stanza
                  text,
                  dsm: !!m.deviceSentMessage,
                  protocol: m.protocolMessage?.type ?? null,
                  t: now(),
                  type: enc.attrs.type,
                  sender_device: senderDevice,
                  to_jid: jid,
                  retries: this.retryCounts.get(rkey) || 0
                }
                this.phoneInbox.push(entry)
                this.receiveMedia(entry, m, `phone ${account.phone}`)
              }
            } catch (err) {
              this.stats.decrypt_failures++
              this.log(`message ${id}: phone ${account.phone} failed to decrypt: ${err.message}`)
              this.contactRetry(conn, msg, ownJid, account.phoneDevice, rkey, { recipient: chat })
            }
          } else {
            // another linked companion of the same account: relay the copy, from the sender's LID when the sender
            // addressed that device by LID (whatsmeow), with the chat's PN alternative
            const lidCopy = d.server === 'lid'
            const attrs = { from: lidCopy ? lidJid(account.lid, senderDevice) : pnJid(account.phone, senderDevice), recipient: to, id, type: msg.attrs.type || 'text', t: String(now()) }
            if (lidCopy && addressing === 'lid' && toOwner) attrs.peer_recipient_pn = pnJid(toOwner.obj.phone)
            const n = node('message', attrs, [node('enc', pick(enc.attrs, ['v', 'type', 'count']), ct)])
            this.deliver(account.phone, devNo, n)
          }
        } else {
          this.log(`message ${id}: no recipient for ${jid}`)
        }
      }
      this.store.saveSoon()
      if (benchBad) this.stats.bench_text_errors++
      if (delivered.size) this.stats.messages_relayed++
      // contacts: delivery, then read receipts; from the contact's LID (with its PN as sender_pn) in a LID chat
      // no_ack: the server took the message and went quiet: no receipts for it either
      if (withheld) return
      for (const c of delivered.values()) {
        const from = addressing === 'lid' ? lidJid(c.lid) : pnJid(c.phone)
        const alt = addressing === 'lid' ? { sender_pn: pnJid(c.phone) } : {}
        if (this.receiptLists) {
          this.queueReceipt(conn, from, alt, id)
          continue
        }
        setTimeout(() => {
          if (conn.closed) return
          conn.send(node('receipt', { from, id, t: String(now()), ...alt }))
          this.stats.receipts_sent++
          if (!this.readReceipts) return
          setTimeout(() => {
            if (conn.closed) return
            conn.send(node('receipt', { from, id, t: String(now()), type: 'read', ...alt }))
            this.stats.receipts_sent++
          }, this.readDelayMs)
        }, this.deliveryDelayMs)
      }
    }
    // Bench mode: a sampled message's decryptions (~0.5 ms each: the keys skipped since the last sample) wait
    // until the acks of the frames read with it have left, instead of holding them (setImmediate runs after
    // this turn's I/O callbacks and microtasks; a session's decryptions stay in order: libsignal queues them).
    if (this.benchSample > 1 && decryptThis && !forced) {
      setImmediate(() => relay().catch(err => this.log(`message ${id}: relay failed: ${err.stack || err}`)))
      return
    }
    return relay()
  }

  /**
   * receipt_lists: a contact's delivery receipts for one connection wait together, at most deliveryDelayMs after the
   * first one and RECEIPT_LIST_MAX ids, and leave as one receipt for several messages, the way whatsmeow's MarkRead
   * writes one (receipt.go): the first id in `id`, the others in <list><item id/></list>; whatsmeow's parseReceipt
   * and Baileys' handleReceipt read both. Read receipts follow the same way readDelayMs later.
   */
  queueReceipt (conn, from, alt, id, type = null) {
    conn.receiptLists ||= new Map()
    const key = `${from}|${type || ''}`
    let batch = conn.receiptLists.get(key)
    if (!batch) {
      batch = { from, alt, type, ids: [], timer: null }
      conn.receiptLists.set(key, batch)
    }
    batch.ids.push(id)
    if (batch.ids.length >= RECEIPT_LIST_MAX) return this.flushReceipts(conn, key)
    batch.timer ||= setTimeout(() => this.flushReceipts(conn, key), type ? this.readDelayMs : this.deliveryDelayMs)
  }

  flushReceipts (conn, key) {
    const batch = conn.receiptLists.get(key)
    conn.receiptLists.delete(key)
    clearTimeout(batch.timer)
    if (conn.closed || !batch.ids.length) return
    const [first, ...rest] = batch.ids
    const attrs = { from: batch.from, id: first, t: String(now()), ...(batch.type ? { type: batch.type } : {}), ...batch.alt }
    const content = rest.length ? [node('list', {}, rest.map(id => node('item', { id })))] : undefined
    conn.send(node('receipt', attrs, content))
    this.stats.receipts_sent++
    if (rest.length) this.stats.receipt_lists_sent++
    if (!batch.type && this.readReceipts) for (const id of batch.ids) this.queueReceipt(conn, batch.from, batch.alt, id, 'read')
  }

  /**
   * A simulated device (contact device or the own phone) decrypted a message: when it carries a document or an image,
   * record {type, filename, mimetype, caption, ...} in its inbox entry at once (`status: "downloading"`), then download
   * it by direct path from the media host, check and decrypt it (lib/media.mjs downloadAndDecrypt) and add the
   * plaintext's `sha256` and `size` (`status: "ok"`), or the reason it failed (`status: "error"`, `error`).
   */
  receiveMedia (entry, m, who) {
    const md = mediaOf(m)
    if (!md) return
    const x = md.msg
    const num = (v) => (v === null || v === undefined) ? null : typeof v === 'object' ? Number(v.toString()) : Number(v)
    entry.media = {
      type: md.kind,
      filename: x.fileName ?? null,
      mimetype: x.mimetype ?? null,
      caption: x.caption ?? null,
      sha256: null,
      size: null,
      status: 'downloading',
      error: null,
      declared_size: num(x.fileLength),
      page_count: md.kind === 'document' ? num(x.pageCount) : null,
      width: md.kind === 'image' ? num(x.width) : null,
      height: md.kind === 'image' ? num(x.height) : null,
      thumbnail_bytes: x.jpegThumbnail?.length ?? null,
      direct_path: x.directPath ?? null,
      url: x.url ?? null
    }
    const done = (fields, ok) => {
      Object.assign(entry.media, fields)
      if (ok) this.stats.media_received = (this.stats.media_received || 0) + 1
      else this.stats.media_receive_errors = (this.stats.media_receive_errors || 0) + 1
      this.store.saveSoon()
    }
    if (!this.media) return done({ status: 'error', error: 'media host not enabled (--media-dir)' }, false)
    this.media.downloadAndDecrypt(x, md.mmsType).then(
      (r) => done({ status: 'ok', sha256: r.sha256, size: r.size }, true),
      (err) => { this.log(`${who}: ${md.kind} ${entry.id}: ${err.message}`); done({ status: 'error', error: err.message }, false) })
  }

  /** Bench mode: a sampled decrypt must yield a text (matching bench_text_pattern when set). */
  benchTextOk (text) {
    if (!(this.benchSample > 1)) return true
    return !(text === null || text === undefined || (this.benchTextRe && !this.benchTextRe.test(text)))
  }

  /**
   * A simulated device (contact device or the own phone) could not decrypt `msg` (or pretends so): send a retry
   * receipt as whatsmeow's sendRetryReceipt does (retry.go): the count goes up with every failure of that device
   * on that message id; from count 2 on it carries <keys> (type, identity, a fresh one-time prekey, the signed
   * prekey); at count 5 it gives up (no receipt). Simulated devices have no ADV account, so no <device-identity>.
   */
  contactRetry (conn, msg, fromJid, signal, rkey, extra = {}) {
    const count = (this.retryCounts.get(rkey) || 0) + 1
    this.retryCounts.set(rkey, count)
    if (this.retryCounts.size > 100000) this.retryCounts.delete(this.retryCounts.keys().next().value)
    if (count >= 5) {
      this.stats.retry_receipts_suppressed++
      this.log(`message ${msg.attrs.id}: ${fromJid} gives up after ${count - 1} retry receipts`)
      return
    }
    this.stats.retry_receipts_sent = (this.stats.retry_receipts_sent || 0) + 1
    // a retry from one's own device names the chat in `recipient` (Baileys handleReceipt uses it as remoteJid)
    const attrs = { from: fromJid, id: msg.attrs.id, type: 'retry', t: String(now()), ...extra }
    if (!attrs.recipient) delete attrs.recipient
    const content = [
      node('retry', { count: String(count), id: msg.attrs.id, t: msg.attrs.t || String(now()), v: '1' }),
      node('registration', {}, u32(signal.registrationId))
    ]
    if (count > 1) {
      const b = signal.takeBundle()
      content.push(node('keys', {}, [
        node('type', {}, Buffer.from([5])),
        node('identity', {}, b.identity),
        ...(b.key ? [node('key', {}, [node('id', {}, u24(b.key.id)), node('value', {}, b.key.value)])] : []),
        skeyNode(b.skey)
      ]))
      this.stats.retry_receipts_with_keys++
    }
    conn.send(node('receipt', attrs, content))
  }

  onClientReceipt (conn, r) {
    const { id, type, to } = r.attrs
    this.stats.receipts_received++
    conn.send(node('ack', { class: 'receipt', id, from: to || S_WHATSAPP_NET, ...(type ? { type } : {}) }))
    const ids = [id, ...getBinaryNodeChildren(getBinaryNodeChild(r, 'list'), 'item').map(i => i.attrs.id)]
    const q = conn.deviceKey && this.offlineQueue.get(conn.deviceKey)
    if (q) this.offlineQueue.set(conn.deviceKey, q.filter(n => !(n.tag === 'message' && ids.includes(n.attrs.id))))
    for (const mid of ids) {
      conn.inflight?.delete(mid) // the device has the message: no redelivery at its next login
      const rec = this.sent.get(mid)
      if (!rec) continue
      if (type === 'retry') {
        this.stats.retry_receipts_received++
        const count = Number(getBinaryNodeChild(r, 'retry')?.attrs.count || 1)
        rec.retries.push({ device: conn.dev?.id, count, keys: !!getBinaryNodeChild(r, 'keys'), t: now() })
        if (conn.dev) this.resendToDevice(rec, conn.dev, r, count).catch(err => this.log(`retry resend failed: ${err.stack}`))
      } else if (type === 'read' || type === 'read-self') {
        rec.read.push({ device: conn.dev?.id, to: to ?? null, t: now() })
      } else {
        rec.delivered.push({ device: conn.dev?.id, type: type || 'delivery', to: to ?? null, t: now() })
      }
    }
  }

  // ------------------------------------------------------------------ contacts (control API)

  addContact (body) {
    const { devices = 1, name } = body || {}
    const phone = digits(body?.phone)
    if (!validPhone(phone)) throw httpError(400, 'bad phone')
    if (!Number.isInteger(devices) || devices < 1 || devices > 16) throw httpError(400, 'devices must be 1..16')
    for (const k of ['lid_mode', 'require_tctoken']) if (k in (body || {}) && typeof body[k] !== 'boolean') throw httpError(400, `${k} must be true or false`)
    if (this.store.accounts.has(phone)) throw httpError(409, 'phone is a linked account')
    let c = this.store.contacts.get(phone)
    if (!c) c = this.store.createContact(phone, devices, name)
    // the flags may be changed on an existing contact (the call stays idempotent otherwise)
    if ('lid_mode' in body) c.lidMode = body.lid_mode
    if ('require_tctoken' in body) c.requireTcToken = body.require_tctoken
    this.store.save()
    return this.contactView(c)
  }

  contactView (c) {
    return {
      phone: c.phone,
      jid: pnJid(c.phone),
      lid: lidJid(c.lid),
      name: c.name,
      lid_mode: !!c.lidMode,
      require_tctoken: !!c.requireTcToken,
      devices: c.devices.map(d => ({ id: d.id, prekeys: d.signal.available.length })),
      privacy_tokens: Object.entries(c.tokensIssued || {}).flatMap(([to, list]) => list.map(x => ({ to, token: x.token, t: x.t }))),
      sent: [...this.sent.values()].filter(r => r.contact === c.phone).map(r => ({
        id: r.id, to: r.to, text: r.text, media: r.media ?? null, addressing: r.addressing, delivered: r.delivered, read: r.read, retries: r.retries, enc_types: r.encTypes || {}
      }))
    }
  }

  getContact (phone) {
    const c = this.store.contacts.get(phone)
    if (!c) throw httpError(404, 'no such contact')
    return this.contactView(c)
  }

  getInbox (phone) {
    const c = this.store.contacts.get(phone)
    if (!c) throw httpError(404, 'no such contact')
    return c.inbox.map(inboxView)
  }

  /**
   * POST /contacts/:phone/send {to, text, device?, as?}: the contact's device encrypts to every linked companion.
   * `as`: "lid" (from="LID:dev@lid" sender_pn=PN, as in a LID chat) or "pn" (from="PN:dev@s.whatsapp.net"
   * sender_lid=LID); default from the contact's lid_mode.
   */
  async contactSend (phone, body) {
    const c = this.store.contacts.get(phone)
    if (!c) throw httpError(404, 'no such contact')
    const { to, text, media } = body || {}
    const fromDevice = Number(body?.device || 0)
    if (media === undefined && typeof text !== 'string') throw httpError(400, 'text missing')
    if (media !== undefined && text !== undefined) throw httpError(400, 'text and media are exclusive (use media.caption)')
    let mediaIn = null
    if (media !== undefined) {
      const { type, data, mimetype, filename, caption } = media || {}
      if (type !== 'document' && type !== 'image') throw httpError(400, 'media.type must be "document" or "image"')
      if (typeof data !== 'string' || !data.length || !/^[A-Za-z0-9+/]*={0,2}$/.test(data)) throw httpError(400, 'media.data must be base64')
      for (const [k, v] of Object.entries({ mimetype, filename, caption })) if (v !== undefined && typeof v !== 'string') throw httpError(400, `media.${k} must be a string`)
      for (const k of ['width', 'height', 'page_count']) if (media[k] !== undefined && !(Number.isInteger(media[k]) && media[k] > 0)) throw httpError(400, `media.${k} must be a positive integer`)
      if (!this.media) throw httpError(409, 'media host not enabled (start with --media-dir)')
      mediaIn = { ...media, buf: Buffer.from(data, 'base64') }
    }
    if (body.as !== undefined && body.as !== 'lid' && body.as !== 'pn') throw httpError(400, 'as must be "lid" or "pn"')
    const account = this.store.accounts.get(digits(to))
    if (!account) throw httpError(404, 'no such account')
    const cdev = c.devices.find(d => d.id === fromDevice)
    if (!cdev) throw httpError(400, 'no such contact device')
    const targets = [...account.devices.values()].filter(d => !d.removed)
    if (!targets.length) throw httpError(409, 'account has no linked devices')
    const id = '3EB0' + randomBytes(9).toString('hex').toUpperCase()
    const addressing = body.as ?? (c.lidMode ? 'lid' : 'pn')
    const rec = { id, contact: c.phone, contactDevice: fromDevice, to: account.phone, text: text ?? null, addressing, t: now(), delivered: [], read: [], retries: [], devices: [] }
    if (mediaIn) {
      // encrypted with Baileys' encryptedStream and uploaded to the media host over HTTPS, like a real sender
      const up = await this.media.encryptAndUpload(mediaIn.buf, mediaIn.type)
      const common = { url: up.url, directPath: up.directPath, mediaKey: up.mediaKey, fileEncSha256: up.fileEncSha256, fileSha256: up.fileSha256, fileLength: up.fileLength, mediaKeyTimestamp: up.mediaKeyTimestamp }
      if (mediaIn.type === 'document') {
        const name = mediaIn.filename ?? 'file'
        rec.message = { documentMessage: { ...common, mimetype: mediaIn.mimetype ?? 'application/octet-stream', title: name, fileName: name, ...(mediaIn.page_count ? { pageCount: mediaIn.page_count } : {}), ...(mediaIn.caption !== undefined ? { caption: mediaIn.caption } : {}) } }
      } else {
        rec.message = { imageMessage: { ...common, mimetype: mediaIn.mimetype ?? 'image/jpeg', ...(mediaIn.width ? { width: mediaIn.width, height: mediaIn.height ?? mediaIn.width } : {}), ...(mediaIn.caption !== undefined ? { caption: mediaIn.caption } : {}) } }
      }
      rec.media = { type: mediaIn.type, filename: mediaIn.filename ?? null, mimetype: rec.message[`${mediaIn.type}Message`].mimetype, caption: mediaIn.caption ?? null, sha256: up.fileSha256.toString('hex'), size: up.fileLength, direct_path: up.directPath, url: up.url, enc_sha256: up.fileEncSha256.toString('hex') }
    }
    this.sent.set(id, rec)
    for (const dev of targets) {
      const n = await this.encryptToCompanion(c, cdev, account, dev, rec)
      if (!n) continue
      rec.devices.push(dev.id)
      this.deliver(account.phone, dev.id, n)
      this.stats.messages_to_clients++
    }
    this.store.saveSoon()
    return { id, devices: rec.devices, addressing, ...(rec.media ? { media: rec.media } : {}) }
  }

  async encryptToCompanion (c, cdev, account, dev, rec, count) {
    const addr = peerAddress(`acct_${account.phone}`, dev.id)
    if (!cdev.signal.hasSession(addr)) {
      if (!dev.skey) { this.log(`no keys uploaded by ${account.phone}:${dev.id}`); return null }
      await cdev.signal.initSession(addr, this.takeCompanionBundle(account, dev))
    }
    const enc = await cdev.signal.encrypt(addr, rec.message ?? { conversation: rec.text })
    rec.encTypes ||= {}
    ;(rec.encTypes[dev.id] ||= []).push(enc.type)
    if (this.useFault(`${account.phone}:${dev.id}`, 'bad_ciphertext')) {
      // flip the last byte: the Signal MAC no longer verifies ("Bad MAC") -> client sends a retry receipt
      enc.ciphertext[enc.ciphertext.length - 1] ^= 0xff
      this.log(`fault bad_ciphertext applied to ${rec.id} for ${account.phone}:${dev.id}`)
    }
    const lid = rec.addressing === 'lid'
    return node('message', {
      from: lid ? lidJid(c.lid, cdev.id) : pnJid(c.phone, cdev.id),
      id: rec.id,
      type: rec.message ? 'media' : 'text',
      t: String(rec.t),
      notify: c.name,
      ...(lid ? { sender_pn: pnJid(c.phone) } : { sender_lid: lidJid(c.lid) })
    }, [node('enc', { v: '2', type: enc.type, ...(count ? { count: String(count) } : {}), ...(rec.media ? { mediatype: rec.media.type } : {}) }, enc.ciphertext)])
  }

  /** The client asked for a retry of a contact's message: re-encrypt (new session if <keys> came along). */
  async resendToDevice (rec, dev, receipt, count) {
    const c = this.store.contacts.get(rec.contact)
    const account = this.store.accounts.get(rec.to)
    const cdev = c?.devices.find(d => d.id === rec.contactDevice)
    if (!cdev || !account) return
    const keys = getBinaryNodeChild(receipt, 'keys')
    if (keys) {
      const identity = getBinaryNodeChildBuffer(keys, 'identity')
      const sk = getBinaryNodeChild(keys, 'skey')
      const k = getBinaryNodeChild(keys, 'key')
      if (identity && sk) {
        await cdev.signal.initSession(peerAddress(`acct_${account.phone}`, dev.id), {
          registrationId: readUInt(getBinaryNodeChildBuffer(receipt, 'registration')),
          identity: Buffer.from(identity),
          skey: parseSkey(sk),
          key: k ? { id: readUInt(getBinaryNodeChildBuffer(k, 'id')), value: Buffer.from(getBinaryNodeChildBuffer(k, 'value')) } : undefined
        })
      }
    }
    const n = await this.encryptToCompanion(c, cdev, account, dev, rec, count)
    if (n) { this.deliver(account.phone, dev.id, n); this.store.saveSoon() }
  }

  /**
   * POST /contacts/:phone/privacy-token {to, t?, token?, as?}: the contact issues its trusted-contact token to the
   * account; the server tells every linked device of the account with the notification whatsmeow (notification.go
   * handlePrivacyTokenNotification) and Baileys read:
   * <notification from="CONTACT_PN@s.whatsapp.net" sender_lid="CONTACT_LID@lid" type="privacy_token" id t>
   *   <tokens><token jid="ACCOUNT_JID" t type="trusted_contact">[token]</token></tokens></notification>
   * (from the contact's LID, without sender_lid, when `as` is "lid" or the contact is in LID mode). The token is
   * kept with the contact: a later <tctoken> on a message to it is checked against it (tctoken_valid).
   */
  privacyToken (phone, body) {
    const c = this.store.contacts.get(phone)
    if (!c) throw httpError(404, 'no such contact')
    const b = body || {}
    const account = this.store.accounts.get(digits(b.to))
    if (!account) throw httpError(404, 'no such account')
    if (b.as !== undefined && b.as !== 'lid' && b.as !== 'pn') throw httpError(400, 'as must be "lid" or "pn"')
    const t = b.t === undefined ? now() : Number(b.t)
    if (!Number.isInteger(t) || t <= 0) throw httpError(400, 't must be a unix time (s)')
    let token
    if (b.token !== undefined) {
      token = Buffer.from(String(b.token), 'base64')
      if (!token.length || token.length > 1024) throw httpError(400, 'token must be 1..1024 bytes (base64)')
    } else token = randomBytes(32) // real tokens are opaque server-made bytes; the size is a guess
    const lid = (b.as ?? (c.lidMode ? 'lid' : 'pn')) === 'lid'
    c.tokensIssued ||= {}
    ;(c.tokensIssued[account.phone] ||= []).push({ token: token.toString('base64'), t })
    const attrs = { from: lid ? lidJid(c.lid) : pnJid(c.phone), ...(lid ? {} : { sender_lid: lidJid(c.lid) }) }
    const { id, devices } = this.notifyAccount(account, 'privacy_token', attrs, [node('tokens', {}, [
      node('token', { jid: lid ? lidJid(account.lid) : pnJid(account.phone), t: String(t), type: 'trusted_contact' }, token)
    ])])
    this.stats.privacy_token_notifications++
    this.store.save()
    return { token: token.toString('base64'), t, notification_id: id, devices }
  }

  /**
   * Fault reachout_timelock {seconds?|until?, enforcement_type?, active?, enforce?}: WhatsApp restricts the account
   * from reaching new contacts until a time, and says so with a mex notification (whatsmeow notification.go
   * handleMexNotification, events.NotifyAccountReachoutTimelock; Baileys messages-recv.js):
   * <notification from="@s.whatsapp.net" type="mex" id t><update op_name="NotificationUserReachoutTimelockUpdate">
   *   {"data":{"xwa2_notify_account_reachout_timelock":{"is_active":true,"time_enforcement_ends":"<unix s>",
   *   "enforcement_type":"BIZ_QUALITY"}}}</update></notification>
   * to every linked device. `active:false` lifts it. The state also answers Baileys' w:mex fetch; with
   * `enforce:true` messages to contacts the account never chatted with get ack error 463 until it ends.
   */
  reachoutTimelock (account, b) {
    const active = b.active !== false
    if (b.active !== undefined && typeof b.active !== 'boolean') throw httpError(400, 'active must be true or false')
    if (b.enforce !== undefined && typeof b.enforce !== 'boolean') throw httpError(400, 'enforce must be true or false')
    let ends = null
    if (active) {
      if (b.until !== undefined) {
        ends = Number(b.until)
        if (!Number.isInteger(ends) || ends <= 0) throw httpError(400, 'until must be a unix time (s)')
      } else {
        const secs = Number(b.seconds ?? 3600)
        if (!Number.isInteger(secs) || secs < 1 || secs > 1e8) throw httpError(400, 'seconds must be 1..1e8')
        ends = now() + secs
      }
    }
    const type = b.enforcement_type ?? (active ? 'BIZ_QUALITY' : 'DEFAULT')
    if (typeof type !== 'string' || !/^[A-Z0-9_]{1,80}$/.test(type)) throw httpError(400, 'enforcement_type must be an upper-case identifier')
    account.timelock = { active, ends, type, enforce: b.enforce === true, t: now() }
    const payload = { is_active: active, ...(active ? { time_enforcement_ends: String(ends) } : {}), enforcement_type: type }
    const { id, devices } = this.notifyAccount(account, 'mex', {}, [
      node('update', { op_name: 'NotificationUserReachoutTimelockUpdate' }, Buffer.from(JSON.stringify({ data: { xwa2_notify_account_reachout_timelock: payload } })))
    ])
    this.stats.reachout_timelock_notifications++
    this.log(`account ${account.phone}: reachout timelock ${JSON.stringify(account.timelock)} (notification ${id} to ${devices} device(s))`)
    return { ok: true, notification_id: id, devices, reachout_timelock: account.timelock }
  }

  // ------------------------------------------------------------------ accounts (control API)

  getAccount (phone) {
    const a = this.store.accounts.get(phone)
    if (!a) throw httpError(404, 'no such account')
    return {
      phone: a.phone,
      jid: pnJid(a.phone),
      lid: lidJid(a.lid),
      max_concurrent: a.maxConcurrent || 0,
      devices: [...a.devices.values()].map(d => {
        const conns = this.connsOf(a.phone, d.id)
        return {
          id: d.id,
          jid: pnJid(a.phone, d.id),
          lid: lidJid(a.lid, d.id),
          key_index: d.keyIndex,
          linked: !d.removed,
          removed: !!d.removed,
          removed_at: d.removedAt ?? null,
          removed_reason: d.removedReason ?? null,
          connected: conns.length > 0,
          open_connections: conns.length,
          max_concurrent: d.maxConcurrent || 0,
          prekeys: d.preKeys.size,
          platform: d.platform,
          last_seen: d.lastSeen,
          queued: (this.offlineQueue.get(`${a.phone}:${d.id}`) || []).length
        }
      }),
      reachout_timelock: a.timelock ?? null,
      privacy_tokens_issued: a.privacyTokensIssued || [],
      phone_inbox: this.phoneInbox.filter(m => m.account === a.phone)
    }
  }

  /**
   * POST /accounts/import {phone, device, noise_pub, identity_pub, registration_id, skey:{id,value,signature}, lid?,
   * platform?} (or an array of those): create a linked device directly, as if it had been paired, so scale tests
   * can link many accounts without a QR scan each. The client must hold the matching private keys (Noise key,
   * identity key, signed prekey) and use the returned JIDs as its own (`me`).
   */
  importDevices (body) {
    const many = Array.isArray(body)
    const list = many ? body : [body]
    if (!list.length || list.length > 10000) throw httpError(400, 'give 1..10000 devices')
    const out = []
    const usedNoise = new Set()
    for (const a of this.store.accounts.values()) for (const d of a.devices.values()) if (!d.removed) usedNoise.add(d.noisePub.toString('hex'))
    try {
      for (const [i, item] of list.entries()) {
        try {
          out.push(this.importDevice(item || {}, usedNoise))
        } catch (err) {
          if (many && err.status) err.message = `item ${i}: ${err.message}`
          throw err
        }
      }
    } finally {
      if (out.length) this.store.save() // those already created stay (they are valid links)
    }
    return many ? out : out[0]
  }

  importDevice (b, usedNoise) {
    const key32 = (v, what) => {
      if (typeof v !== 'string') throw httpError(400, `${what} missing (base64)`)
      let k = Buffer.from(v, 'base64')
      if (k.length === 33 && k[0] === 5) k = k.subarray(1) // Signal's 0x05-prefixed form
      if (k.length !== 32) throw httpError(400, `${what} must be 32 bytes`)
      return Buffer.from(k)
    }
    const phone = digits(b.phone)
    if (!validPhone(phone)) throw httpError(400, 'phone must be 7-15 digits, no leading 0')
    if (this.store.contacts.has(phone)) throw httpError(409, 'phone belongs to a contact')
    const deviceId = Number(b.device)
    if (!Number.isInteger(deviceId) || deviceId < 1 || deviceId > 999) throw httpError(400, 'device must be 1..999 (0 is the phone)')
    const noisePub = key32(b.noise_pub, 'noise_pub')
    const identityPub = key32(b.identity_pub, 'identity_pub')
    const registrationId = Number(b.registration_id)
    if (!Number.isInteger(registrationId) || registrationId < 0 || registrationId > 0xffffffff) throw httpError(400, 'registration_id must be a 32-bit unsigned integer')
    const sk = b.skey
    if (!sk || typeof sk !== 'object') throw httpError(400, 'skey {id, value, signature} missing')
    const skey = { id: Number(sk.id), value: key32(sk.value, 'skey.value'), signature: Buffer.from(String(sk.signature ?? ''), 'base64') }
    if (!Number.isInteger(skey.id) || skey.id < 0 || skey.id > 0xffffff) throw httpError(400, 'skey.id must be 0..2^24-1')
    if (skey.signature.length !== 64) throw httpError(400, 'skey.signature must be 64 bytes')
    if (!verifyXEdDSA(identityPub, Buffer.concat([Buffer.from([5]), skey.value]), skey.signature)) throw httpError(400, 'skey.signature does not verify with identity_pub')
    let lid = null
    if (b.lid !== undefined && b.lid !== null) {
      lid = String(b.lid).split('@')[0].split(':')[0]
      if (!/^[1-9][0-9]{5,20}$/.test(lid)) throw httpError(400, 'lid must be a LID user (digits), optionally as LID[:DEV]@lid')
    }
    let account = this.store.accounts.get(phone)
    if (account && lid && account.lid !== lid) throw httpError(409, `account ${phone} already has LID ${account.lid}`)
    if (!account && lid && this.store.findUser(lid, 'lid')) throw httpError(409, 'lid belongs to someone else')
    const existing = account?.devices.get(deviceId)
    if (existing && !existing.removed) throw httpError(409, `device ${phone}:${deviceId} is already linked`)
    if (usedNoise.has(noisePub.toString('hex'))) throw httpError(409, 'noise_pub is already used by a linked device')
    account ||= this.store.getOrCreateAccount(phone, lid)
    const keyIndex = account.nextKeyIndex++
    account.nextDevice = Math.max(account.nextDevice, deviceId + 1)
    // the ADV identity the phone would have signed for this device (as in pair-success), for the client's creds
    const details = proto.ADVDeviceIdentity.encode({
      rawId: randomInt(1, 2 ** 31), timestamp: now(), keyIndex, accountType: proto.ADVEncryptionType.E2EE, deviceType: proto.ADVEncryptionType.E2EE
    }).finish()
    const accountSignature = Buffer.from(Curve.sign(account.accountKey.private, Buffer.concat([ADV_ACCOUNT_SIG_PREFIX, details, identityPub])))
    const signed = proto.ADVSignedDeviceIdentity.encode({ details, accountSignatureKey: account.accountKey.public, accountSignature }).finish()
    account.devices.set(deviceId, {
      id: deviceId,
      keyIndex,
      noisePub,
      identityPub,
      registrationId,
      skey,
      preKeys: new Map(),
      platform: b.platform ?? null,
      os: null,
      removed: false,
      linkedAt: now(),
      imported: true,
      maxConcurrent: 0,
      lastSeen: null
    })
    usedNoise.add(noisePub.toString('hex'))
    this.stats.imports++
    return {
      device_jid: pnJid(phone, deviceId),
      lid: lidJid(account.lid, deviceId),
      phone,
      device: deviceId,
      key_index: keyIndex,
      account_signature_key: Buffer.from(account.accountKey.public).toString('base64'),
      adv_signed_device_identity: Buffer.from(signed).toString('base64')
    }
  }

  /** POST /accounts/:phone/unlink {device}: the phone removes a linked device. */
  unlink (phone, body) {
    const a = this.store.accounts.get(phone)
    if (!a) throw httpError(404, 'no such account')
    const dev = a.devices.get(Number(body?.device))
    if (!dev) throw httpError(404, 'no such device')
    this.removeDevice(a, dev, 'unlinked_by_phone')
    const conns = this.connsOf(phone, dev.id)
    for (const c of conns) c.streamError({ code: '401' }, [node('conflict', { type: 'device_removed' })])
    this.log(`unlinked ${pnJid(phone, dev.id)} (${conns.length} connection(s) told 401 device_removed)`)
    return { ok: true, device: dev.id, connections_closed: conns.length }
  }

  // ------------------------------------------------------------------ fault injection

  /**
   * Use one of a queued fault's `times` (ack_error, bad_ciphertext, retry_request). With `bindKey` (retry_request:
   * 'msgid|phone:dev') the fault sticks to the first message and device it hit, so `times:N` makes that device
   * refuse the same message N times in a row (its resends included) while other devices accept it.
   */
  useFault (deviceKey, type, pred = () => true, bindKey) {
    const list = this.pendingFaults.get(deviceKey)
    const i = list ? list.findIndex(f => f.type === type && pred(f) && (!bindKey || !f.bound || f.bound === bindKey)) : -1
    if (i < 0) return null
    const f = list[i]
    if (bindKey) f.bound = bindKey
    if (--f.times <= 0) list.splice(i, 1)
    if (!list.length) this.pendingFaults.delete(deviceKey)
    return f
  }

  /** ':jid' of the fault route: PHONE:DEV@s.whatsapp.net, PHONE:DEV, PHONE (device 0 is not a companion), LID:DEV@lid. */
  resolveDevice (jid) {
    const d = jidDecode(jid.includes('@') ? jid : `${jid}@s.whatsapp.net`)
    if (!d?.user) throw httpError(400, 'bad jid')
    let phone = d.user
    if (d.server === 'lid') {
      const owner = this.store.findUser(d.user, 'lid')
      if (owner?.kind !== 'account') throw httpError(404, 'no such account')
      phone = owner.obj.phone
    }
    const a = this.store.accounts.get(phone)
    const dev = a?.devices.get(d.device || 0)
    if (!dev) throw httpError(404, 'no such device')
    return { a, dev, phone }
  }

  /**
   * Validate a connection-ending fault: {type:'failure', code, expire?, ban_code?, attrs?} or
   * {type:'stream_error', code} or {type:'drop'|'stall'}. Returns what applyConnFault needs.
   */
  connFaultSpec (type, code, b) {
    if (type === 'failure') {
      const reason = Number(code ?? 401)
      if (!Number.isInteger(reason) || reason < 100 || reason > 999) throw httpError(400, 'failure code must be an integer 100..999')
      const attrs = {}
      if (b.attrs !== undefined) {
        if (typeof b.attrs !== 'object' || b.attrs === null || Array.isArray(b.attrs)) throw httpError(400, 'attrs must be an object')
        for (const [k, v] of Object.entries(b.attrs)) attrs[k] = String(v)
      }
      if (b.expire !== undefined) {
        if (!Number.isInteger(Number(b.expire)) || Number(b.expire) < 0) throw httpError(400, 'expire must be a number of seconds')
        attrs.expire = String(Number(b.expire))
      }
      // 402 = temporary ban: whatsmeow reads the ban reason from `code` (101..106) and its length from `expire` (s)
      if (b.ban_code !== undefined || (reason === 402 && attrs.code === undefined)) attrs.code = String(b.ban_code ?? 101)
      return { type, code: reason, attrs }
    }
    if (type === 'stream_error') {
      const named = ['conflict', 'replaced', 'device_removed', 'xmlstreamend']
      if (code === undefined || code === null) code = 500
      if (!named.includes(code) && !(Number.isInteger(Number(code)) && Number(code) >= 100 && Number(code) <= 999)) {
        throw httpError(400, `stream_error code must be a number or one of ${named.join('|')}`)
      }
      return { type, code: named.includes(code) ? code : Number(code) }
    }
    return { type }
  }

  /** Apply a connection-ending fault to one connection. */
  applyConnFault (c, f) {
    switch (f.type) {
      case 'failure':
        return this.sendFailure(c, f.code, f.attrs)
      case 'stream_error':
        if (f.code === 'conflict' || f.code === 'replaced') {
          this.stats.conflicts_sent++
          return c.streamError({}, [node('conflict', { type: 'replaced' })])
        }
        if (f.code === 401 || f.code === 'device_removed') return c.streamError({ code: '401' }, [node('conflict', { type: 'device_removed' })])
        if (f.code === 'xmlstreamend') {
          c.send(node('xmlstreamend', {}))
          setTimeout(() => c.close(), 50)
          return
        }
        return c.streamError({ code: String(f.code) })
      case 'drop':
        return c.drop()
      case 'stall':
        c.stalled = true
    }
  }

  /** A fault armed with on:"next_login" for this device, if any (each use counts down its `times`). */
  takeLoginFault (deviceKey) {
    const list = this.pendingFaults.get(deviceKey)
    const i = list ? list.findIndex(f => f.type === 'next_login') : -1
    if (i < 0) return null
    const f = list[i]
    if (--f.times <= 0) list.splice(i, 1)
    if (!list.length) this.pendingFaults.delete(deviceKey)
    return f.spec
  }

  /** POST /devices/:jid/fault {type, code?, on?, …} */
  fault (jid, body) {
    const { dev, phone } = this.resolveDevice(jid)
    const key = `${phone}:${dev.id}`
    const b = body || {}
    let { type, code } = b
    if (type === 'xmlstreamend') { type = 'stream_error'; code = 'xmlstreamend' }
    const on = b.on ?? 'now'
    if (on !== 'now' && on !== 'next_login') throw httpError(400, 'on must be "now" or "next_login"')
    const conns = this.connsOf(phone, dev.id)
    const needConn = () => { if (!conns.length) throw httpError(409, 'device not connected (arm it with "on":"next_login")') }
    if (on === 'next_login') {
      if (!['failure', 'stream_error', 'drop', 'stall'].includes(type)) throw httpError(400, 'on:"next_login" takes failure|stream_error|xmlstreamend|drop|stall')
      const spec = this.connFaultSpec(type, code, b)
      const times = Number(b.times ?? 1)
      if (!Number.isInteger(times) || times < 1 || times > 1000) throw httpError(400, 'times must be 1..1000')
      const list = this.pendingFaults.get(key) || []
      list.push({ type: 'next_login', spec, times })
      this.pendingFaults.set(key, list)
      this.stats.faults_injected++
      return { ok: true, on: 'next_login', times, pending: list.length }
    }
    switch (type) {
      case 'ack_error':
      case 'no_ack':
      case 'bad_ciphertext':
      case 'retry_request': {
        const times = Number(b.times ?? 1)
        if (!Number.isInteger(times) || times < 1 || times > 1000) throw httpError(400, 'times must be 1..1000')
        if (type === 'ack_error' && code !== undefined && !(Number.isInteger(Number(code)) && Number(code) >= 100 && Number(code) <= 999)) throw httpError(400, 'ack_error code must be 100..999')
        const cdev = b.device === undefined ? undefined : Number(b.device)
        if (cdev !== undefined && !(Number.isInteger(cdev) && cdev >= 0 && cdev <= 99)) throw httpError(400, 'device must be a contact device number')
        const list = this.pendingFaults.get(key) || []
        list.push({ type, code: code ?? (type === 'ack_error' ? 479 : undefined), target: b.target === 'contact' ? 'contact' : 'phone', device: cdev, times })
        this.pendingFaults.set(key, list)
        this.stats.faults_injected++
        return { ok: true, pending: list.length, times }
      }
      case 'reachout_timelock': {
        this.stats.faults_injected++
        return this.reachoutTimelock(this.store.accounts.get(phone), b)
      }
      case 'stream_error':
      case 'failure':
      case 'drop':
      case 'stall': {
        const spec = this.connFaultSpec(type, code, b)
        needConn()
        this.stats.faults_injected++
        for (const c of conns) this.applyConnFault(c, spec)
        return { ok: true, connections: conns.length }
      }
      case 'garbage':
        needConn()
        this.stats.faults_injected++
        for (const c of conns) c.sendGarbage()
        return { ok: true, connections: conns.length }
      case 'drain_prekeys': {
        this.stats.faults_injected++
        // test aid: drop the device's prekey stock to `keep` (lowest ids go first), as if contacts had
        // fetched them, and send the low-count notification when it falls below 5
        const keep = Math.max(0, Number(b.keep ?? 0))
        const ids = [...dev.preKeys.keys()].sort((x, y) => x - y)
        for (const id of ids.slice(0, Math.max(0, ids.length - keep))) dev.preKeys.delete(id)
        dev.lowNotified = false
        if (dev.preKeys.size < LOW_PREKEYS) {
          dev.lowNotified = true
          const n = node('notification', { from: S_WHATSAPP_NET, type: 'encrypt', id: this.nextId('enc'), t: String(now()) }, [node('count', { value: String(dev.preKeys.size) })])
          for (const c of conns) c.send(n)
        }
        this.store.save()
        return { ok: true, prekeys: dev.preKeys.size }
      }
      default:
        throw httpError(400, 'type must be stream_error|xmlstreamend|failure|drop|stall|garbage|ack_error|no_ack|bad_ciphertext|retry_request|drain_prekeys|reachout_timelock')
    }
  }
}

function iqResult (iq, content) {
  return node('iq', { id: iq.attrs.id, type: 'result', from: S_WHATSAPP_NET }, content)
}
function iqError (iq, code, text) {
  return node('iq', { id: iq.attrs.id, type: 'error', from: S_WHATSAPP_NET }, [node('error', { code: String(code), text })])
}
function skeyNode (sk) {
  return node('skey', {}, [node('id', {}, u24(sk.id)), node('value', {}, sk.value), node('signature', {}, sk.signature)])
}
function parseSkey (sk) {
  return {
    id: readUInt(getBinaryNodeChildBuffer(sk, 'id')),
    value: Buffer.from(getBinaryNodeChildBuffer(sk, 'value')),
    signature: Buffer.from(getBinaryNodeChildBuffer(sk, 'signature'))
  }
}
function pick (o, keys) {
  const r = {}
  for (const k of keys) if (o?.[k] !== undefined) r[k] = o[k]
  return r
}
