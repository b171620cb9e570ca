// What the gateway's messaging tests (issue 9) need from the simulator: LID and PN addressing recorded per inbox
// entry, device-identity checks, server ack fidelity (phash, error codes, reachout timelock), privacy tokens,
// retry receipts with <keys>, bench mode, offline delivery and redelivery. Observed with the real Baileys rc14
// client where it can speak the stanza, and with a raw whatsmeow-like client (lib/testkit.mjs rawDevice) where it
// cannot (LID-first sends with peer_recipient_pn, phash, missing device-identity, receipts withheld).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { proto } from 'baileys'
import {
  startSim, pairAndLogin, waitFor, sleep, strictCurveVerify, exitWhenDone,
  rawDevice, rawUploadPreKeys, rawSessions, rawTextMessage, rawAddr, phashV2
} from '../lib/testkit.mjs'

const A = '573008880001' // Baileys account (PN path)
const R = '573008880002' // raw (whatsmeow-like) account
const C = '573008889001' // contact, 2 devices
const L = '573008889002' // contact that writes in LID mode
let sim
let a // Baileys { h, auth, sent, ... }
let raw // rawDevice of R
let rc // its live connection
let contact // POST /contacts answer for C
const open = []
const stats = async () => (await sim.ctl('GET', '/stats')).body
const inbox = async (p) => (await sim.ctl('GET', `/contacts/${p}/inbox`)).body
const account = async (p) => (await sim.ctl('GET', `/accounts/${p}`)).body
const bare = (lidJid) => lidJid.replace(/:\d+@/, '@')

before(async () => {
  strictCurveVerify()
  sim = await startSim()
  contact = (await sim.ctl('POST', '/contacts', { phone: C, devices: 2 })).body
  a = await pairAndLogin(sim, A)
  open.push(a.h)
  raw = await rawDevice(sim, { phone: R })
  rc = await raw.connect()
  await rawUploadPreKeys(rc)
  rc.send({ tag: 'iq', attrs: { id: 'act-1', xmlns: 'passive', type: 'set', to: '@s.whatsapp.net' }, content: [{ tag: 'active', attrs: {} }] })
  await rc.waitFor(n => n.tag === 'ib' && n.content?.[0]?.tag === 'offline', 5000, 'ib offline')
  await waitFor(async () => (await account(A)).devices[0].prekeys === 812, { what: 'Baileys prekeys' })
}, { timeout: 30000 })
after(async () => {
  for (const h of open) h.end()
  rc?.close()
  await sim?.stop()
  exitWhenDone()
})

