// The Noise handshake and certificate chain checked with whatsmeow's (strict) rules by a minimal
// initiator written here on Baileys' primitives; plus the ED routing header and malformed input.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import libsignalCurve from 'libsignal/src/curve.js'
import { randomBytes } from 'node:crypto'
import { Curve, hkdf, aesEncryptGCM, aesDecryptGCM, sha256, proto, NOISE_MODE, decodeBinaryNode, encodeBinaryNode, getBinaryNodeChild, getBinaryNodeChildren } from 'baileys'
import { startSim, waitFor } from '../lib/testkit.mjs'

const WA = Buffer.from([0x57, 0x41, 6, 3])
const iv = (n) => { const b = Buffer.alloc(12); b.writeUInt32BE(n, 8); return b }
const frame = (p) => { const b = Buffer.alloc(3 + p.length); b.writeUIntBE(p.length, 0, 3); Buffer.from(p).copy(b, 3); return b }
const strictVerify = (pub, msg, sig) => {
  try { return libsignalCurve.verifySignature(Buffer.concat([Buffer.from([5]), pub]), msg, sig) === true } catch { return false }
}

let sim
before(async () => { sim = await startSim() }, { timeout: 20000 })
after(async () => { await sim.stop() })

function connect () {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(sim.info.ws_url)
    const msgs = []
    let waiter = null
    ws.on('message', (d) => { msgs.push(Buffer.from(d)); if (waiter) { const w = waiter; waiter = null; w() } })
    ws.next = () => msgs.length ? Promise.resolve(msgs.shift()) : new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error('no message')), 5000)
      waiter = () => { clearTimeout(t); res(msgs.shift()) }
    })
    ws.closedP = new Promise(res => ws.once('close', res))
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

/** Client side of §2 steps 1-2; returns the decrypted server static and certificate chain. */
async function hello (ws, prefix = Buffer.alloc(0)) {
  const e = Curve.generateKeyPair()
  const st = { h: Buffer.from(NOISE_MODE), n: 0 }
  st.ck = st.h; st.k = st.h
  const mixHash = (d) => { st.h = sha256(Buffer.concat([st.h, d])) }
  const mixKey = (ikm) => { const o = hkdf(Buffer.from(ikm), 64, { salt: st.ck, info: '' }); st.ck = Buffer.from(o.subarray(0, 32)); st.k = Buffer.from(o.subarray(32)); st.n = 0 }
  const decrypt = (c) => { const p = aesDecryptGCM(c, st.k, iv(st.n++), st.h); mixHash(c); return p }
  mixHash(WA); mixHash(e.public)
  ws.send(Buffer.concat([prefix, WA, frame(proto.HandshakeMessage.encode({ clientHello: { ephemeral: e.public } }).finish())]))
  const data = await ws.next()
  assert.equal(data.readUIntBE(0, 3), data.length - 3)
  const { serverHello } = proto.HandshakeMessage.decode(data.subarray(3))
  mixHash(serverHello.ephemeral)
  mixKey(Curve.sharedKey(e.private, serverHello.ephemeral))
  const serverStatic = decrypt(serverHello.static)
  mixKey(Curve.sharedKey(e.private, serverStatic))
  const cert = proto.CertChain.decode(decrypt(serverHello.payload))
  const encrypt = (p) => { const c = aesEncryptGCM(p, st.k, iv(st.n++), st.h); mixHash(c); return c }
  /** §2 step 3 + split: send ClientFinish with `payload`; returns {send(bytes), recv()} transport. */
  const finish = (noiseKey, payload) => {
    const stat = encrypt(noiseKey.public) // counter 1
    mixKey(Curve.sharedKey(noiseKey.private, serverHello.ephemeral))
    const pl = encrypt(payload) // counter 0
    ws.send(frame(proto.HandshakeMessage.encode({ clientFinish: { static: stat, payload: pl } }).finish()))
    const o = hkdf(Buffer.alloc(0), 64, { salt: st.ck, info: '' })
    const enc = Buffer.from(o.subarray(0, 32)); const dec = Buffer.from(o.subarray(32))
    let w = 0; let r = 0
    return {
      send: (b) => ws.send(frame(aesEncryptGCM(b, enc, iv(w++), Buffer.alloc(0)))),
      recv: async () => { const d = await ws.next(); return aesDecryptGCM(d.subarray(3), dec, iv(r++), Buffer.alloc(0)) }
    }
  }
  return { serverStatic, cert, e, st, finish }
}

