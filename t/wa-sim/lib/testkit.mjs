// Test helpers: spawn the simulator as a child process on port 0, talk to its control API.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import readline from 'node:readline'

export const SIM_BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'wa-sim.mjs')

/** Spawn wa-sim; resolves with { info, proc, ctl(method, path, body), stop(), stderr() } */
export async function startSim (extraArgs = [], { timeoutMs = 15000 } = {}) {
  // WA_SIM_NODE_ARGS: extra node options for the simulator process (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")
  const nodeArgs = process.env.WA_SIM_NODE_ARGS ? process.env.WA_SIM_NODE_ARGS.split(' ').filter(Boolean) : []
  const proc = spawn(process.execPath, [...nodeArgs, SIM_BIN, '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let err = ''
  proc.stderr.on('data', (d) => {
    err += d
    if (err.length > 4e6) err = err.slice(-2e6)
    if (process.env.WA_SIM_DEBUG) process.stderr.write(d)
  })
  const rl = readline.createInterface({ input: proc.stdout })
  const extraStdout = []
  const info = await new Promise((resolve, reject) => {
    const t = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error('wa-sim did not become ready; stderr:\n' + err)) }, timeoutMs)
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`wa-sim exited early (${code}); stderr:\n${err}`)) })
    rl.once('line', (line) => { clearTimeout(t); resolve(JSON.parse(line)) })
  })
  rl.on('line', (line) => extraStdout.push(line))
  proc.removeAllListeners('exit')
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))
  const ctl = async (method, p, body) => {
    const res = await fetch(info.control_url + p, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(10000)
    })
    const json = await res.json()
    return { status: res.status, body: json }
  }
  return {
    info,
    proc,
    ctl,
    extraStdout,
    exited,
    stderr: () => err,
    async stop () {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000)
      const r = await exited
      clearTimeout(t)
      return r
    }
  }
}

export const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