test('LID-addressed send (whatsmeow style): ack, inbox addressing, device identity, phash, receipts from the LID', { timeout: 20000 }, async () => {
  const clid = bare(contact.lid) // CLID@lid
  const ownLid = `${raw.lid}@lid`
  const devices = [`${raw.lid}@lid`, `${clid.split('@')[0]}@lid`, `${clid.split('@')[0]}:1@lid`]
  await rawSessions(rc, devices)
  // whatsmeow's phash covers every device of both users, the sending device included
  const phash = phashV2([...devices, raw.lidJid])
  const s0 = await stats()
  const m = await rawTextMessage(rc, { to: clid, devices, text: 'hola por LID ✓', peerRecipientPn: `${C}@s.whatsapp.net`, phash, chat: clid })
  rc.send(m)
  const ack = await rc.waitFor(n => n.tag === 'ack' && n.attrs.id === m.attrs.id, 5000, 'ack')
  assert.equal(ack.attrs.class, 'message')
  assert.equal(ack.attrs.from, clid)
  assert.match(ack.attrs.t, /^\d+$/)
  assert.equal(ack.attrs.error, undefined)
  assert.equal(ack.attrs.phash, phash) // echoed because the client sent one, and it matches
  const ib = (await waitFor(async () => { const x = (await inbox(C)).filter(e => e.id === m.attrs.id); return x.length === 2 && x }, { what: 'both devices' }))
  for (const e of ib) {
    assert.equal(e.text, 'hola por LID ✓')
    assert.equal(e.addressing, 'lid')
    assert.equal(e.to, clid)
    assert.equal(e.to_jid, e.device ? `${clid.split('@')[0]}:1@lid` : clid)
    assert.equal(e.peer_recipient_pn, `${C}@s.whatsapp.net`)
    assert.equal(e.device_identity_ok, true)
    assert.equal(e.type, 'pkmsg')
    assert.equal(e.phash, phash)
  }
  const ph = (await account(R)).phone_inbox.find(p => p.id === m.attrs.id)
  assert.equal(ph.text, 'hola por LID ✓')
  assert.equal(ph.dsm, true)
  assert.equal(ph.addressing, 'lid')
  assert.equal(ph.to_jid, ownLid)
  assert.equal(ph.to, clid) // destinationJid of the deviceSentMessage
  assert.equal(ph.stanza_to, clid)
  assert.equal(ph.peer_recipient_pn, `${C}@s.whatsapp.net`)
  assert.equal(ph.device_identity_ok, true)
  // receipts come from the contact's LID with its PN as sender_pn
  const dr = await rc.waitFor(n => n.tag === 'receipt' && n.attrs.id === m.attrs.id && !n.attrs.type, 3000, 'delivery receipt')
  assert.equal(dr.attrs.from, clid)
  assert.equal(dr.attrs.sender_pn, `${C}@s.whatsapp.net`)
  const rr = await rc.waitFor(n => n.tag === 'receipt' && n.attrs.id === m.attrs.id && n.attrs.type === 'read', 3000, 'read receipt')
  assert.equal(rr.attrs.from, clid)
  let s = await stats()
  assert.equal(s.phash_mismatches, s0.phash_mismatches)
  assert.equal(s.missing_device_identity, s0.missing_device_identity)

  // a second message in the same sessions, a wrong phash: counted; the ack carries the server's
  const m2 = await rawTextMessage(rc, { to: clid, devices, text: 'segundo', peerRecipientPn: `${C}@s.whatsapp.net`, phash: '2:AAAAAAAA', chat: clid })
  rc.send(m2)
  const ack2 = await rc.waitFor(n => n.tag === 'ack' && n.attrs.id === m2.attrs.id, 5000, 'ack 2')
  assert.equal(ack2.attrs.phash, phash)
  s = await stats()
  assert.equal(s.phash_mismatches, s0.phash_mismatches + 1)

  // a LID nobody has: ack with error 400, nothing delivered
  const m3 = await rawTextMessage(rc, { to: '999999999999999@lid', devices: [], text: 'nadie' })
  rc.send(m3)
  const ack3 = await rc.waitFor(n => n.tag === 'ack' && n.attrs.id === m3.attrs.id, 5000, 'ack 3')
  assert.equal(ack3.attrs.error, '400')
  s = await stats()
  assert.equal(s.unknown_recipients, s0.unknown_recipients + 1)
  assert.equal(s.ack_errors_sent['400'], 1)
})

test('a pkmsg without <device-identity> is counted; a forged one is refused as not ok', { timeout: 20000 }, async () => {
  await sim.ctl('POST', '/contacts', { phone: L, devices: 1 })
  const l = (await sim.ctl('GET', `/contacts/${L}`)).body
  const dev = bare(l.lid)
  await rawSessions(rc, [dev])
  const s0 = await stats()
  const m = await rawTextMessage(rc, { to: dev, devices: [dev], text: 'sin identidad', deviceIdentity: false })
  rc.send(m)
  const e = await waitFor(async () => (await inbox(L)).find(x => x.id === m.attrs.id), { what: 'inbox' })
  assert.equal(e.type, 'pkmsg')
  assert.equal(e.device_identity_ok, false)
  assert.equal(e.addressing, 'lid')
  assert.equal(e.peer_recipient_pn, null)
  assert.equal((await stats()).missing_device_identity, s0.missing_device_identity + 1)
  // a device identity whose device signature is not this device's
  const forged = proto.ADVSignedDeviceIdentity.decode(raw.deviceIdentity)
  forged.deviceSignature = Buffer.alloc(64, 7)
  const m2 = await rawTextMessage(rc, { to: dev, devices: [dev], text: 'identidad falsa', deviceIdentity: false })
  m2.content.push({ tag: 'device-identity', attrs: {}, content: Buffer.from(proto.ADVSignedDeviceIdentity.encode(forged).finish()) })
  rc.send(m2)
  const e2 = await waitFor(async () => (await inbox(L)).find(x => x.id === m2.attrs.id), { what: 'inbox 2' })
  assert.equal(e2.device_identity_ok, false)
  assert.equal((await stats()).bad_device_identity, s0.bad_device_identity + 1)
  // PN addressing by the same client: recorded as such
  const pn = `${L}@s.whatsapp.net`
  await rawSessions(rc, [pn])
  const m3 = await rawTextMessage(rc, { to: pn, devices: [pn], text: 'por número' })
  rc.send(m3)
  const e3 = await waitFor(async () => (await inbox(L)).find(x => x.id === m3.attrs.id), { what: 'inbox 3' })
  assert.equal(e3.text, 'por número')
  assert.equal(e3.addressing, 'pn')
  assert.equal(e3.to, pn)
  assert.equal(e3.to_jid, pn)
  // ack_phash: "always" puts the server's hash in every ack of a message with participants, "never" in none
  assert.equal((await sim.ctl('POST', '/config', { ack_phash: 'always' })).body.ack_phash, 'always')
  const m4 = await rawTextMessage(rc, { to: pn, devices: [pn], text: 'sin phash' })
  rc.send(m4)
  assert.equal((await rc.waitFor(n => n.tag === 'ack' && n.attrs.id === m4.attrs.id)).attrs.phash, phashV2([pn, `${R}@s.whatsapp.net`, raw.jid]))
  await sim.ctl('POST', '/config', { ack_phash: 'never' })
  const m5 = await rawTextMessage(rc, { to: pn, devices: [pn], text: 'con phash', phash: '2:AAAAAAAA' })
  rc.send(m5)
  assert.equal((await rc.waitFor(n => n.tag === 'ack' && n.attrs.id === m5.attrs.id)).attrs.phash, undefined)
  assert.equal((await sim.ctl('POST', '/config', { ack_phash: 'client' })).status, 200)
  assert.equal((await sim.ctl('POST', '/config', { ack_phash: 'sometimes' })).status, 400)
})

