// Two linked companions on one account: the server relays the deviceSentMessage copy between them,
// and a contact's message reaches both.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSim, pairAndLogin, waitFor, strictCurveVerify, exitWhenDone } from '../lib/testkit.mjs'

const PHONE = '573007770001'
const CONTACT = '573007779999'
let sim
const open = []

before(async () => { strictCurveVerify(); sim = await startSim() }, { timeout: 20000 })
after(async () => {
  for (const h of open) h.end()
  await sim?.stop()
  exitWhenDone()
})

test('two companions of one account: relayed deviceSentMessage copies, contact messages reach both', { timeout: 60000 }, async () => {
  const d1 = await pairAndLogin(sim, PHONE)
  open.push(d1.h)
  const d2 = await pairAndLogin(sim, PHONE)
  open.push(d2.h)
  assert.equal(d1.deviceJid, `${PHONE}:1@s.whatsapp.net`)
  assert.equal(d2.deviceJid, `${PHONE}:2@s.whatsapp.net`)
  const acct = await waitFor(async () => {
    const a = (await sim.ctl('GET', `/accounts/${PHONE}`)).body
    return a.devices.every(d => d.prekeys === 812 && d.connected) && a
  }, { what: 'both devices up' })
  assert.deepEqual(acct.devices.map(d => d.id), [1, 2])
  assert.equal(acct.max_concurrent, 2)
  assert.equal((await sim.ctl('POST', '/contacts', { phone: CONTACT, devices: 1 })).status, 200)

  // device 1 sends; the contact, the phone and device 2 (relayed copy) all decrypt it
  const m = await d1.h.sock.sendMessage(`${CONTACT}@s.whatsapp.net`, { text: 'desde el dispositivo 1 🚀' })
  await waitFor(async () => (await sim.ctl('GET', `/contacts/${CONTACT}/inbox`)).body.find(e => e.id === m.key.id), { what: 'contact got it' })
  const copy = await waitFor(() => d2.h.upserts.find(u => u.key.id === m.key.id), { what: 'device 2 got the copy' })
  assert.equal(copy.key.fromMe, true)
  assert.equal(copy.key.remoteJid, `${CONTACT}@s.whatsapp.net`)
  assert.equal(copy.message?.extendedTextMessage?.text, 'desde el dispositivo 1 🚀')
  const phone = (await sim.ctl('GET', `/accounts/${PHONE}`)).body.phone_inbox.find(p => p.id === m.key.id)
  assert.equal(phone.text, 'desde el dispositivo 1 🚀')

  // the contact writes: both companions decrypt it
  const r = await sim.ctl('POST', `/contacts/${CONTACT}/send`, { to: PHONE, text: 'para los dos' })
  assert.deepEqual(r.body.devices, [1, 2])
  for (const d of [d1, d2]) {
    const got = await waitFor(() => d.h.upserts.find(u => u.key.id === r.body.id), { what: 'contact message' })
    assert.equal(got.message.conversation, 'para los dos')
  }
  const st = (await sim.ctl('GET', '/stats')).body
  assert.equal(st.conflicts_sent, 0)
  assert.equal(st.device_max_concurrent, 1) // two devices, each with one connection at a time
})
