// WebSocket-level behaviour (before any Noise handshake), needed by the nginx module's first tests.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import https from 'node:https'
import WebSocket from 'ws'
import { startSim, sleep, waitFor, pairAndLogin, strictCurveVerify, exitWhenDone } from '../lib/testkit.mjs'

after(exitWhenDone)

function openWs (url, opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts)
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
    ws.once('unexpected-response', (req, res) => reject(new Error('HTTP ' + res.statusCode)))
  })
}

test('ws counters, idle connections stay open, reset, 404 on other paths', { timeout: 30000 }, async () => {
  const sim = await startSim()
  try {
    assert.match(sim.info.ws_url, /^ws:\/\/127\.0\.0\.1:\d+\/ws\/chat$/)
    assert.equal(Buffer.from(sim.info.root_key, 'base64').length, 32)
    let s = (await sim.ctl('GET', '/stats')).body
    assert.equal(s.ws_open, 0)
    assert.equal(s.ws_total, 0)
    assert.equal(s.ws_max_concurrent, 0)
    assert.equal(s.last_upgrade_headers, null)

    const a = await openWs(sim.info.ws_url, { origin: 'https://origin.test', headers: { 'X-Test': 'one' } })
    const b = await openWs(sim.info.ws_url)
    s = (await sim.ctl('GET', '/stats')).body
    assert.equal(s.ws_open, 2)
    assert.equal(s.ws_total, 2)
    assert.equal(s.ws_max_concurrent, 2)
    assert.equal(s.last_upgrade_headers['sec-websocket-version'], '13')
    assert.equal(s.last_upgrade_headers.origin, undefined) // b sent no origin
    b.close()
    await waitFor(async () => (await sim.ctl('GET', '/stats')).body.ws_open === 1, { what: 'ws_open 1' })

    const c = await openWs(sim.info.ws_url, { origin: 'https://origin.test', headers: { 'X-Test': 'three' } })
    s = (await sim.ctl('GET', '/stats')).body
    assert.equal(s.last_upgrade_headers.origin, 'https://origin.test')
    assert.equal(s.last_upgrade_headers['x-test'], 'three')
    assert.equal(s.ws_total, 3)
    assert.equal(s.ws_max_concurrent, 2)

    s = (await sim.ctl('POST', '/stats/reset')).body
    assert.equal(s.ws_total, 0)
    assert.equal(s.ws_max_concurrent, 2) // = currently open
    assert.equal(s.ws_open, 2)

    // idle connections that send nothing are not closed by the server
    await sleep(1500)
    assert.equal(a.readyState, WebSocket.OPEN)
    assert.equal(c.readyState, WebSocket.OPEN)

    await assert.rejects(openWs(sim.info.ws_url.replace('/ws/chat', '/other')), /HTTP 404/)
    const plain = await fetch(sim.info.ws_url.replace('ws:', 'http:').replace('/ws/chat', '/nope'))
    assert.equal(plain.status, 404)
    s = (await sim.ctl('GET', '/stats')).body
    assert.equal(s.ws_total, 0)

    // garbage on one connection closes only that one
    const closed = new Promise(resolve => a.once('close', resolve))
    a.send(Buffer.from('not a whatsapp intro'))
    await closed
    await sleep(100)
    assert.equal(c.readyState, WebSocket.OPEN)
    c.close()
    await waitFor(async () => (await sim.ctl('GET', '/stats')).body.ws_open === 0, { what: 'ws_open 0' })
  } finally {
    const r = await sim.stop()
    assert.equal(r.code, 0)
  }
})

test('--tls serves wss:// with a certificate signed by a test CA (raw ws and Baileys)', { timeout: 40000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wa-sim-tls-'))
  const run = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: 'pipe' })
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=wa-sim test CA')
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1')
  const ext = path.join(dir, 'ext.cnf')
  execFileSync('sh', ['-c', `printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ${ext}`])
  run('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '2', '-extfile', ext)
  const sim = await startSim(['--tls', `${dir}/srv.pem,${dir}/srv.key`])
  try {
    assert.match(sim.info.ws_url, /^wss:\/\/127\.0\.0\.1:\d+\/ws\/chat$/)
    const ca = readFileSync(path.join(dir, 'ca.pem'))
    const ws = await openWs(sim.info.ws_url, { ca })
    assert.equal((await sim.ctl('GET', '/stats')).body.ws_open, 1)
    ws.close()
    // without the CA the certificate is rejected
    await assert.rejects(openWs(sim.info.ws_url, { agent: new https.Agent({}) }), /self-signed|unable to verify|certificate/i)
    // Baileys over wss:// (trusting the test CA through its `agent` option): pair and log in
    strictCurveVerify()
    const acct = await pairAndLogin(sim, '573004440001', { opts: { agent: new https.Agent({ ca }) } })
    assert.equal(acct.deviceJid, '573004440001:1@s.whatsapp.net')
    assert.equal(acct.h.isOpen(), true)
    acct.h.end()
  } finally {
    // SIGINT exits cleanly too
    sim.proc.kill('SIGINT')
    const r = await sim.exited
    assert.equal(r.code, 0)
  }
})
