// What the gateway's link tests need from the simulator, each observed with the real Baileys rc14 client:
// client version check (405), passkey linking request, per-device concurrency, remove-companion-device
// (logout), and linking by import (no QR scan).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSim, startClient, memoryAuth, pairAndLogin, waitFor, closedWithin, strictCurveVerify, exitWhenDone } from '../lib/testkit.mjs'

const MIN = '2.3000.1047769893' // whatsmeow's newer version (wa-protocol-2026.md "Versions")
const OLD = '2.3000.1043857760' // what Baileys rc14 (and testkit.startClient) advertises
const PHONE = '573006660001'
let sim
const open = []
const client = (o) => { const h = startClient(o); open.push(h); return h }
const stats = async () => (await sim.ctl('GET', '/stats')).body

before(async () => { strictCurveVerify(); sim = await startSim(['--min-version', MIN]) }, { timeout: 20000 })
after(async () => {
  for (const h of open) h.end()
  await sim?.stop()
  exitWhenDone()
})

test('client version check: outdated Baileys gets 405 (registration and login); lowered or off, it links and logs in', { timeout: 40000 }, async () => {
  assert.deepEqual((await sim.ctl('GET', '/config')).body, { min_version: MIN }) // from --min-version
  // a registration with the old version: failure 405 before any QR
  const c = client({ info: sim.info, auth: memoryAuth() })
  assert.equal(await closedWithin(c), 405)
  assert.equal(c.qrs.length, 0)
  let s = await stats()
  assert.equal(s.failures_405, 1)
  assert.equal(s.failures_sent['405'], 1)
  assert.equal(s.last_client_version, OLD)
  assert.equal(s.registrations, 0)

  // lower the minimum: the same client version pairs and logs in
  assert.deepEqual((await sim.ctl('POST', '/config', { min_version: '2.3000.1000000000' })).body, { min_version: '2.3000.1000000000' })
  const a = await pairAndLogin(sim, PHONE)
  open.push(a.h)
  a.h.end()
  await closedWithin(a.h)

  // raise it again: the next login of that paired device is refused with 405 (a login failure)
  assert.equal((await sim.ctl('POST', '/config', { min_version: MIN })).status, 200)
  s = await stats()
  const again = client({ info: sim.info, auth: a.auth })
  assert.equal(await closedWithin(again), 405)
  assert.equal(again.closeError?.output?.payload?.message, 'Connection Failure')
  let s2 = await stats()
  assert.equal(s2.failures_405, s.failures_405 + 1)
  assert.equal(s2.login_failures, s.login_failures + 1)
  assert.equal(s2.logins, s.logins)

  // a client advertising exactly the minimum logs in
  const cur = client({ info: sim.info, auth: a.auth, opts: { version: MIN.split('.').map(Number) } })
  await waitFor(() => cur.isOpen(), { what: 'open with the minimum version' })
  s2 = await stats()
  assert.equal(s2.last_client_version, MIN)
  assert.ok(s2.client_versions[MIN] >= 1)
  assert.ok(s2.client_versions[OLD] >= 3)
  cur.end()
  await closedWithin(cur)

  // off: the old version logs in again
  assert.deepEqual((await sim.ctl('POST', '/config', { min_version: null })).body, { min_version: null })
  const off = client({ info: sim.info, auth: a.auth })
  await waitFor(() => off.isOpen(), { what: 'open with the check off' })
  off.end()
  await closedWithin(off)

  // malformed requests
  assert.equal((await sim.ctl('POST', '/config', { min_version: '2.3000' })).status, 400)
  assert.equal((await sim.ctl('POST', '/config', { nope: 1 })).status, 400)
  assert.deepEqual((await sim.ctl('GET', '/config')).body, { min_version: null })
})