test('Baileys: PN sends recorded as pn, a send to a LID JID as lid; a contact in LID mode writes from its LID', { timeout: 20000 }, async () => {
  const m = await a.h.sock.sendMessage(`${C}@s.whatsapp.net`, { text: 'por PN' })
  a.sent.set(m.key.id, m.message)
  const ib = await waitFor(async () => { const x = (await inbox(C)).filter(e => e.id === m.key.id); return x.length === 2 && x }, { what: 'PN send' })
  for (const e of ib) {
    assert.equal(e.addressing, 'pn')
    assert.equal(e.to, `${C}@s.whatsapp.net`)
    assert.equal(e.to_jid, e.device ? `${C}:1@s.whatsapp.net` : `${C}@s.whatsapp.net`)
    assert.equal(e.peer_recipient_pn, null)
    assert.equal(e.device_identity_ok, true) // Baileys' first message is a pkmsg with <device-identity>
  }
  const clid = bare(contact.lid)
  const m2 = await a.h.sock.sendMessage(clid, { text: 'por LID' })
  a.sent.set(m2.key.id, m2.message)
  const ib2 = await waitFor(async () => { const x = (await inbox(C)).filter(e => e.id === m2.key.id); return x.length === 2 && x }, { what: 'LID send' })
  for (const e of ib2) {
    assert.equal(e.text, 'por LID')
    assert.equal(e.addressing, 'lid')
    assert.equal(e.to, clid)
    assert.match(e.to_jid, /@lid$/)
  }
  // Baileys got the receipts from the LID and shows them as status updates
  await waitFor(() => a.h.msgUpdates.some(u => u.key.id === m2.key.id && u.update.status === 4), { what: 'read (LID)' })

  // the contact writes in LID mode: from="LID:0@lid" sender_pn=PN
  const lc = (await sim.ctl('POST', '/contacts', { phone: L, devices: 1, lid_mode: true })).body
  assert.equal(lc.lid_mode, true)
  const r = await sim.ctl('POST', `/contacts/${L}/send`, { to: A, text: 'desde mi LID' })
  assert.equal(r.body.addressing, 'lid')
  const got = await waitFor(() => a.h.upserts.find(u => u.key.id === r.body.id), { what: 'LID-mode message' })
  assert.equal(got.message.conversation, 'desde mi LID')
  assert.equal(got.key.remoteJid, bare(lc.lid))
  const sent = await waitFor(async () => (await sim.ctl('GET', `/contacts/${L}`)).body.sent.find(x => x.id === r.body.id && x.delivered.length), { what: 'receipt' })
  assert.equal(sent.addressing, 'lid')
  assert.equal(sent.delivered[0].to, bare(lc.lid))
  // and per message, as a PN chat
  const r2 = await sim.ctl('POST', `/contacts/${L}/send`, { to: A, text: 'y por número', as: 'pn' })
  const got2 = await waitFor(() => a.h.upserts.find(u => u.key.id === r2.body.id), { what: 'PN-mode message' })
  assert.equal(got2.message.conversation, 'y por número')
  assert.equal((await sim.ctl('POST', `/contacts/${L}/send`, { to: A, text: 'x', as: 'nope' })).status, 400)
})

