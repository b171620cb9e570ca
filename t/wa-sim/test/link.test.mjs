// What the gateway's link tests need from the simulator, each observed with the real Baileys rc14 client:
// client version check (405), passkey linking request, per-device concurrency, remove-companion-device
// (logout), and linking by import (no QR scan).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Curve, proto } from 'baileys'
import { verifyXEdDSA } from '../lib/sim.mjs'
import { startSim, startClient, memoryAuth, pairAndLogin, waitFor, sleep, closedWithin, strictCurveVerify, exitWhenDone } from '../lib/testkit.mjs'

const MIN = '2.3000.1047769893' // whatsmeow's newer version (wa-protocol-2026.md "Versions")
const OLD = '2.3000.1043857760' // what Baileys rc14 (and testkit.startClient) advertises
const PHONE = '573006660001'
let sim
const open = []
const client = (o) => { const h = startClient(o); open.push(h); return h }
const stats = async () => (await sim.ctl('GET', '/stats')).body
// the link settings of GET/POST /config (it also carries the messaging settings, test/messaging.test.mjs)
const linkCfg = (c) => ({ min_version: c.min_version, passkey: c.passkey })

before(async () => { strictCurveVerify(); sim = await startSim(['--min-version', MIN]) }, { timeout: 20000 })
after(async () => {
  for (const h of open) h.end()
  await sim?.stop()
  exitWhenDone()
})

test('client version check: outdated Baileys gets 405 (registration and login); lowered or off, it links and logs in', { timeout: 40000 }, async () => {
  assert.deepEqual(linkCfg((await sim.ctl('GET', '/config')).body), { min_version: MIN, passkey: false }) // from --min-version
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
  assert.deepEqual(linkCfg((await sim.ctl('POST', '/config', { min_version: '2.3000.1000000000', passkey: false })).body), { min_version: '2.3000.1000000000', passkey: false })
  const a = await pairAndLogin(sim, PHONE)
  open.push(a.h)
  a.h.end()
  await closedWithin(a.h)

  // raise it again: the next login of that paired device is refused with 405 (a login failure)
  assert.equal((await sim.ctl('POST', '/config', { min_version: MIN, passkey: false })).status, 200)
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
  assert.deepEqual(linkCfg((await sim.ctl('POST', '/config', { min_version: null, passkey: false })).body), { min_version: null, passkey: false })
  const off = client({ info: sim.info, auth: a.auth })
  await waitFor(() => off.isOpen(), { what: 'open with the check off' })
  off.end()
  await closedWithin(off)

  // malformed requests
  assert.equal((await sim.ctl('POST', '/config', { min_version: '2.3000' })).status, 400)
  assert.equal((await sim.ctl('POST', '/config', { nope: 1 })).status, 400)
  assert.deepEqual(linkCfg((await sim.ctl('GET', '/config')).body), { min_version: null, passkey: false })
})

test('remove-companion-device: Baileys sock.logout() sends it; the device is removed and its next login gets 401', { timeout: 30000 }, async () => {
  const P = '573006660002'
  const a = await pairAndLogin(sim, P)
  open.push(a.h)
  const s0 = await stats()
  // a companion may only remove itself: naming another device is refused (Baileys' query throws on the iq error)
  await assert.rejects(a.h.sock.query({
    tag: 'iq',
    attrs: { to: '@s.whatsapp.net', type: 'set', xmlns: 'md' },
    content: [{ tag: 'remove-companion-device', attrs: { jid: `${P}:7@s.whatsapp.net`, reason: 'user_initiated' } }]
  }), (err) => err?.output?.statusCode === 403 || /forbidden/.test(err?.message))
  assert.equal((await stats()).companion_removals, s0.companion_removals)
  // Baileys rc14 logout(): <iq xmlns="md" type="set"><remove-companion-device jid=me.id reason="user_initiated"/>, then end(401)
  await a.h.sock.logout()
  assert.equal(await closedWithin(a.h), 401)
  const acct = await waitFor(async () => {
    const r = (await sim.ctl('GET', `/accounts/${P}`)).body
    return r.devices[0].removed && r
  }, { what: 'device removed' })
  assert.equal(acct.devices[0].linked, false)
  assert.equal(acct.devices[0].removed_reason, 'companion:user_initiated')
  assert.equal(typeof acct.devices[0].removed_at, 'number')
  assert.equal(acct.devices[0].prekeys, 0)
  const s1 = await stats()
  assert.equal(s1.companion_removals, s0.companion_removals + 1)
  // the same credentials cannot log in any more
  const again = client({ info: sim.info, auth: a.auth })
  assert.equal(await closedWithin(again), 401)
  const s2 = await stats()
  assert.equal(s2.login_failures, s1.login_failures + 1)
  assert.equal(s2.failures_sent['401'], (s1.failures_sent['401'] || 0) + 1)
})

