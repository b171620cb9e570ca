#!/usr/bin/env node
// wa-sim: test WhatsApp server. Prints one JSON line on stdout when ready; logs go to stderr.
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs'
import { parseArgs, format } from 'node:util'
import { startWsServer } from '../lib/server.mjs'
import { startControlServer } from '../lib/control.mjs'
import { Sim } from '../lib/sim.mjs'
import { genKeys, keysToJSON, keysFromJSON, makeCertChain } from '../lib/noise.mjs'
import { MediaHost, DEFAULT_MAX_BYTES } from '../lib/media.mjs'

const usage = `usage: wa-sim.mjs --listen HOST:PORT --control HOST:PORT [--tls CERT,KEY] [--key-file F] [--state F]
       [--qr-first-ttl SEC] [--qr-next-ttl SEC] [--min-version P.S.T] [--passkey] [--no-edge-routing]
       [--bench-sample N] [--no-read-receipts] [--receipt-lists] [--ack-phash client|always|never]
       [--media-dir DIR [--media-listen HOST:PORT] [--media-max-bytes N]] [--verbose]`

let args
try {
  args = parseArgs({
    options: {
      listen: { type: 'string', default: '127.0.0.1:0' },
      control: { type: 'string', default: '127.0.0.1:0' },
      tls: { type: 'string' },
      'key-file': { type: 'string' },
      state: { type: 'string' },
      'qr-first-ttl': { type: 'string', default: '60' },
      'qr-next-ttl': { type: 'string', default: '20' },
      'min-version': { type: 'string' },
      passkey: { type: 'boolean', default: false },
      'no-edge-routing': { type: 'boolean', default: false },
      'bench-sample': { type: 'string', default: '0' },
      'no-read-receipts': { type: 'boolean', default: false },
      'receipt-lists': { type: 'boolean', default: false },
      'ack-phash': { type: 'string', default: 'client' },
      'media-dir': { type: 'string' },
      'media-listen': { type: 'string', default: '127.0.0.1:0' },
      'media-max-bytes': { type: 'string', default: String(DEFAULT_MAX_BYTES) },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    }
  }).values
} catch (err) {
  process.stderr.write(`${err.message}\n${usage}\n`)
  process.exit(2)
}
if (args.help) { process.stderr.write(usage + '\n'); process.exit(0) }

const log = (msg) => process.stderr.write(`[wa-sim ${new Date().toISOString()}] ${msg}\n`)
const hostPort = (s, what) => {
  const i = s.lastIndexOf(':')
  const port = Number(s.slice(i + 1))
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`bad --${what} ${s}\n${usage}\n`); process.exit(2)
  }
  return { host: s.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1', port }
}

function atomicWrite (file, data) {
  const tmp = `${file}.tmp.${process.pid}`
  writeFileSync(tmp, data, { mode: 0o600 })
  renameSync(tmp, file)
}

// keys: root / intermediate / server static. Persisted with --key-file, so a client that trusts the
// root (and remembers nothing else) keeps connecting after a restart.
let keys
const keyFile = args['key-file']
if (keyFile && existsSync(keyFile)) {
  keys = keysFromJSON(JSON.parse(readFileSync(keyFile, 'utf8')))
} else {
  keys = genKeys()
  if (keyFile) atomicWrite(keyFile, JSON.stringify(keysToJSON(keys), null, 1))
}
const certChain = makeCertChain(keys)

if (args['min-version'] !== undefined && !/^\d+\.\d+\.\d+$/.test(args['min-version'])) {
  process.stderr.write(`bad --min-version ${args['min-version']} (want e.g. 2.3000.1047769893)\n${usage}\n`); process.exit(2)
}
const benchSample = Number(args['bench-sample'])
if (!Number.isInteger(benchSample) || benchSample < 0 || benchSample > 1000) {
  process.stderr.write(`bad --bench-sample ${args['bench-sample']} (0..1000)\n${usage}\n`); process.exit(2)
}
if (!['client', 'always', 'never'].includes(args['ack-phash'])) {
  process.stderr.write(`bad --ack-phash ${args['ack-phash']}\n${usage}\n`); process.exit(2)
}
const sim = new Sim({
  log,
  verbose: args.verbose,
  stateFile: args.state,
  atomicWrite,
  qrFirstTtlMs: Number(args['qr-first-ttl']) * 1000,
  qrNextTtlMs: Number(args['qr-next-ttl']) * 1000,
  edgeRouting: !args['no-edge-routing'],
  minVersion: args['min-version'],
  passkey: args.passkey,
  benchSample,
  readReceipts: !args['no-read-receipts'],
  receiptLists: args['receipt-lists'],
  ackPhash: args['ack-phash']
})
await sim.load()

const L = hostPort(args.listen, 'listen')
const C = hostPort(args.control, 'control')
let tls = null
if (args.tls) {
  const [cert, key] = args.tls.split(',')
  if (!cert || !key) { process.stderr.write(`--tls wants CERT,KEY\n${usage}\n`); process.exit(2) }
  tls = { cert, key }
}

const mediaMax = Number(args['media-max-bytes'])
if (!Number.isInteger(mediaMax) || mediaMax < 1) { process.stderr.write(`bad --media-max-bytes ${args['media-max-bytes']}\n${usage}\n`); process.exit(2) }
const M = hostPort(args['media-listen'], 'media-listen')

let ws, ctl, media
try {
  if (args['media-dir']) {
    // the media host (media_conn, HTTPS upload/download, a test CA made at start in --media-dir)
    media = await new MediaHost({ dir: args['media-dir'], maxBytes: mediaMax, log, stats: sim.stats }).start(M.host, M.port)
    sim.attachMedia(media)
  }
  ws = await startWsServer({ host: L.host, port: L.port, tls, keys, certChain, sim, log, verbose: args.verbose })
  sim.attach(ws)
  ctl = await startControlServer({ host: C.host, port: C.port, sim, log })
} catch (err) {
  log(`startup failed: ${err.message}`)
  process.exit(1)
}

const fmtHost = (h) => h.includes(':') ? `[${h}]` : h
process.stdout.write(JSON.stringify({
  ws_url: ws.url.replace(`//${L.host}:`, `//${fmtHost(L.host)}:`),
  control_url: `http://${fmtHost(C.host)}:${ctl.port}`,
  root_key: keys.root.public.toString('base64'),
  ...(media ? { media_url: media.url, media_host: media.hostname, media_ca: media.certs.ca } : {})
}) + '\n')
log(`ready: ws ${ws.url}, control port ${ctl.port}`)
// stdout carries only the ready line: libsignal and friends log with console.*, send that to stderr
for (const k of ['log', 'info', 'warn', 'debug', 'trace']) console[k] = (...a) => log(format(...a))

let stopping = false
async function stop (sig) {
  if (stopping) return
  stopping = true
  log(`${sig}: shutting down`)
  const t = setTimeout(() => process.exit(0), 3000)
  t.unref()
  try {
    sim.shutdown()
    await Promise.all([ws.close(), ctl.close(), media?.close()])
  } catch (err) { log(`shutdown: ${err.message}`) }
  process.exit(0)
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
process.on('uncaughtException', (err) => log(`uncaught exception (kept running): ${err.stack}`))
process.on('unhandledRejection', (err) => log(`unhandled rejection (kept running): ${err?.stack || err}`))