test('receipt lists: a contact acknowledges several messages in one receipt (first id, then <list><item>); Baileys marks every one delivered, then read', { timeout: 20000 }, async () => {
  const cfg = await sim.ctl('POST', '/config', { receipt_lists: true })
  assert.equal(cfg.body.receipt_lists, true)
  const s0 = await stats()
  const ids = []
  for (let i = 0; i < 5; i++) {
    const m = await a.h.sock.sendMessage(`${C}@s.whatsapp.net`, { text: `lista ${i}` })
    a.sent.set(m.key.id, m.message)
    ids.push(m.key.id)
  }
  for (const status of [3, 4]) { // DELIVERY_ACK, READ
    await waitFor(() => ids.every(id => a.h.msgUpdates.some(u => u.key.id === id && u.update.status >= status)), { what: `status ${status} of all 5` })
  }
  const s = await stats()
  assert.ok(s.receipt_lists_sent - s0.receipt_lists_sent >= 2, `receipts with a list: ${s.receipt_lists_sent - s0.receipt_lists_sent}`)
  assert.ok(s.receipts_sent - s0.receipts_sent <= 6, `receipts for 5 messages, delivered and read: ${s.receipts_sent - s0.receipts_sent}`)
  assert.equal((await sim.ctl('POST', '/config', { receipt_lists: false })).body.receipt_lists, false)
  assert.equal((await sim.ctl('POST', '/config', { receipt_lists: 'yes' })).status, 400)
})

test('reachout timelock: the mex notification reaches Baileys with its end; enforced, a new contact gets 463, then lifted', { timeout: 20000 }, async () => {
  const fault = (b) => sim.ctl('POST', `/devices/${A}:1/fault`, b)
  const s0 = await stats()
  const r = await fault({ type: 'reachout_timelock', seconds: 600, enforce: true })
  assert.equal(r.status, 200, JSON.stringify(r.body))
  assert.equal(r.body.devices, 1)
  const ends = r.body.reachout_timelock.ends
  const upd = await waitFor(() => a.h.updates.find(u => u.reachoutTimeLock?.isActive), { what: 'reachoutTimeLock update' })
  assert.equal(upd.reachoutTimeLock.timeEnforcementEnds.getTime(), ends * 1000)
  assert.equal(upd.reachoutTimeLock.enforcementType, 'BIZ_QUALITY')
  await waitFor(async () => (await stats()).notification_acks.mex === (s0.notification_acks.mex || 0) + 1, { what: 'Baileys acked the notification' })
  assert.deepEqual((await account(A)).reachout_timelock, { active: true, ends, type: 'BIZ_QUALITY', enforce: true, t: r.body.reachout_timelock.t })
  // a contact A never talked to: 463. Baileys rc14 answers a 463 by issuing its privacy token to that contact
  // (its "token recovery"); its reachout-timelock fetch branch is unreachable for 463 (NOTES.md §5)
  const N = '573008889003'
  await sim.ctl('POST', '/contacts', { phone: N, devices: 1 })
  const m = await a.h.sock.sendMessage(`${N}@s.whatsapp.net`, { text: 'hola desconocido' })
  const err = await waitFor(() =>
    a.h.msgUpdates.find(u => u.key.id === m.key.id && u.update.status === proto.WebMessageInfo.Status.ERROR)?.update ||
    a.h.upserts.find(u => u.key.id === m.key.id && u.status === proto.WebMessageInfo.Status.ERROR), { what: '463' })
  assert.deepEqual(err.messageStubParameters, ['463', 'Your account has been restricted'])
  const nLid = bare((await sim.ctl('GET', `/contacts/${N}`)).body.lid)
  await waitFor(async () => (await account(A)).privacy_tokens_issued.some(x => x.jid.startsWith(N) || x.jid === nLid), { what: '463 token recovery iq' })
  // the w:mex fetch (Baileys fetchAccountReachoutTimelock) is answered from the same state
  const fetched = await a.h.sock.fetchAccountReachoutTimelock()
  assert.equal(fetched.isActive, true)
  assert.equal(fetched.timeEnforcementEnds.getTime(), ends * 1000)
  assert.equal(fetched.enforcementType, 'BIZ_QUALITY')
  // an existing chat still works
  const ok = await a.h.sock.sendMessage(`${C}@s.whatsapp.net`, { text: 'chat existente' })
  await waitFor(async () => (await inbox(C)).find(e => e.id === ok.key.id), { what: 'existing chat delivered' })
  assert.equal((await stats()).ack_errors_sent['463'], (s0.ack_errors_sent['463'] || 0) + 1)
  // lifted
  const n1 = a.h.updates.length
  assert.equal((await fault({ type: 'reachout_timelock', active: false })).status, 200)
  const lifted = await waitFor(() => a.h.updates.slice(n1).find(u => u.reachoutTimeLock), { what: 'lifted' })
  assert.equal(lifted.reachoutTimeLock.isActive, false)
  const m2 = await a.h.sock.sendMessage(`${N}@s.whatsapp.net`, { text: 'ahora sí' })
  await waitFor(async () => (await inbox(N)).find(e => e.id === m2.key.id), { what: 'delivered after lift' })
  assert.equal((await fault({ type: 'reachout_timelock', seconds: 0 })).status, 400)
  assert.equal((await fault({ type: 'ack_error', times: 0 })).status, 400)
})