test('passkey linking request: after pair-device the registration gets passkey_prologue_request; Baileys ignores it and can still link by QR', { timeout: 30000 }, async () => {
  assert.deepEqual((await sim.ctl('POST', '/passkey', { enabled: true })).body, { enabled: true, last: null })
  assert.equal((await sim.ctl('GET', '/config')).body.passkey, true)
  const s0 = await stats()
  const auth = memoryAuth()
  const c = client({ info: sim.info, auth })
  await waitFor(() => c.qrs.length, { what: 'QR' })
  await waitFor(async () => (await stats()).passkey_requests === s0.passkey_requests + 1, { what: 'passkey request sent' })
  const pk = (await sim.ctl('GET', '/passkey')).body
  assert.equal(pk.enabled, true)
  assert.match(pk.last.notification_id, /^pk-/)
  assert.match(pk.last.options.challenge, /^[A-Za-z0-9_-]{43}$/) // 32 bytes, unpadded base64url (whatsmeow's jsonbytes)
  assert.equal(pk.last.options.allowCredentials[0].type, 'public-key')
  // Baileys rc14 has no handler for this notification type (messages-recv.js processNotification) and its ack throws
  // during registration (buildAckStanza reads creds.me.id; creds.me is unset): logged 'failed to ack notification',
  // nothing sent back, nothing emitted, the socket stays up and keeps showing the QR
  await sleep(300)
  assert.equal((await stats()).passkey_acks, s0.passkey_acks)
  assert.equal((await sim.ctl('GET', '/passkey')).body.last.ack, null)
  assert.equal(c.updates.some(u => u.connection === 'close'), false)

  // the md iqs of whatsmeow's passkey flow, sent through Baileys' own query()
  const md = (type, tag, content) => c.sock.query({ tag: 'iq', attrs: { to: '@s.whatsapp.net', type, xmlns: 'md' }, content: [{ tag, attrs: {}, content }] })
  const opts = await md('get', 'passkey_request_options')
  const optsNode = opts.content.find(n => n.tag === 'passkey_request_options')
  assert.deepEqual(JSON.parse(Buffer.from(optsNode.content).toString()), pk.last.options)
  const ref = (await md('get', 'ref')).content.find(n => n.tag === 'ref')
  assert.equal(Buffer.from(ref.content).toString(), c.qrs[0].split('#')[1].split(',')[0])
  const assertion = JSON.stringify({ id: 'cred', rawId: 'Y3JlZA', type: 'public-key', response: { clientDataJSON: 'e30', authenticatorData: 'AA', signature: 'AA', userHandle: null } })
  await md('set', 'passkey_prologue', [
    { tag: 'credential_id', attrs: {}, content: Buffer.from('cred') },
    { tag: 'webauthn_assertion', attrs: {}, content: Buffer.from(assertion) },
    { tag: 'prologue_payload', attrs: {}, content: Buffer.from([1, 2, 3]) }
  ])
  const got = (await sim.ctl('GET', '/passkey')).body.last.prologue
  assert.equal(got.credential_id, Buffer.from('cred').toString('base64'))
  assert.equal(got.webauthn_assertion, assertion)
  assert.equal(got.prologue_payload, 'AQID')
  assert.equal(got.pairing_handoff_proof, null)
  assert.equal((await stats()).passkey_prologues, s0.passkey_prologues + 1)

  // the QR still links (the simulator does not make the scan depend on the passkey)
  const r = await sim.ctl('POST', '/scan', { qr: c.qrs[0], phone: '573006660003' })
  assert.equal(r.status, 200, JSON.stringify(r.body))
  assert.equal(await closedWithin(c), 515)
  const h = client({ info: sim.info, auth })
  await waitFor(() => h.isOpen(), { what: 'login after pairing' })
  assert.equal((await stats()).passkey_requests, s0.passkey_requests + 1) // logins never get one
  h.end()
  await closedWithin(h)
  assert.equal((await sim.ctl('POST', '/passkey', { enabled: false })).body.enabled, false)
  assert.equal((await sim.ctl('POST', '/passkey', { enabled: 'yes' })).status, 400)
})

// the request body for /accounts/import from Baileys creds (initAuthCreds())
const importBody = (cr, phone, device, extra = {}) => ({
  phone,
  device,
  noise_pub: Buffer.from(cr.noiseKey.public).toString('base64'),
  identity_pub: Buffer.from(cr.signedIdentityKey.public).toString('base64'),
  registration_id: cr.registrationId,
  skey: {
    id: cr.signedPreKey.keyId,
    value: Buffer.from(cr.signedPreKey.keyPair.public).toString('base64'),
    signature: Buffer.from(cr.signedPreKey.signature).toString('base64')
  },
  ...extra
})