test('certificate chain passes whatsmeow rules against the printed root key', { timeout: 15000 }, async () => {
  const ws = await connect()
  const { serverStatic, cert } = await hello(ws)
  const root = Buffer.from(sim.info.root_key, 'base64')
  const D = proto.CertChain.NoiseCertificate.Details
  const inter = D.decode(cert.intermediate.details)
  const leaf = D.decode(cert.leaf.details)
  const nowS = Math.floor(Date.now() / 1000)
  assert.equal(serverStatic.length, 32)
  assert.equal(cert.intermediate.signature.length, 64)
  assert.equal(cert.leaf.signature.length, 64)
  assert.equal(strictVerify(root, cert.intermediate.details, cert.intermediate.signature), true)
  assert.equal(inter.issuerSerial, 0)
  assert.equal(inter.key.length, 32)
  assert.equal(strictVerify(inter.key, cert.leaf.details, cert.leaf.signature), true)
  assert.ok(Number(inter.notBefore) <= nowS && nowS <= Number(inter.notAfter))
  assert.ok(Number(leaf.notBefore) <= nowS && nowS <= Number(leaf.notAfter))
  assert.equal(leaf.issuerSerial, inter.serial)
  assert.equal(inter.serial, 1)
  assert.equal(leaf.serial, 2)
  assert.deepEqual(Buffer.from(leaf.key), serverStatic)
  // and a different root does not verify it
  assert.equal(strictVerify(Curve.generateKeyPair().public, cert.intermediate.details, cert.intermediate.signature), false)
  ws.close()
})

test('the ED routing header in front of the intro is accepted', { timeout: 15000 }, async () => {
  const ws = await connect()
  const ed = Buffer.from([0x45, 0x44, 0x00, 0x01, 0x00, 0x00, 0x02, 0x08, 0x01])
  const { cert } = await hello(ws, ed)
  assert.ok(cert.leaf.details.length > 0)
  ws.close()
})

test('malformed input closes only that connection; the server keeps serving', { timeout: 20000 }, async () => {
  const keep = await connect()
  // a ClientHello that is not a protobuf
  const a = await connect()
  a.send(Buffer.concat([WA, frame(Buffer.from('this is not a protobuf at all, surely'))]))
  await a.closedP
  // a handshake followed by a bogus ClientFinish
  const b = await connect()
  await hello(b)
  b.send(frame(proto.HandshakeMessage.encode({ clientFinish: { static: Buffer.alloc(48), payload: Buffer.alloc(20) } }).finish()))
  await b.closedP
  // text WS messages are ignored (binary only), the connection stays
  keep.send('hello')
  const s = (await sim.ctl('GET', '/stats')).body
  assert.equal(s.ws_open, 1)
  assert.equal(keep.readyState, WebSocket.OPEN)
  const { cert } = await hello(keep)
  assert.ok(cert.leaf)
  keep.close()
  await waitFor(async () => (await sim.ctl('GET', '/stats')).body.ws_open === 0, { what: 'all closed' })
})

test('registration: pair-device from the server JID (FA 00 03) with 6 binary refs, whatsmeow-readable', { timeout: 15000 }, async () => {
  const ws = await connect()
  const { finish } = await hello(ws)
  const noiseKey = Curve.generateKeyPair()
  const identity = Curve.generateKeyPair()
  const skey = Curve.generateKeyPair()
  const payload = proto.ClientPayload.encode({
    passive: false,
    pull: false,
    connectType: 1,
    connectReason: 1,
    userAgent: { platform: 14, appVersion: { primary: 2, secondary: 3000, tertiary: 1 }, releaseChannel: 0 },
    devicePairingData: {
      eRegid: Buffer.from([0, 0, 0, 42]),
      eKeytype: Buffer.from([5]),
      eIdent: identity.public,
      eSkeyId: Buffer.from([0, 0, 1]),
      eSkeyVal: skey.public,
      eSkeySig: Buffer.from(Curve.sign(identity.private, Buffer.concat([Buffer.from([5]), skey.public]))),
      buildHash: Buffer.alloc(16),
      deviceProps: proto.DeviceProps.encode({ os: 'test' }).finish()
    }
  }).finish()
  const t = finish(noiseKey, payload)
  const raw = await t.recv()
  assert.equal(raw[0], 0) // flags: uncompressed
  // the server JID attribute value is a JID_PAIR with an empty user: FA 00 03
  assert.ok(raw.includes(Buffer.from([0xfa, 0x00, 0x03])))
  const iq = await decodeBinaryNode(raw)
  assert.equal(iq.tag, 'iq')
  assert.equal(iq.attrs.from, '@s.whatsapp.net')
  assert.equal(iq.attrs.type, 'set')
  assert.equal(iq.attrs.xmlns, 'md')
  assert.equal(iq.content.length, 1) // whatsmeow wants exactly one child
  const refs = getBinaryNodeChildren(getBinaryNodeChild(iq, 'pair-device'), 'ref')
  assert.equal(refs.length, 6)
  for (const r of refs) {
    assert.ok(r.content instanceof Uint8Array)
    assert.match(Buffer.from(r.content).toString(), /^2@[A-Za-z0-9+/=]+$/)
  }
  const s = (await sim.ctl('GET', '/stats')).body
  assert.equal(s.registrations, 1)
  ws.close()
})