test('privacy tokens: notification to Baileys, <tctoken> on its next message, its own token iq recorded; require_tctoken -> 463', { timeout: 20000 }, async () => {
  const s0 = await stats()
  const t = Math.floor(Date.now() / 1000) - 5
  const tk = await sim.ctl('POST', `/contacts/${C}/privacy-token`, { to: A, t })
  assert.equal(tk.status, 200, JSON.stringify(tk.body))
  assert.equal(tk.body.devices, 1)
  await waitFor(async () => (await stats()).notification_acks.privacy_token === (s0.notification_acks.privacy_token || 0) + 1, { what: 'ack' })
  const m = await a.h.sock.sendMessage(`${C}@s.whatsapp.net`, { text: 'con token' })
  const ib = await waitFor(async () => { const x = (await inbox(C)).filter(e => e.id === m.key.id); return x.length === 2 && x }, { what: 'delivered' })
  for (const e of ib) {
    assert.equal(e.tctoken, tk.body.token)
    assert.equal(e.tctoken_valid, true)
  }
  // Baileys issues its own token to the contact after a send (fire-and-forget <iq xmlns="privacy"><tokens>)
  const issued = await waitFor(async () => (await account(A)).privacy_tokens_issued.find(x => x.type === 'trusted_contact'), { what: 'token iq' })
  assert.match(issued.jid, /@(lid|s\.whatsapp\.net)$/)
  assert.equal((await sim.ctl('GET', `/contacts/${C}`)).body.privacy_tokens[0].token, tk.body.token)

  // a contact that requires a token (raw client): without one 463; the notification it gets; with it, delivered
  await sim.ctl('POST', '/contacts', { phone: L, devices: 1, require_tctoken: true })
  const dev = `${L}@s.whatsapp.net`
  const m1 = await rawTextMessage(rc, { to: dev, devices: [dev], text: 'sin token' })
  rc.send(m1)
  assert.equal((await rc.waitFor(n => n.tag === 'ack' && n.attrs.id === m1.attrs.id)).attrs.error, '463')
  const tk2 = (await sim.ctl('POST', `/contacts/${L}/privacy-token`, { to: R })).body
  const nt = await rc.waitFor(n => n.tag === 'notification' && n.attrs.id === tk2.notification_id, 3000, 'privacy_token notification')
  assert.equal(nt.attrs.type, 'privacy_token')
  const l = (await sim.ctl('GET', `/contacts/${L}`)).body
  assert.equal(nt.attrs.from, bare(l.lid)) // L is in LID mode: from its LID, no sender_lid
  const tok = nt.content[0].content[0]
  assert.equal(nt.content[0].tag, 'tokens')
  assert.equal(tok.attrs.type, 'trusted_contact')
  assert.equal(tok.attrs.t, String(tk2.t))
  assert.equal(tok.attrs.jid, `${raw.lid}@lid`)
  assert.equal(Buffer.from(tok.content).toString('base64'), tk2.token)
  const m2 = await rawTextMessage(rc, { to: dev, devices: [dev], text: 'con token', tctoken: tk2.token })
  rc.send(m2)
  assert.equal((await rc.waitFor(n => n.tag === 'ack' && n.attrs.id === m2.attrs.id)).attrs.error, undefined)
  const e = await waitFor(async () => (await inbox(L)).find(x => x.id === m2.attrs.id), { what: 'delivered with token' })
  assert.equal(e.tctoken_valid, true)
  await sim.ctl('POST', '/contacts', { phone: L, devices: 1, require_tctoken: false })
})

