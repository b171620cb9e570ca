// Conformance: the real Baileys 7.0.0-rc14 client against wa-sim, end to end, no internet.
// Proves that the simulator's wire format (Noise, certificate chain, binary nodes, pairing, Signal) is
// what Baileys expects, because every step below is driven by makeWASocket itself.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import * as B from 'baileys'
import { Curve, DisconnectReason } from 'baileys'
import { startSim, startClient, memoryAuth, waitFor, sleep, closedWithin, strictCurveVerify, stockBaileysVerify, exitWhenDone } from '../lib/testkit.mjs'

after(exitWhenDone)

const A = '573001234567' // account paired by QR
const B2 = '573112223344' // account paired by code
const C = '573009999999' // contact with 2 devices
const C3 = '573008888888' // contact that writes first
const TEXT = 'Hola 👋 ¿cómo está? ñandú'
const REPLY = 'Muy bien, gracias 🙏 — ¡adiós!'

const statusOf = (h, id) => {
  const st = h.msgUpdates.filter(u => u.key.id === id).map(u => u.update.status).filter(s => s !== undefined)
  return st
}

test('Baileys conformance: QR pairing, 515, login, messaging, restart, pairing code, conflict, unlink', { timeout: 110000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wa-sim-conf-'))
  const simArgs = ['--state', path.join(dir, 'state.json'), '--key-file', path.join(dir, 'keys.json')]
  // every XEdDSA check inside Baileys becomes real (see testkit.strictCurveVerify)
  strictCurveVerify()
  let sim = await startSim(simArgs)
  const clients = []
  const client = (opts) => { const h = startClient(opts); clients.push(h); return h }
  const authA = memoryAuth()
  const sentA = new Map()
  try {
    await t.test('QR pairing via /scan, then stream:error 515', async () => {
      const c = client({ info: sim.info, auth: authA, sent: sentA })
      await waitFor(() => c.qrs.length, { what: 'QR' })
      const qr = c.qrs[0]
      assert.match(qr, /^https:\/\/[^/]+\/settings\/linked_devices#2@[^,]+,[^,]+,[^,]+,[^,]+,\d+$/)
      // unknown ref is refused
      const bad = await sim.ctl('POST', '/scan', { qr: qr.replace('#2@', '#2@X'), phone: A })
      assert.equal(bad.status, 404)
      assert.equal(bad.body.error, 'unknown ref')
      const r = await sim.ctl('POST', '/scan', { qr, phone: A })
      assert.equal(r.status, 200, JSON.stringify(r.body))
      assert.equal(r.body.device_jid, `${A}:1@s.whatsapp.net`)
      assert.match(r.body.lid, /^\d{15}:1@lid$/)
      assert.equal(await closedWithin(c), DisconnectReason.restartRequired) // 515
      assert.equal(authA.creds.me.id, `${A}:1@s.whatsapp.net`)
      assert.equal(authA.creds.me.lid, r.body.lid)
      const s = (await sim.ctl('GET', '/stats')).body
      assert.equal(s.pairings, 1)
      assert.equal(s.registrations, 1)
    })

    let cA
    await t.test('login with the new credentials; prekeys uploaded', async () => {
      cA = client({ info: sim.info, auth: authA, sent: sentA })
      await waitFor(() => cA.isOpen(), { what: 'connection open' })
      // <ib><offline count="0"/></ib> arrived: Baileys reports receivedPendingNotifications
      await waitFor(() => cA.updates.some(u => u.receivedPendingNotifications === true), { what: 'ib offline' })
      const acct = await waitFor(async () => {
        const a = (await sim.ctl('GET', `/accounts/${A}`)).body
        return a.devices?.[0]?.prekeys === 812 && a
      }, { what: '812 prekeys uploaded' })
      assert.equal(acct.devices.length, 1)
      assert.equal(acct.devices[0].connected, true)
      assert.equal(acct.devices[0].open_connections, 1)
      assert.equal(acct.devices[0].max_concurrent, 1)
      const s = (await sim.ctl('GET', '/stats')).body
      assert.equal(s.logins, 1)
      assert.equal(s.connections_open, 1)
      assert.equal(s.conflicts_sent, 0)
      assert.equal(s.device_max_concurrent, 1)
    })

    let sentId
    await t.test('send a text to a 2-device contact; both devices decrypt it exactly; receipts', async () => {
      const add = await sim.ctl('POST', '/contacts', { phone: C, devices: 2 })
      assert.equal(add.status, 200)
      assert.equal(add.body.devices.length, 2)
      const m = await cA.sock.sendMessage(`${C}@s.whatsapp.net`, { text: TEXT })
      sentA.set(m.key.id, m.message)
      sentId = m.key.id
      const inbox = await waitFor(async () => {
        const ib = (await sim.ctl('GET', `/contacts/${C}/inbox`)).body
        return ib.length >= 2 && ib
      }, { what: 'contact inbox' })
      assert.equal(inbox.length, 2)
      assert.deepEqual(inbox.map(e => e.device).sort(), [0, 1])
      for (const e of inbox) {
        assert.equal(e.text, TEXT)
        assert.equal(e.id, sentId)
        assert.equal(e.from, A)
      }
      // delivery (3) then read (4), as Baileys reports them
      await waitFor(() => statusOf(cA, sentId).includes(4), { what: 'read receipt' })
      assert.deepEqual(statusOf(cA, sentId), [3, 4])
      // the account's phone (device 0) got the deviceSentMessage copy
      const acct = (await sim.ctl('GET', `/accounts/${A}`)).body
      const dsm = acct.phone_inbox.filter(p => p.id === sentId)
      assert.equal(dsm.length, 1)
      assert.equal(dsm[0].dsm, true)
      assert.equal(dsm[0].text, TEXT)
      assert.equal(dsm[0].to, `${C}@s.whatsapp.net`)
    })

    await t.test('the contact replies; Baileys decrypts it and sends a receipt', async () => {
      const r = await sim.ctl('POST', `/contacts/${C}/send`, { to: A, text: REPLY })
      assert.equal(r.status, 200)
      assert.deepEqual(r.body.devices, [1])
      const got = await waitFor(() => cA.upserts.find(m => m.key.id === r.body.id), { what: 'reply upsert' })
      assert.equal(got.key.fromMe, false)
      assert.equal(got.key.remoteJid, `${C}@s.whatsapp.net`)
      assert.equal(got.message.conversation, REPLY)
      const contact = await waitFor(async () => {
        const cv = (await sim.ctl('GET', `/contacts/${C}`)).body
        const s = cv.sent.find(x => x.id === r.body.id)
        return s?.delivered.length && s
      }, { what: 'receipt from Baileys' })
      assert.equal(contact.delivered.length, 1)
      assert.equal(contact.delivered[0].device, 1)
      assert.equal(contact.retries.length, 0)
      // a second message in the same session is a 'msg' (not pkmsg) and also decrypts
      const r2 = await sim.ctl('POST', `/contacts/${C}/send`, { to: A, text: 'segundo ✔' })
      const got2 = await waitFor(() => cA.upserts.find(m => m.key.id === r2.body.id), { what: 'second reply' })
      assert.equal(got2.message.conversation, 'segundo ✔')
      // C's device 0 already has a session (it decrypted the client's pkmsg), so both are 'msg'
      const sent = (await sim.ctl('GET', `/contacts/${C}`)).body.sent
      assert.deepEqual(sent.find(x => x.id === r.body.id).enc_types, { 1: ['msg'] })
      assert.deepEqual(sent.find(x => x.id === r2.body.id).enc_types, { 1: ['msg'] })
      // a contact that never talked to the client builds the session from the uploaded bundle (one
      // prekey consumed) and keeps sending pkmsg until it hears back from the client (Signal rule);
      // after the client's answer it sends msg
      assert.equal((await sim.ctl('POST', '/contacts', { phone: C3, devices: 1 })).status, 200)
      const p1 = await sim.ctl('POST', `/contacts/${C3}/send`, { to: A, text: 'primer contacto' })
      const p2 = await sim.ctl('POST', `/contacts/${C3}/send`, { to: A, text: 'y después' })
      const g1 = await waitFor(() => cA.upserts.find(m => m.key.id === p1.body.id), { what: 'pkmsg from new contact' })
      const g2 = await waitFor(() => cA.upserts.find(m => m.key.id === p2.body.id), { what: 'msg from new contact' })
      assert.equal(g1.message.conversation, 'primer contacto')
      assert.equal(g2.message.conversation, 'y después')
      const ans = await cA.sock.sendMessage(`${C3}@s.whatsapp.net`, { text: 'hola C3' })
      sentA.set(ans.key.id, ans.message)
      await waitFor(async () => (await sim.ctl('GET', `/contacts/${C3}/inbox`)).body.find(e => e.id === ans.key.id && e.text === 'hola C3'), { what: 'C3 got the answer' })
      const p3 = await sim.ctl('POST', `/contacts/${C3}/send`, { to: A, text: 'ahora msg' })
      const g3 = await waitFor(() => cA.upserts.find(m => m.key.id === p3.body.id), { what: 'msg from C3' })
      assert.equal(g3.message.conversation, 'ahora msg')
      const sent3 = (await sim.ctl('GET', `/contacts/${C3}`)).body.sent
      assert.deepEqual(sent3.map(x => x.enc_types[1]), [['pkmsg'], ['pkmsg'], ['msg']])
      const stock = (await sim.ctl('GET', `/accounts/${A}`)).body.devices[0].prekeys
      assert.equal(stock, 811)
      assert.equal((await sim.ctl('GET', '/stats')).body.conflicts_sent, 0)
    })

    await t.test('simulator restart: same --state/--key-file, login again without a new scan', async () => {
      const closed = closedWithin(cA)
      const oldStats = (await sim.ctl('GET', '/stats')).body
      assert.equal(oldStats.conflicts_sent, 0)
      const r = await sim.stop()
      assert.equal(r.code, 0)
      await closed
      const rootBefore = sim.info.root_key
      sim = await startSim(simArgs)
      assert.equal(sim.info.root_key, rootBefore) // --key-file kept the root
      cA = client({ info: sim.info, auth: authA, sent: sentA })
      await waitFor(() => cA.isOpen(), { what: 'open after restart' })
      const s = (await sim.ctl('GET', '/stats')).body
      assert.equal(s.logins, 1)
      assert.equal(s.registrations, 0)
      assert.equal(s.pairings, 0)
      assert.equal(s.login_failures, 0)
      // the routing info handed out at the earlier login came back as an 'ED' header
      assert.equal(s.ed_headers, 1)
      // Signal sessions survived on both sides: a new message decrypts at both contact devices
      const m = await cA.sock.sendMessage(`${C}@s.whatsapp.net`, { text: 'after restart ✓' })
      const inbox = await waitFor(async () => {
        const ib = (await sim.ctl('GET', `/contacts/${C}/inbox`)).body.filter(e => e.id === m.key.id)
        return ib.length === 2 && ib
      }, { what: 'post-restart inbox' })
      assert.deepEqual(inbox.map(e => e.text), ['after restart ✓', 'after restart ✓'])
      assert.equal((await sim.ctl('GET', '/stats')).body.conflicts_sent, 0)
    })

    await t.test('second account paired by pairing code', async () => {
      const authB = memoryAuth()
      const c = client({ info: sim.info, auth: authB })
      await waitFor(() => c.qrs.length, { what: 'registration (QR) before requesting a code' })
      const code = await c.sock.requestPairingCode(B2, 'ABCD1234')
      assert.equal(code, 'ABCD1234')
      // a mistyped code: the companion's key bundle does not decrypt on the phone
      const wrong = await sim.ctl('POST', '/pairing-code', { phone: B2, code: 'WXYZ9876' })
      assert.equal(wrong.status, 400)
      assert.equal(wrong.body.error, 'wrong pairing code (key bundle does not decrypt)')
      const r = await sim.ctl('POST', '/pairing-code', { phone: B2, code: 'ABCD1234' })
      assert.equal(r.status, 200, JSON.stringify(r.body))
      assert.equal(r.body.device_jid, `${B2}:1@s.whatsapp.net`)
      assert.equal(await closedWithin(c), DisconnectReason.restartRequired)
      const c2 = client({ info: sim.info, auth: authB })
      await waitFor(() => c2.isOpen(), { what: 'account B open' })
      assert.equal(authB.creds.me.id, `${B2}:1@s.whatsapp.net`)
      c2.end()
      assert.equal((await sim.ctl('GET', '/stats')).body.conflicts_sent, 0)
    })

    await t.test('a second connection as the same device gets the older one replaced (conflict)', async () => {
      assert.equal((await sim.ctl('GET', '/stats')).body.conflicts_sent, 0)
      const first = cA
      cA = client({ info: sim.info, auth: authA, sent: sentA })
      assert.equal(await closedWithin(first), DisconnectReason.connectionReplaced) // 440
      await waitFor(() => cA.isOpen(), { what: 'replacement open' })
      const s = (await sim.ctl('GET', '/stats')).body
      assert.equal(s.conflicts_sent, 1)
      const acct = (await sim.ctl('GET', `/accounts/${A}`)).body
      assert.equal(acct.devices[0].open_connections, 1)
      assert.equal(acct.devices[0].max_concurrent, 2)
      // the global high-water mark saw the two simultaneous connections; a reset brings it back to what is open now
      assert.equal(s.device_max_concurrent, 2)
      const reset = (await sim.ctl('POST', '/stats/reset')).body
      assert.equal(reset.device_max_concurrent, 1)
      assert.equal((await sim.ctl('GET', '/stats')).body.device_max_concurrent, 1)
    })

    await t.test('a client trusting another root key refuses the server', async () => {
      const s0 = (await sim.ctl('GET', '/stats')).body
      const other = Curve.generateKeyPair().public.toString('base64')
      const c = client({ info: sim.info, auth: memoryAuth(), rootKey: other })
      const code = await closedWithin(c)
      assert.equal(code, 400)
      assert.equal(c.closeError?.message, 'noise intermediate certificate signature invalid')
      assert.equal(c.qrs.length, 0)
      const s = (await sim.ctl('GET', '/stats')).body
      assert.equal(s.registrations, s0.registrations) // the ClientFinish never came
      assert.equal(s.ws_total, s0.ws_total + 1)
    })

    await t.test('(documents a Baileys rc14 bug) stock Curve.verify accepts any root key', async () => {
      // see NOTES.md: stock rc14 never rejects a certificate chain, so the test above needs strictCurveVerify
      stockBaileysVerify()
      try {
        const other = Curve.generateKeyPair().public.toString('base64')
        const c = client({ info: sim.info, auth: memoryAuth(), rootKey: other })
        await waitFor(() => c.qrs.length, { what: 'QR despite the wrong root' })
        c.end()
        await closedWithin(c)
      } finally {
        strictCurveVerify()
      }
      B.WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(sim.info.root_key, 'base64')
    })

    await t.test('the phone unlinks the device: loggedOut, and later logins fail', async () => {
      const r = await sim.ctl('POST', `/accounts/${A}/unlink`, { device: 1 })
      assert.equal(r.status, 200)
      assert.equal(r.body.connections_closed, 1)
      assert.equal(await closedWithin(cA), DisconnectReason.loggedOut) // 401
      const again = client({ info: sim.info, auth: authA, sent: sentA })
      assert.equal(await closedWithin(again), 401)
      const s = (await sim.ctl('GET', '/stats')).body
      assert.equal(s.login_failures, 1)
      assert.equal(s.conflicts_sent, 1)
      const acct = (await sim.ctl('GET', `/accounts/${A}`)).body
      assert.equal(acct.devices[0].linked, false)
      assert.equal(acct.devices[0].connected, false)
    })
  } finally {
    stockBaileysVerify()
    for (const h of clients) h.end()
    await sleep(50)
    const r = await sim.stop()
    assert.equal(r.code, 0)
    assert.deepEqual(sim.extraStdout, []) // stdout carries only the ready line
  }
})