/** Poll fn() until it returns a truthy value or timeout. */
export async function waitFor (fn, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs
  let last
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last } catch (e) { last = e }
    await sleep(intervalMs)
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`)
}

// ---------------------------------------------------------------------------------------------
// A real Baileys client pointed at the simulator (used by the conformance tests).
import makeWASocketDefault, * as B from 'baileys'
import pino from 'pino'

import libsignalCurve from 'libsignal/src/curve.js'

const makeWASocket = B.makeWASocket || makeWASocketDefault

/**
 * Baileys rc14's Curve.verify (Utils/crypto.js) returns true whenever libsignal's verifySignature does
 * not throw, but libsignal 6 *returns* false for a bad signature instead of throwing. So stock Baileys
 * accepts any certificate chain and any pair-success account signature. This makes it strict
 * (a real XEdDSA check), so the conformance test really checks the simulator's signatures.
 * Baileys' noise handler and validate-connection read Curve.verify from this same exported object.
 */
export const stockCurveVerify = B.Curve.verify
export function strictCurveVerify () {
  B.Curve.verify = (pubKey, message, signature) => {
    try {
      return libsignalCurve.verifySignature(B.generateSignalPubKey(pubKey), message, signature) === true
    } catch {
      return false
    }
  }
}
export function stockBaileysVerify () { B.Curve.verify = stockCurveVerify }

/** Resolve with the close status code, or reject after ms. */
export function closedWithin (h, ms = 15000) {
  let t
  return Promise.race([
    h.closed.finally(() => clearTimeout(t)),
    new Promise((resolve, reject) => { t = setTimeout(() => reject(new Error(`client did not close within ${ms} ms`)), ms) })
  ])
}

/** In-memory auth state that survives socket re-creation (and simulator restarts). */
export function memoryAuth () {
  const creds = B.initAuthCreds()
  const data = {}
  const keys = {
    get: async (type, ids) => {
      const out = {}
      for (const id of ids) {
        let v = data[`${type}/${id}`]
        if (v && type === 'app-state-sync-key') v = B.proto.Message.AppStateSyncKeyData.fromObject(v)
        out[id] = v
      }
      return out
    },
    set: async (d) => {
      for (const type in d) {
        for (const id in d[type]) {
          const v = d[type][id]
          if (v === null || v === undefined) delete data[`${type}/${id}`]
          else data[`${type}/${id}`] = v
        }
      }
    }
  }
  return { creds, keys, data }
}

/**
 * Start a Baileys socket against the simulator. Returns a handle that records events:
 * h.updates (connection.update), h.upserts (messages.upsert messages), h.msgUpdates (messages.update),
 * h.closed (promise of the close status code).
 */
export function startClient ({ info, auth, name = 'client', rootKey, sent = new Map(), opts = {} }) {
  // Trust the simulator's root key (same module instance as Baileys' noise handler reads).
  B.WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(rootKey || info.root_key, 'base64')
  const logger = pino({ level: process.env.WA_SIM_CLIENT_LOG || 'silent', name }, pino.destination(2))
  const sock = makeWASocket({
    auth: { creds: auth.creds, keys: auth.keys },
    waWebSocketUrl: info.ws_url,
    logger,
    version: [2, 3000, 1043857760],
    browser: B.Browsers.macOS('Chrome'),
    connectTimeoutMs: 10000,
    defaultQueryTimeoutMs: 15000,
    markOnlineOnConnect: false,
    syncFullHistory: false,
    shouldSyncHistoryMessage: () => false,
    getMessage: async (key) => sent.get(key.id),
    ...opts
  })
  const h = { sock, updates: [], upserts: [], msgUpdates: [], qrs: [], sent }
  let resolveClosed
  h.closed = new Promise(resolve => { resolveClosed = resolve })
  sock.ev.on('creds.update', (u) => Object.assign(auth.creds, u))
  sock.ev.on('connection.update', (u) => {
    h.updates.push(u)
    if (u.qr) h.qrs.push(u.qr)
    if (u.connection === 'close') {
      h.closeError = u.lastDisconnect?.error
      resolveClosed(u.lastDisconnect?.error?.output?.statusCode ?? -1)
      // a socket that ends while its event buffer is active leaves a 30 s timer behind
      // (Utils/event-buffer.js BUFFER_TIMEOUT_MS) that would keep the test process alive
      for (const ms of [0, 100, 500]) setTimeout(() => sock.ev.flush(), ms).unref()
    }
  })
  sock.ev.on('messages.upsert', ({ messages }) => h.upserts.push(...messages))
  sock.ev.on('messages.update', (ups) => { for (const u of ups) { u.at = Date.now(); h.msgUpdates.push(u) } })
  h.isOpen = () => h.updates.some(u => u.connection === 'open')
  h.end = () => { try { sock.end(undefined) } catch {} }
  return h
}

/**
 * Baileys rc14 leaves a 30 s timer behind after every prekey upload (Socket/socket.js uploadPreKeys:
 * the UPLOAD_TIMEOUT race timer is never cleared), which keeps a finished test process alive for 30 s.
 * Call this from an after() hook: once the tests are done, exit if only such timers remain.
 */
export function exitWhenDone () {
  setTimeout(() => process.exit(process.exitCode ?? 0), 300).unref()
}

/** Pair a fresh Baileys client by QR as `phone`, restart on 515, and wait until it is open. */
export async function pairAndLogin (sim, phone, { opts = {}, sent = new Map() } = {}) {
  const auth = memoryAuth()
  const c = startClient({ info: sim.info, auth, sent, opts })
  await waitFor(() => c.qrs.length, { what: 'QR' })
  const r = await sim.ctl('POST', '/scan', { qr: c.qrs[0], phone })
  if (r.status !== 200) throw new Error(`scan failed: ${JSON.stringify(r.body)}`)
  const code = await closedWithin(c)
  if (code !== 515) throw new Error(`expected 515 after pairing, got ${code}`)
  const h = startClient({ info: sim.info, auth, sent, opts })
  await waitFor(() => h.isOpen(), { what: 'open after pairing' })
  return { auth, h, sent, deviceJid: r.body.device_jid, relogin: (o = {}) => startClient({ info: sim.info, auth, sent, opts: { ...opts, ...o } }) }
}

// ---------------------------------------------------------------------------------------------
// A raw client (no Baileys): Noise initiator + binary nodes + a libsignal device, for stanzas Baileys rc14
// cannot produce (whatsmeow's LID-first sends with peer_recipient_pn, phash, tctoken, stanzas without
// <device-identity>) and for exact control of what is acknowledged (receipts, passive active).
import WebSocket from 'ws'
import { randomBytes } from 'node:crypto'
import { SignalDevice, peerAddress } from './signal-device.mjs'

const WA_INTRO = Buffer.from([0x57, 0x41, 6, 3])
const gcmIv = (n) => { const b = Buffer.alloc(12); b.writeUInt32BE(n, 8); return b }
const frame3 = (p) => { const b = Buffer.alloc(3 + p.length); b.writeUIntBE(p.length, 0, 3); Buffer.from(p).copy(b, 3); return b }
const u24b = (n) => B.encodeBigEndian(n, 3)
const readU = (buf) => { let n = 0; for (const x of buf || []) n = n * 256 + x; return n }

/**
 * Create a linked device for `phone` with POST /accounts/import (keys made here) and return a raw client
 * factory for it: `await raw.connect()` logs in and resolves with a connection
 * {send(node), waitFor(pred, ms), query(iq), nodes, close()}. The device's Signal state lives in `raw.signal`
 * (libsignal, the simulator's own SignalDevice), `raw.deviceIdentity` is its ADVSignedDeviceIdentity with the
 * device signature (what a client puts in <device-identity>).
 */
export async function rawDevice (sim, { phone, device = 1, lid } = {}) {
  const noise = B.Curve.generateKeyPair()
  const signal = SignalDevice.create({ preKeys: 20 })
  const r = await sim.ctl('POST', '/accounts/import', {
    phone,
    device,
    noise_pub: noise.public.toString('base64'),
    identity_pub: Buffer.from(signal.identity.pubKey).toString('base64'),
    registration_id: signal.registrationId,
    skey: {
      id: signal.signedPreKey.keyId,
      value: Buffer.from(signal.signedPreKey.keyPair.pubKey).toString('base64'),
      signature: Buffer.from(signal.signedPreKey.signature).toString('base64')
    },
    ...(lid ? { lid } : {})
  })
  if (r.status !== 200) throw new Error(`import failed: ${JSON.stringify(r.body)}`)
  const adv = B.proto.ADVSignedDeviceIdentity.decode(Buffer.from(r.body.adv_signed_device_identity, 'base64'))
  const identity32 = Buffer.from(signal.identity.pubKey).subarray(1)
  adv.deviceSignature = Buffer.from(B.Curve.sign(signal.identity.privKey,
    Buffer.concat([Buffer.from([6, 1]), adv.details, identity32, adv.accountSignatureKey])))
  const raw = {
    phone,
    device,
    jid: r.body.device_jid,
    lidJid: r.body.lid, // LID:DEV@lid
    lid: r.body.lid.split(':')[0].split('@')[0],
    signal,
    noise,
    deviceIdentity: Buffer.from(B.proto.ADVSignedDeviceIdentity.encode(adv).finish()),
    connect: (o) => rawConnect(sim, raw, o)
  }
  return raw
}

async function rawConnect (sim, raw, { passive = true } = {}) {
  const ws = new WebSocket(sim.info.ws_url)
  const msgs = []
  let wake = null
  ws.on('message', (d) => { msgs.push(Buffer.from(d)); if (wake) { const w = wake; wake = null; w() } })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const nextRaw = () => msgs.length ? Promise.resolve(msgs.shift()) : new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no frame from the server')), 5000)
    wake = () => { clearTimeout(t); resolve(msgs.shift()) }
  })
  // Noise XX initiator (wa-protocol.md §2)
  const e = B.Curve.generateKeyPair()
  const st = { h: Buffer.from(B.NOISE_MODE), n: 0 }
  st.ck = st.h; st.k = st.h
  const mixHash = (d) => { st.h = B.sha256(Buffer.concat([st.h, d])) }
  const mixKey = (ikm) => { const o = B.hkdf(Buffer.from(ikm), 64, { salt: st.ck, info: '' }); st.ck = Buffer.from(o.subarray(0, 32)); st.k = Buffer.from(o.subarray(32)); st.n = 0 }
  const dec = (c) => { const p = B.aesDecryptGCM(c, st.k, gcmIv(st.n++), st.h); mixHash(c); return p }
  const enc = (p) => { const c = B.aesEncryptGCM(p, st.k, gcmIv(st.n++), st.h); mixHash(c); return c }
  mixHash(WA_INTRO); mixHash(e.public)
  ws.send(Buffer.concat([WA_INTRO, frame3(B.proto.HandshakeMessage.encode({ clientHello: { ephemeral: e.public } }).finish())]))
  const { serverHello } = B.proto.HandshakeMessage.decode((await nextRaw()).subarray(3))
  mixHash(serverHello.ephemeral)
  mixKey(B.Curve.sharedKey(e.private, serverHello.ephemeral))
  const serverStatic = dec(serverHello.static)
  mixKey(B.Curve.sharedKey(e.private, serverStatic))
  dec(serverHello.payload)
  const payload = B.proto.ClientPayload.encode({
    username: Number(raw.phone),
    device: raw.device,
    passive,
    pull: true,
    connectType: 1,
    connectReason: 1,
    userAgent: { platform: 14, appVersion: { primary: 2, secondary: 3000, tertiary: 1047769893 }, releaseChannel: 0, osVersion: '0.1', device: 'Desktop', osBuildNumber: '0.1', mcc: '000', mnc: '000', localeLanguageIso6391: 'en', localeCountryIso31661Alpha2: 'US' },
    webInfo: { webSubPlatform: 0 }
  }).finish()
  const encStatic = enc(raw.noise.public)
  mixKey(B.Curve.sharedKey(raw.noise.private, serverHello.ephemeral))
  const encPayload = enc(payload)
  ws.send(frame3(B.proto.HandshakeMessage.encode({ clientFinish: { static: encStatic, payload: encPayload } }).finish()))
  const o = B.hkdf(Buffer.alloc(0), 64, { salt: st.ck, info: '' })
  const wKey = Buffer.from(o.subarray(0, 32)); const rKey = Buffer.from(o.subarray(32))
  let wN = 0; let rN = 0
  const c = {
    raw,
    ws,
    nodes: [], // every node received, in order
    closed: false,
    send (n) { ws.send(frame3(B.aesEncryptGCM(B.encodeBinaryNode(n), wKey, gcmIv(wN++), Buffer.alloc(0)))) },
    /** Resolve with the first received node (from the start of the connection) that matches and was not taken yet. */
    waitFor (pred, ms = 5000, what = 'node') {
      const t0 = Date.now()
      return new Promise((resolve, reject) => {
        const tick = () => {
          const n = c.nodes.find(x => !x.taken && pred(x))
          if (n) { n.taken = true; return resolve(n) }
          if (Date.now() - t0 > ms) return reject(new Error(`raw client: no ${what} within ${ms} ms; got ${c.nodes.map(x => x.tag + JSON.stringify(x.attrs)).join(' ')}`))
          setTimeout(tick, 10)
        }
        tick()
      })
    },
    async query (iq) {
      iq.attrs.id ||= 'raw-' + randomBytes(4).toString('hex')
      c.send(iq)
      return c.waitFor(n => n.tag === 'iq' && n.attrs.id === iq.attrs.id && (n.attrs.type === 'result' || n.attrs.type === 'error'), 5000, `answer to iq ${iq.attrs.id}`)
    },
    close () { c.closed = true; try { ws.close() } catch {} }
  }
  ws.on('close', () => { c.closed = true })
  // reader: every WS message after the handshake is one transport frame
  const pump = async () => {
    for (;;) {
      let m
      try { m = await nextRaw() } catch { if (c.closed) return; continue }
      try {
        const n = await B.decodeBinaryNode(B.aesDecryptGCM(m.subarray(3), rKey, gcmIv(rN++), Buffer.alloc(0)))
        n.at = Date.now()
        c.nodes.push(n)
      } catch { return }
    }
  }
  pump()
  const first = await c.waitFor(n => n.tag === 'success' || n.tag === 'failure', 5000, 'login answer')
  if (first.tag !== 'success') throw new Error(`raw login failed: ${JSON.stringify(first.attrs)}`)
  return c
}

/** Upload the raw device's one-time prekeys (what every client does at its first login). */
export async function rawUploadPreKeys (c) {
  const s = c.raw.signal
  const keys = [...s.preKeys.entries()].map(([id, kp]) => ({ tag: 'key', attrs: {}, content: [
    { tag: 'id', attrs: {}, content: u24b(id) }, { tag: 'value', attrs: {}, content: Buffer.from(kp.pubKey).subarray(1) }] }))
  return c.query({ tag: 'iq', attrs: { xmlns: 'encrypt', type: 'set', to: '@s.whatsapp.net' }, content: [
    { tag: 'registration', attrs: {}, content: B.encodeBigEndian(s.registrationId, 4) },
    { tag: 'type', attrs: {}, content: Buffer.from([5]) },
    { tag: 'identity', attrs: {}, content: Buffer.from(s.identity.pubKey).subarray(1) },
    { tag: 'list', attrs: {}, content: keys },
    { tag: 'skey', attrs: {}, content: [
      { tag: 'id', attrs: {}, content: u24b(s.signedPreKey.keyId) },
      { tag: 'value', attrs: {}, content: Buffer.from(s.signedPreKey.keyPair.pubKey).subarray(1) },
      { tag: 'signature', attrs: {}, content: Buffer.from(s.signedPreKey.signature) }] }
  ] })
}

/** Fetch prekey bundles for device JIDs and build a Signal session with each (address = the JID string). */
export async function rawSessions (c, jids) {
  const res = await c.query({ tag: 'iq', attrs: { xmlns: 'encrypt', type: 'get', to: '@s.whatsapp.net' }, content: [
    { tag: 'key', attrs: {}, content: jids.map(jid => ({ tag: 'user', attrs: { jid, reason: 'identity' } })) }] })
  for (const u of B.getBinaryNodeChildren(B.getBinaryNodeChild(res, 'list'), 'user')) {
    const buf = (n, t) => Buffer.from(B.getBinaryNodeChildBuffer(n, t))
    const sk = B.getBinaryNodeChild(u, 'skey')
    const k = B.getBinaryNodeChild(u, 'key')
    await c.raw.signal.initSession(rawAddr(u.attrs.jid), {
      registrationId: readU(buf(u, 'registration')),
      identity: buf(u, 'identity'),
      skey: { id: readU(buf(sk, 'id')), value: buf(sk, 'value'), signature: buf(sk, 'signature') },
      key: k ? { id: readU(buf(k, 'id')), value: buf(k, 'value') } : undefined
    })
  }
}
/** The raw client's Signal address for a device JID ("user[:dev]@server"). */
export const rawAddr = (jid) => {
  const d = B.jidDecode(jid)
  return peerAddress(`${d.user}_${d.server}`, d.device || 0)
}

/**
 * The whatsmeow participant list hash (send.go participantListHashV2): "2:" + unpadded base64 of the first 6
 * bytes of SHA-256 over the sorted "user.0:device@server" strings.
 */
export function phashV2 (jids) {
  const list = jids.map(j => { const d = B.jidDecode(j); return `${d.user}.0:${d.device || 0}@${d.server}` }).sort()
  return '2:' + B.sha256(Buffer.from(list.join(''))).subarray(0, 6).toString('base64').replace(/=+$/, '')
}

/**
 * Build (not send) a 1:1 text message as whatsmeow does: `<message id to type="text" [peer_recipient_pn]
 * [phash]><participants><to jid><enc v="2" type/></to>…</participants><device-identity/>?<tctoken/>?</message>`;
 * own devices (same user as the raw device) get the deviceSentMessage. `devices`: device JIDs to encrypt for.
 * `message`: send this proto.Message (e.g. `{documentMessage}`) instead of the text; `mediatype` then goes on every
 * `<enc>` and the stanza's type is "media" (whatsmeow send.go getTypeFromMessage / getMediaTypeFromMessage).
 */
export async function rawTextMessage (c, { to, devices, text, message: msgIn, mediatype, id, peerRecipientPn, phash, tctoken, deviceIdentity = 'auto', chat }) {
  const own = new Set([c.raw.phone, c.raw.lid])
  const participants = []
  let pk = false
  for (const jid of devices) {
    const isOwn = own.has(B.jidDecode(jid).user)
    const inner = msgIn ?? { conversation: text }
    const message = isOwn
      ? { deviceSentMessage: { destinationJid: chat || to, message: inner } }
      : inner
    const e = await c.raw.signal.encrypt(rawAddr(jid), message)
    if (e.type === 'pkmsg') pk = true
    participants.push({ tag: 'to', attrs: { jid }, content: [{ tag: 'enc', attrs: { v: '2', type: e.type, ...(mediatype ? { mediatype } : {}) }, content: e.ciphertext }] })
  }
  const content = [{ tag: 'participants', attrs: {}, content: participants }]
  if (deviceIdentity === true || (deviceIdentity === 'auto' && pk)) content.push({ tag: 'device-identity', attrs: {}, content: c.raw.deviceIdentity })
  if (tctoken) content.push({ tag: 'tctoken', attrs: {}, content: Buffer.from(tctoken, 'base64') })
  const attrs = { id: id || '3EB0' + randomBytes(9).toString('hex').toUpperCase(), to, type: msgIn ? 'media' : 'text' }
  if (peerRecipientPn) attrs.peer_recipient_pn = peerRecipientPn
  if (phash) attrs.phash = phash
  return { tag: 'message', attrs, content }
}