test('retries: counts 1, 2 (keys from 2) to Baileys, 1..4 then silence to a raw client; corrupted ciphertext twice -> Baileys counts 1, 2', { timeout: 30000 }, async () => {
  const s0 = await stats()
  // Baileys rc14 resends at most twice per message and device (its resend counter goes up twice per receipt)
  const f = await sim.ctl('POST', `/devices/${A}:1/fault`, { type: 'retry_request', target: 'contact', device: 1, times: 2 })
  assert.equal(f.body.times, 2)
  const m = await a.h.sock.sendMessage(`${C}@s.whatsapp.net`, { text: 'dos intentos' })
  a.sent.set(m.key.id, m.message)
  const e = await waitFor(async () => (await inbox(C)).find(x => x.id === m.key.id && x.device === 1), { what: 'accepted after 2 retries', timeoutMs: 20000 })
  assert.equal(e.text, 'dos intentos')
  assert.equal(e.retries, 2) // retry receipts device 1 sent for this message
  assert.equal(e.retry_count, 2) // the enc count of the resend it accepted
  assert.equal(e.type, 'pkmsg') // Baileys rebuilt the session from the <keys> of the second receipt
  const d0 = (await inbox(C)).find(x => x.id === m.key.id && x.device === 0)
  assert.equal(d0.retries, 0)
  let s = await stats()
  assert.equal(s.retry_receipts_sent, s0.retry_receipts_sent + 2)
  assert.equal(s.retry_receipts_with_keys, s0.retry_receipts_with_keys + 1)

  // a client that keeps resending (the raw client, rebuilding the session from <keys> like whatsmeow): the
  // contact device sends counts 1..4 and then gives up, as whatsmeow's sendRetryReceipt does at 5
  assert.equal((await sim.ctl('POST', `/devices/${R}:1/fault`, { type: 'retry_request', target: 'contact', times: 10 })).status, 200)
  const pn = `${C}@s.whatsapp.net`
  await rawSessions(rc, [pn])
  const first = await rawTextMessage(rc, { to: pn, devices: [pn], text: 'insistente' })
  rc.send(first)
  const counts = []
  for (let i = 1; i <= 4; i++) {
    const rr = await rc.waitFor(n => n.tag === 'receipt' && n.attrs.type === 'retry' && n.attrs.id === first.attrs.id, 3000, `retry ${i}`)
    const retry = rr.content.find(x => x.tag === 'retry')
    const keys = rr.content.find(x => x.tag === 'keys')
    counts.push([Number(retry.attrs.count), !!keys])
    assert.equal(rr.attrs.from, pn)
    if (keys) {
      const kid = (t) => Buffer.from(keys.content.find(x => x.tag === t).content)
      const sk = keys.content.find(x => x.tag === 'skey').content
      const k = keys.content.find(x => x.tag === 'key').content
      const buf = (arr, t) => Buffer.from(arr.find(x => x.tag === t).content)
      await rc.raw.signal.initSession(rawAddr(pn), {
        registrationId: buf(rr.content, 'registration').readUInt32BE(0),
        identity: kid('identity'),
        skey: { id: buf(sk, 'id').readUIntBE(0, 3), value: buf(sk, 'value'), signature: buf(sk, 'signature') },
        key: { id: buf(k, 'id').readUIntBE(0, 3), value: buf(k, 'value') }
      })
    }
    const enc = await rc.raw.signal.encrypt(rawAddr(pn), { conversation: 'insistente' })
    rc.send({ tag: 'message', attrs: { id: first.attrs.id, to: pn, type: 'text', device_fanout: 'false' }, content: [
      { tag: 'enc', attrs: { v: '2', type: enc.type, count: String(i) }, content: enc.ciphertext },
      ...(enc.type === 'pkmsg' ? [{ tag: 'device-identity', attrs: {}, content: raw.deviceIdentity }] : [])] })
  }
  assert.deepEqual(counts, [[1, false], [2, true], [3, true], [4, true]])
  await waitFor(async () => (await stats()).retry_receipts_suppressed === s0.retry_receipts_suppressed + 1, { what: 'no 5th receipt' })
  await sleep(100)
  assert.equal(rc.nodes.filter(n => n.tag === 'receipt' && n.attrs.type === 'retry' && n.attrs.id === first.attrs.id).length, 4)
  // (the rest of that fault stays bound to that message id and never fires again)

  // the other way: the contact's message to Baileys is corrupted twice; Baileys' retry receipts count up and the
  // second one carries its keys; the third encryption decrypts
  const before = await sim.ctl('POST', `/contacts/${C}/send`, { to: A, text: 'antes' })
  await waitFor(() => a.h.upserts.find(u => u.key.id === before.body.id), { what: 'session up' })
  assert.equal((await sim.ctl('POST', `/devices/${A}:1/fault`, { type: 'bad_ciphertext', times: 2 })).body.times, 2)
  const r = await sim.ctl('POST', `/contacts/${C}/send`, { to: A, text: 'corrupto dos veces' })
  const got = await waitFor(() => a.h.upserts.find(u => u.key.id === r.body.id && u.message?.conversation), { what: 'decrypted after 2 retries', timeoutMs: 20000 })
  assert.equal(got.message.conversation, 'corrupto dos veces')
  const rec = (await sim.ctl('GET', `/contacts/${C}`)).body.sent.find(x => x.id === r.body.id)
  assert.deepEqual(rec.retries.map(x => [x.count, x.keys]), [[1, false], [2, true]])
  s = await stats()
  assert.equal(s.retry_receipts_received, s0.retry_receipts_received + 2)
})