test('login as an unknown device gets <failure reason="401"/>', { timeout: 15000 }, async () => {
  const ws = await connect()
  const { finish } = await hello(ws)
  const s0 = (await sim.ctl('GET', '/stats')).body
  const t = finish(Curve.generateKeyPair(), proto.ClientPayload.encode({ username: 15550000000, device: 3, passive: true, pull: true }).finish())
  const n = await decodeBinaryNode(await t.recv())
  assert.equal(n.tag, 'failure')
  assert.equal(n.attrs.reason, '401')
  await ws.closedP
  const s = (await sim.ctl('GET', '/stats')).body
  assert.equal(s.login_failures, s0.login_failures + 1)
  assert.equal(s.logins, s0.logins)
})

test('pair-device-sign with a device signature by the wrong key is refused (scan -> 502)', { timeout: 15000 }, async () => {
  const ws = await connect()
  const { finish } = await hello(ws)
  const noiseKey = Curve.generateKeyPair()
  const identity = Curve.generateKeyPair()
  const skey = Curve.generateKeyPair()
  const t = finish(noiseKey, proto.ClientPayload.encode({
    passive: false,
    pull: false,
    userAgent: { platform: 14, appVersion: { primary: 2, secondary: 3000, tertiary: 1 }, releaseChannel: 0 },
    devicePairingData: {
      eRegid: Buffer.from([0, 0, 0, 42]),
      eKeytype: Buffer.from([5]),
      eIdent: identity.public,
      eSkeyId: Buffer.from([0, 0, 1]),
      eSkeyVal: skey.public,
      eSkeySig: Buffer.from(Curve.sign(identity.private, Buffer.concat([Buffer.from([5]), skey.public]))),
      buildHash: Buffer.alloc(16)
    }
  }).finish())
  const pd = await decodeBinaryNode(await t.recv())
  const ref = Buffer.from(getBinaryNodeChildren(getBinaryNodeChild(pd, 'pair-device'), 'ref')[0].content).toString()
  const qr = [ref, noiseKey.public.toString('base64'), identity.public.toString('base64'), randomBytes(32).toString('base64'), '1'].join(',')
  const scan = sim.ctl('POST', '/scan', { qr, phone: '573001110000' })
  const ps = await decodeBinaryNode(await t.recv())
  const container = proto.ADVSignedDeviceIdentityHMAC.decode(getBinaryNodeChild(getBinaryNodeChild(ps, 'pair-success'), 'device-identity').content)
  const signed = proto.ADVSignedDeviceIdentity.decode(container.details)
  const msg = Buffer.concat([Buffer.from([6, 1]), signed.details, identity.public, signed.accountSignatureKey])
  const wrongKey = Curve.generateKeyPair()
  signed.deviceSignature = Buffer.from(Curve.sign(wrongKey.private, msg)) // well-formed, but not by the identity key
  t.send(encodeBinaryNode({ tag: 'iq', attrs: { to: '@s.whatsapp.net', type: 'result', id: ps.attrs.id }, content: [
    { tag: 'pair-device-sign', attrs: {}, content: [{ tag: 'device-identity', attrs: { 'key-index': '1' }, content: proto.ADVSignedDeviceIdentity.encode(signed).finish() }] }
  ] }))
  const r = await scan
  assert.equal(r.status, 502)
  assert.equal(r.body.error, 'device signature in pair-device-sign does not verify')
  ws.close()
})