test('POST /accounts/import links a device without a scan; Baileys logs in with those creds and messages both ways', { timeout: 40000 }, async () => {
  const P = '573006660004'
  const CONTACT = '573006669999'
  const s0 = await stats()
  const auth = memoryAuth() // creds from Baileys' initAuthCreds()
  const cr = auth.creds
  const lidUser = '123456789012345'
  const r = await sim.ctl('POST', '/accounts/import', importBody(cr, P, 3, { lid: `${lidUser}@lid` }))
  assert.equal(r.status, 200, JSON.stringify(r.body))
  assert.equal(r.body.device_jid, `${P}:3@s.whatsapp.net`)
  assert.equal(r.body.lid, `${lidUser}:3@lid`)
  assert.equal(r.body.key_index, 1)
  // what the gateway writes into its store, done here for Baileys: me, and the ADV identity the phone signed, with
  // the device signature added by the companion (as Utils/validate-connection.js configureSuccessfulPairing does)
  cr.me = { id: r.body.device_jid, lid: r.body.lid }
  const account = proto.ADVSignedDeviceIdentity.decode(Buffer.from(r.body.adv_signed_device_identity, 'base64'))
  const accountKey = Buffer.from(r.body.account_signature_key, 'base64')
  assert.deepEqual(Buffer.from(account.accountSignatureKey), accountKey)
  assert.equal(verifyXEdDSA(accountKey, Buffer.concat([Buffer.from([6, 0]), account.details, cr.signedIdentityKey.public]), account.accountSignature), true)
  assert.equal(proto.ADVDeviceIdentity.decode(account.details).keyIndex, 1)
  account.deviceSignature = Curve.sign(cr.signedIdentityKey.private, Buffer.concat([Buffer.from([6, 1]), account.details, cr.signedIdentityKey.public, accountKey]))
  cr.account = account

  const h = client({ info: sim.info, auth })
  await waitFor(() => h.isOpen(), { what: 'login with imported creds' })
  assert.equal(h.qrs.length, 0)
  const s1 = await stats()
  assert.equal(s1.pairings, s0.pairings)
  assert.equal(s1.registrations, s0.registrations)
  assert.equal(s1.logins, s0.logins + 1)
  assert.equal(s1.imports, s0.imports + 1)
  const acct = await waitFor(async () => {
    const a = (await sim.ctl('GET', `/accounts/${P}`)).body
    return a.devices[0].prekeys === 812 && a
  }, { what: 'prekey upload after the first login' })
  assert.equal(acct.lid, `${lidUser}@lid`)
  assert.deepEqual(acct.devices.map(d => [d.id, d.linked, d.connected]), [[3, true, true]])

  // the imported device is a full companion: its message decrypts at a contact, the contact's reply decrypts in Baileys
  assert.equal((await sim.ctl('POST', '/contacts', { phone: CONTACT, devices: 1 })).status, 200)
  const m = await h.sock.sendMessage(`${CONTACT}@s.whatsapp.net`, { text: 'importado ✓' })
  const ib = await waitFor(async () => (await sim.ctl('GET', `/contacts/${CONTACT}/inbox`)).body.find(e => e.id === m.key.id), { what: 'contact decrypts' })
  assert.equal(ib.text, 'importado ✓')
  const back = await sim.ctl('POST', `/contacts/${CONTACT}/send`, { to: P, text: 'recibido' })
  assert.deepEqual(back.body.devices, [3])
  const got = await waitFor(() => h.upserts.find(u => u.key.id === back.body.id), { what: 'reply decrypted' })
  assert.equal(got.message.conversation, 'recibido')
  h.end()
  await closedWithin(h)

  // refusals: the same device again, a reused Noise key, a bad signed-prekey signature, a different LID
  assert.equal((await sim.ctl('POST', '/accounts/import', importBody(cr, P, 3))).status, 409)
  assert.equal((await sim.ctl('POST', '/accounts/import', importBody(cr, P, 4))).status, 409) // noise_pub in use
  const other = memoryAuth().creds
  const badSig = importBody(other, P, 4)
  badSig.skey.signature = Buffer.from(cr.signedPreKey.signature).toString('base64')
  assert.equal((await sim.ctl('POST', '/accounts/import', badSig)).status, 400)
  assert.equal((await sim.ctl('POST', '/accounts/import', importBody(other, P, 4, { lid: '999999999999999' }))).status, 409)
  assert.equal((await sim.ctl('POST', '/accounts/import', { phone: P })).status, 400)

  // bulk: an array links several accounts in one request (one state write)
  const many = [memoryAuth().creds, memoryAuth().creds, other]
  const bulk = await sim.ctl('POST', '/accounts/import', many.map((c, i) => importBody(c, `57300666100${i}`, 1)))
  assert.equal(bulk.status, 200, JSON.stringify(bulk.body))
  assert.deepEqual(bulk.body.map(x => x.device_jid), [0, 1, 2].map(i => `57300666100${i}:1@s.whatsapp.net`))
  assert.equal(new Set(bulk.body.map(x => x.lid.split(':')[0])).size, 3) // a fresh LID for each new account
  assert.equal((await stats()).imports, s0.imports + 4)
  // a later QR pairing of the account continues above the imported device number
  const q = await pairAndLogin(sim, P)
  open.push(q.h)
  assert.equal(q.deviceJid, `${P}:4@s.whatsapp.net`)
})