test('bench mode: 1 message in N decrypted (text checked), the rest acked and delivery-receipted only; sampled decrypts stay valid across skips and a ratchet step', { timeout: 20000 }, async () => {
  const B2 = '573008889004'
  const b2 = (await sim.ctl('POST', '/contacts', { phone: B2, devices: 2 })).body
  const blid = bare(b2.lid).split('@')[0]
  const devs = [`${blid}@lid`, `${blid}:1@lid`, `${raw.lid}@lid`]
  await rawSessions(rc, devs.slice(0, 2))
  const cfg = await sim.ctl('POST', '/config', { bench_sample: 3, read_receipts: false, bench_text_pattern: '^bench \\d+$' })
  assert.equal(cfg.body.bench_sample, 3)
  assert.equal(cfg.body.read_receipts, false)
  const s0 = await stats()
  const ids = []
  const send = async (text) => {
    const m = await rawTextMessage(rc, { to: `${blid}@lid`, devices: devs, text, peerRecipientPn: `${B2}@s.whatsapp.net`, chat: `${blid}@lid` })
    rc.send(m)
    ids.push(m.attrs.id)
    await rc.waitFor(n => n.tag === 'ack' && n.attrs.id === m.attrs.id, 3000, 'ack')
  }
  for (let i = 0; i < 7; i++) await send(`bench ${i}`)
  // the contact answers (its device 0 either continues the session it decrypted or starts one): the raw client
  // decrypts it, so its next messages start a new ratchet chain, whose first two messages are skipped
  const ans = await sim.ctl('POST', `/contacts/${B2}/send`, { to: R, text: 'respuesta', as: 'lid' })
  const got = await rc.waitFor(n => n.tag === 'message' && n.attrs.id === ans.body.id, 3000, 'contact message')
  const enc = got.content.find(x => x.tag === 'enc')
  const plain = await rc.raw.signal.decrypt(rawAddr(got.attrs.from), enc.attrs.type, Buffer.from(enc.content))
  assert.equal(plain.conversation, 'respuesta')
  // device 0 decrypted the first (sampled) pkmsg, so it answers in that session: a ratchet step for the client
  assert.deepEqual((await sim.ctl('GET', `/contacts/${B2}`)).body.sent.find(x => x.id === ans.body.id).enc_types, { 1: ['msg'] })
  rc.send({ tag: 'receipt', attrs: { id: got.attrs.id, to: got.attrs.from } })
  for (let i = 7; i < 12; i++) await send(`bench ${i}`)
  await send('not the pattern') // the 13th: sampled (12 % 3 == 0), wrong text
  const s = await waitFor(async () => { const x = await stats(); return x.messages_in_total >= s0.messages_in_total + 13 && x }, { what: 'all processed' })
  assert.equal(s.bench_sampled - s0.bench_sampled, 5)
  assert.equal(s.bench_skipped - s0.bench_skipped, 8)
  assert.equal(s.bench_text_errors - s0.bench_text_errors, 1)
  assert.equal(s.decrypt_failures, s0.decrypt_failures)
  const sampled = [0, 3, 6, 9, 12].map(i => ids[i])
  const ib = (await inbox(B2)).filter(e => e.from === R)
  assert.deepEqual(ib.filter(e => e.device === 0).map(e => e.id), sampled)
  assert.deepEqual(ib.filter(e => e.device === 1).map(e => e.id), sampled)
  assert.deepEqual(ib.filter(e => e.device === 0).map(e => e.text), ['bench 0', 'bench 3', 'bench 6', 'bench 9', 'not the pattern'])
  const ph = (await account(R)).phone_inbox.filter(p => ids.includes(p.id))
  assert.deepEqual(ph.map(p => p.id), sampled)
  // every message got its delivery receipt, none a read receipt
  await waitFor(() => ids.every(id => rc.nodes.some(n => n.tag === 'receipt' && n.attrs.id === id && !n.attrs.type)), { what: '13 delivery receipts' })
  await sleep(400)
  assert.equal(rc.nodes.filter(n => n.tag === 'receipt' && ids.includes(n.attrs.id) && n.attrs.type === 'read').length, 0)
  const back = await sim.ctl('POST', '/config', { bench_sample: 0, read_receipts: true, bench_text_pattern: null })
  assert.equal(back.body.bench_sample, 0)
  assert.equal((await sim.ctl('POST', '/config', { bench_sample: -1 })).status, 400)
  assert.equal((await sim.ctl('POST', '/config', { bench_text_pattern: '(' })).status, 400)
})

