// Test helpers: spawn the simulator as a child process on port 0, talk to its control API.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import readline from 'node:readline'

export const SIM_BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'wa-sim.mjs')

/** Spawn wa-sim; resolves with { info, proc, ctl(method, path, body), stop(), stderr() } */
export async function startSim (extraArgs = [], { timeoutMs = 15000 } = {}) {
  const proc = spawn(process.execPath, [SIM_BIN, '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', ...extraArgs], {
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