test('offline: a contact message waits for the next login and `passive active` (offline_preview, offline="1", ib offline); without a receipt it comes again', { timeout: 20000 }, async () => {
  const offline = async () => { rc.close(); await waitFor(async () => !(await account(R)).devices[0].connected, { what: 'offline' }) }
  const active = (c) => c.send({ tag: 'iq', attrs: { id: 'act-' + Date.now(), xmlns: 'passive', type: 'set', to: '@s.whatsapp.net' }, content: [{ tag: 'active', attrs: {} }] })
  await offline()
  const s0 = await stats()
  const r = await sim.ctl('POST', `/contacts/${C}/send`, { to: R, text: 'mientras dormías 🌙' })
  assert.deepEqual(r.body.devices, [1])
  assert.equal((await account(R)).devices[0].queued, 1)
  rc = await raw.connect()
  await sleep(300)
  assert.equal(rc.nodes.some(n => n.tag === 'message'), false) // nothing before the client says it is active
  active(rc)
  const end = await rc.waitFor(n => n.tag === 'ib' && n.content?.[0]?.tag === 'offline', 3000, 'ib offline')
  assert.equal(end.content[0].attrs.count, '1')
  const preview = rc.nodes.findIndex(n => n.tag === 'ib' && n.content?.[0]?.tag === 'offline_preview')
  const mi = rc.nodes.findIndex(n => n.tag === 'message' && n.attrs.id === r.body.id)
  assert.ok(preview >= 0 && preview < mi && mi < rc.nodes.indexOf(end), 'offline_preview, then the message, then ib offline')
  assert.equal(rc.nodes[preview].content[0].attrs.count, '1')
  assert.equal(rc.nodes[preview].content[0].attrs.message, '1')
  const msg = rc.nodes[mi]
  assert.equal(msg.attrs.offline, '1')
  assert.equal(msg.attrs.from, `${C}@s.whatsapp.net`)
  const enc = msg.content.find(x => x.tag === 'enc')
  assert.equal((await rc.raw.signal.decrypt(rawAddr(msg.attrs.from), enc.attrs.type, Buffer.from(enc.content))).conversation, 'mientras dormías 🌙')
  // no receipt, connection gone: the server delivers it again at the next login
  await offline()
  assert.equal((await stats()).redelivered, s0.redelivered + 1)
  assert.equal((await account(R)).devices[0].queued, 1)
  rc = await raw.connect()
  active(rc)
  const again = await rc.waitFor(n => n.tag === 'message' && n.attrs.id === r.body.id, 3000, 'redelivery')
  assert.equal(again.attrs.offline, '1')
  rc.send({ tag: 'receipt', attrs: { id: r.body.id, to: again.attrs.from } })
  await waitFor(async () => (await sim.ctl('GET', `/contacts/${C}`)).body.sent.find(x => x.id === r.body.id)?.delivered.length, { what: 'receipt recorded' })
  await offline()
  rc = await raw.connect()
  active(rc)
  const none = await rc.waitFor(n => n.tag === 'ib' && n.content?.[0]?.tag === 'offline', 3000, 'ib offline (empty)')
  assert.equal(none.content[0].attrs.count, '0')
  assert.equal(rc.nodes.some(n => n.tag === 'message'), false)
  assert.equal((await stats()).redelivered, s0.redelivered + 1)
})
