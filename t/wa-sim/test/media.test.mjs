// Media (issue 13): the media_conn iq, the HTTPS upload/download host with its test CA, its checks and fault knobs,
// contacts that download, verify and decrypt what they receive, and contacts that send documents and images.
// Driven by a raw whatsmeow-like client (lib/testkit.mjs rawDevice) and an independent encryption written here after
// whatsmeow upload.go / download.go; the real Baileys client is in media-baileys.test.mjs.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import { createHash, createHmac, createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, existsSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  startSim, waitFor, exitWhenDone, rawDevice, rawUploadPreKeys, rawSessions, rawTextMessage, rawAddr
} from '../lib/testkit.mjs'
import { getBinaryNodeChild, getBinaryNodeChildren } from 'baileys'

const R = '573008870001' // raw (whatsmeow-like) account
const C = '573008879001' // contact, 2 devices
let sim, dir, ca, raw, rc, contact
const stats = async () => (await sim.ctl('GET', '/stats')).body
const inbox = async (p) => (await sim.ctl('GET', `/contacts/${p}/inbox`)).body

/** whatsmeow upload.go Upload: media key -> HKDF(info) -> AES-256-CBC, mac = HMAC(iv‖ct)[:10], body = ct‖mac */
function wmEncrypt (plain, info) {
  const mediaKey = randomBytes(32)
  const x = Buffer.from(hkdfSync('sha256', mediaKey, Buffer.alloc(0), info, 112))
  const iv = x.subarray(0, 16); const cipherKey = x.subarray(16, 48); const macKey = x.subarray(48, 80)
  const c = createCipheriv('aes-256-cbc', cipherKey, iv)
  const ct = Buffer.concat([c.update(plain), c.final()])
  const mac = createHmac('sha256', macKey).update(iv).update(ct).digest().subarray(0, 10)
  const body = Buffer.concat([ct, mac])
  return { mediaKey, body, fileEncSha256: sha(body), fileSha256: sha(plain), fileLength: plain.length, iv, cipherKey, macKey }
}
function wmDecrypt (body, mediaKey, info) {
  const x = Buffer.from(hkdfSync('sha256', mediaKey, Buffer.alloc(0), info, 112))
  const iv = x.subarray(0, 16); const cipherKey = x.subarray(16, 48); const macKey = x.subarray(48, 80)
  const ct = body.subarray(0, body.length - 10)
  assert.deepEqual(createHmac('sha256', macKey).update(iv).update(ct).digest().subarray(0, 10), body.subarray(body.length - 10), 'mac')
  const d = createDecipheriv('aes-256-cbc', cipherKey, iv)
  return Buffer.concat([d.update(ct), d.final()])
}
const sha = (b) => createHash('sha256').update(b).digest()
const b64url = (b) => Buffer.from(b).toString('base64url')

/** one HTTPS request; opts.ca: trust it (else the system store only); opts.timeoutMs; resolves {status, body} */
function req (method, url, { body, ca: trust, timeoutMs = 10000, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const r = https.request(url, { method, ca: trust || undefined, agent: false, headers: { origin: 'https://web.whatsapp.com', ...headers } }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }))
    })
    r.setTimeout(timeoutMs, () => r.destroy(new Error('timeout')))
    r.on('error', reject)
    r.end(body)
  })
}
const json = (r) => JSON.parse(r.body.toString('utf8'))

async function mediaConn () {
  const res = await rc.query({ tag: 'iq', attrs: { xmlns: 'w:m', type: 'set', to: 's.whatsapp.net' }, content: [{ tag: 'media_conn', attrs: {} }] })
  return res
}
/** what whatsmeow's queryMediaConn reads (mediaconn.go): auth, ttl, auth_ttl, max_buckets, <host hostname> */
async function mediaConnParsed () {
  const res = await mediaConn()
  assert.equal(res.attrs.type, 'result')
  const mc = getBinaryNodeChild(res, 'media_conn')
  assert.ok(mc, 'media_conn child')
  for (const k of ['ttl', 'auth_ttl', 'max_buckets']) assert.match(mc.attrs[k], /^\d+$/, k)
  assert.ok(mc.attrs.auth.length >= 20)
  const hosts = getBinaryNodeChildren(mc, 'host').map(h => h.attrs.hostname)
  return { auth: mc.attrs.auth, ttl: Number(mc.attrs.ttl), hosts, node: mc }
}
/** whatsmeow rawUpload: POST https://<host>/mms/<type>/<token>?auth=&token=, token = base64.URLEncoding (padded) */
async function upload (mc, enc, { type = 'document', token, auth = mc.auth, trust = ca, timeoutMs } = {}) {
  const t = token ?? Buffer.from(enc.fileEncSha256).toString('base64').replace(/\+/g, '-').replace(/\//g, '_')
  const q = new URLSearchParams({ auth, token: t }).toString()
  return req('POST', `https://${mc.hosts[0]}/mms/${type}/${t}?${q}`, { body: enc.body, ca: trust, timeoutMs, headers: { 'content-length': enc.body.length } })
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'wa-sim-media-'))
  sim = await startSim(['--media-dir', path.join(dir, 'media')])
  ca = readFileSync(sim.info.media_ca)
  contact = (await sim.ctl('POST', '/contacts', { phone: C, devices: 2 })).body
  raw = await rawDevice(sim, { phone: R })
  rc = await raw.connect()
  await rawUploadPreKeys(rc)
  rc.send({ tag: 'iq', attrs: { id: 'act-1', xmlns: 'passive', type: 'set', to: '@s.whatsapp.net' }, content: [{ tag: 'active', attrs: {} }] })
  await rc.waitFor(n => n.tag === 'ib' && n.content?.[0]?.tag === 'offline', 5000, 'ib offline')
}, { timeout: 30000 })
after(async () => {
  rc?.close()
  await sim?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
  exitWhenDone()
})

test('ready line, media_conn as whatsmeow parses it, a certificate for 127.0.0.1 from the test CA only', { timeout: 20000 }, async () => {
  assert.match(sim.info.media_url, /^https:\/\/127\.0\.0\.1:\d+$/)
  assert.equal(sim.info.media_host, sim.info.media_url.slice('https://'.length))
  assert.equal(sim.info.media_ca, path.join(dir, 'media', 'ca.pem'))
  const view = (await sim.ctl('GET', '/media')).body
  assert.equal(view.ca, sim.info.media_ca)
  assert.equal(view.url, sim.info.media_url)
  const mc = await mediaConnParsed()
  assert.deepEqual(mc.hosts, [sim.info.media_host])
  assert.equal(mc.ttl, 300)
  assert.equal(mc.node.attrs.auth_ttl, '21600')
  assert.equal(getBinaryNodeChildren(mc.node, 'host')[0].attrs.maxContentLengthBytes, String(100 * 1024 * 1024))
  // the certificate names 127.0.0.1 as an IP address and chains to the CA; nothing else trusts it
  const enc = wmEncrypt(Buffer.from('x'.repeat(100)), 'WhatsApp Document Keys')
  await assert.rejects(upload(mc, enc, { trust: null }), (e) => /self[- ]signed|unable to (get|verify)|UNABLE_TO/i.test(e.code + ' ' + e.message))
  const other = mkdtempSync(path.join(tmpdir(), 'wa-sim-other-ca-'))
  try {
    const { makeMediaCerts } = await import('../lib/media.mjs')
    const wrongCa = readFileSync(makeMediaCerts(other).ca)
    await assert.rejects(upload(mc, enc, { trust: wrongCa }), /self[- ]signed|unable to|certificate/i)
  } finally { rmSync(other, { recursive: true, force: true }) }
  assert.equal((await upload(mc, enc)).status, 200)
  assert.equal((await stats()).media_conn_iqs, 1)
})

test('upload (whatsmeow and Baileys token forms), JSON answer, download by direct path, checks → 4xx', { timeout: 20000 }, async () => {
  const mc = await mediaConnParsed()
  const plain = randomBytes(70000)
  const enc = wmEncrypt(plain, 'WhatsApp Document Keys')
  const r = await upload(mc, enc)
  assert.equal(r.status, 200, r.body.toString())
  const j = json(r)
  assert.match(j.direct_path, /^\/v\/t62\.7119-24\/\d+_[0-9a-f]{64}_n\.enc\?ccb=11-4&oh=[^&]+&oe=[0-9A-F]+&_nc_sid=5e03e0$/)
  assert.equal(j.url, `${sim.info.media_url}${j.direct_path}&mms3=true`)
  assert.match(j.object_id, /^\d+$/)
  // whatsmeow download.go DownloadMediaWithPath: https://<host><direct_path>&hash=…&mms-type=…&__wa-mms=
  const dl = await req('GET', `https://${mc.hosts[0]}${j.direct_path}&hash=${b64url(enc.fileEncSha256)}&mms-type=document&__wa-mms=`, { ca })
  assert.equal(dl.status, 200)
  assert.deepEqual(dl.body, enc.body)
  assert.deepEqual(wmDecrypt(dl.body, enc.mediaKey, 'WhatsApp Document Keys'), plain)
  // and by url (Baileys uses the direct path on the url's host)
  assert.deepEqual((await req('GET', j.url, { ca })).body, enc.body)
  // Baileys' token: unpadded; an image this time
  const enc2 = wmEncrypt(randomBytes(5000), 'WhatsApp Image Keys')
  const r2 = await upload(mc, enc2, { type: 'image', token: b64url(enc2.fileEncSha256) })
  assert.equal(r2.status, 200)
  assert.match(json(r2).direct_path, /^\/v\/t62\.7118-24\//)
  // refusals
  const s0 = await stats()
  assert.equal((await upload(mc, enc, { auth: 'not-an-auth' })).status, 401)
  assert.equal((await upload(mc, enc, { auth: mc.auth.replace(/[+/=]/g, ' ') })).status, 401, 'auth must be URL-encoded by the client')
  assert.equal((await upload(mc, enc, { token: b64url(sha(Buffer.from('other'))) })).status, 400, 'token != SHA-256 of the body')
  const t = b64url(enc.fileEncSha256)
  const mism = await req('POST', `https://${mc.hosts[0]}/mms/document/${t}?auth=${encodeURIComponent(mc.auth)}&token=${b64url(sha(Buffer.from('x')))}`, { body: enc.body, ca })
  assert.equal(mism.status, 400, 'query token differs from the path')
  const odd = { body: Buffer.concat([enc.body, Buffer.from([1])]) }
  odd.fileEncSha256 = sha(odd.body)
  assert.equal((await upload(mc, odd)).status, 400, 'not 16n+10 bytes')
  assert.equal((await upload(mc, enc, { type: 'bogus' })).status, 400)
  // size cap (Content-Length and streamed)
  await sim.ctl('POST', '/media/config', { max_bytes: 1000 })
  assert.equal((await upload(mc, enc)).status, 413)
  const mcAfter = await mediaConnParsed()
  assert.equal(getBinaryNodeChildren(mcAfter.node, 'host')[0].attrs.maxContentLengthBytes, '1000')
  await sim.ctl('POST', '/media/config', { max_bytes: 100 * 1024 * 1024 })
  const s1 = await stats()
  assert.equal(s1.media_upload_errors['401'] - (s0.media_upload_errors['401'] || 0), 2)
  assert.equal(s1.media_upload_errors['400'] - (s0.media_upload_errors['400'] || 0), 4)
  assert.equal(s1.media_upload_errors['413'], 1)
  assert.deepEqual(readdirSync(path.join(dir, 'media', 'tmp')), [], 'no temporary upload left')
  // download refusals: a direct path whose signature was tampered with, an unknown blob
  assert.equal((await req('GET', `${sim.info.media_url}${j.direct_path.replace(/oh=01_./, 'oh=01_Z')}`, { ca })).status, 403)
  assert.equal((await req('GET', `${sim.info.media_url}/v/t62.7119-24/1_${'0'.repeat(64)}_n.enc?oh=x&oe=FFFFFFFF`, { ca })).status, 403)
  assert.equal((await req('GET', `${sim.info.media_url}/nothing`, { ca })).status, 404)
  assert.ok(existsSync(path.join(dir, 'media', 'blobs', enc.fileEncSha256.toString('hex'))), 'blob stored by encrypted hash')
})

test('fault knobs: refuse, garbage JSON, stall, media_conn error, expired auth, corrupted download', { timeout: 30000 }, async () => {
  let mc = await mediaConnParsed()
  const enc = wmEncrypt(randomBytes(3000), 'WhatsApp Document Keys')
  const fault = async (b) => { const r = await sim.ctl('POST', '/media/fault', b); assert.equal(r.status, 200, JSON.stringify(r.body)); return r.body }
  assert.equal((await sim.ctl('POST', '/media/fault', { type: 'nope' })).status, 400)
  assert.equal((await sim.ctl('POST', '/media/fault', { type: 'refuse', code: 200 })).status, 400)
  assert.equal((await sim.ctl('POST', '/media/fault', { type: 'corrupt', on: 'upload' })).status, 400)
  // refuse: stays until cleared, or `times`
  await fault({ type: 'refuse', code: 500 })
  assert.equal((await upload(mc, enc)).status, 500)
  assert.equal((await upload(mc, enc)).status, 500)
  await fault({ type: 'clear' })
  await fault({ type: 'refuse', code: 403, times: 1 })
  assert.equal((await upload(mc, enc)).status, 403)
  assert.equal((await upload(mc, enc)).status, 200)
  // garbage: 200 with a body that is not JSON
  await fault({ type: 'garbage', times: 1 })
  const g = await upload(mc, enc)
  assert.equal(g.status, 200)
  assert.throws(() => json(g))
  // stall: the request is read and never answered, until `clear` cuts it
  await fault({ type: 'stall' })
  const t0 = Date.now()
  await assert.rejects(upload(mc, enc, { timeoutMs: 1500 }), /timeout/)
  assert.ok(Date.now() - t0 >= 1400 && Date.now() - t0 < 5000)
  const held = upload(mc, enc, { timeoutMs: 20000 }).then(() => null, (err) => err)
  // the held request has reached the host (the second stalled one; the first may not be gone from `stalled` yet)
  await waitFor(async () => (await sim.ctl('GET', '/media')).body.uploads.filter(u => u.error === 'fault stall').length === 2, { what: 'stalled request' })
  await fault({ type: 'clear' })
  assert.match(String((await held)?.message), /socket hang up|ECONNRESET/)
  assert.equal((await upload(mc, enc)).status, 200)
  // media_conn iq error
  await fault({ type: 'media_conn_error', code: 503, times: 1 })
  const e = await mediaConn()
  assert.equal(e.attrs.type, 'error')
  assert.equal(getBinaryNodeChild(e, 'error').attrs.code, '503')
  // expire_auth: the old auth is refused, a fresh media_conn works
  await fault({ type: 'expire_auth' })
  assert.equal((await upload(mc, enc)).status, 401)
  mc = await mediaConnParsed()
  const ok = await upload(mc, enc)
  assert.equal(ok.status, 200)
  // downloads: refused, corrupted
  const dp = json(ok).direct_path
  await fault({ type: 'refuse', on: 'download', code: 404, times: 1 })
  assert.equal((await req('GET', `${sim.info.media_url}${dp}`, { ca })).status, 404)
  await fault({ type: 'corrupt', times: 1 })
  const bad = await req('GET', `${sim.info.media_url}${dp}`, { ca })
  assert.equal(bad.status, 200)
  assert.notDeepEqual(bad.body, enc.body)
  assert.throws(() => wmDecrypt(bad.body, enc.mediaKey, 'WhatsApp Document Keys'), /mac/)
  assert.deepEqual((await req('GET', `${sim.info.media_url}${dp}`, { ca })).body, enc.body)
  const s = await stats()
  assert.ok(s.media_faults_injected >= 9)
  assert.deepEqual((await sim.ctl('GET', '/media')).body.faults, [])
})

test('a contact\'s two devices and the own phone download, verify and decrypt a document (whatsmeow-style send); bad hashes are caught', { timeout: 30000 }, async () => {
  const plain = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(300000), Buffer.from('\n%%EOF\n')])
  const mc = await mediaConnParsed()
  const enc = wmEncrypt(plain, 'WhatsApp Document Keys')
  const up = json(await upload(mc, enc))
  const doc = {
    url: up.url, mimetype: 'application/pdf', title: 'receta.pdf', fileSha256: enc.fileSha256, fileLength: enc.fileLength,
    pageCount: 1, mediaKey: enc.mediaKey, fileName: 'receta.pdf', fileEncSha256: enc.fileEncSha256, directPath: up.direct_path,
    mediaKeyTimestamp: Math.floor(Date.now() / 1000), caption: 'su receta'
  }
  const cpn = `${C}@s.whatsapp.net`
  const devices = [cpn, `${C}:1@s.whatsapp.net`, `${R}@s.whatsapp.net`]
  await rawSessions(rc, devices)
  const m = await rawTextMessage(rc, { to: cpn, devices, message: { documentMessage: doc }, mediatype: 'document' })
  assert.equal(m.attrs.type, 'media')
  rc.send(m)
  await rc.waitFor(n => n.tag === 'ack' && n.attrs.id === m.attrs.id, 5000, 'ack')
  const want = sha(plain).toString('hex')
  const entries = await waitFor(async () => {
    const es = (await inbox(C)).filter(e => e.id === m.attrs.id)
    return es.length === 2 && es.every(e => e.media?.status !== 'downloading') && es
  }, { what: 'both devices decrypted the document' })
  for (const e of entries) {
    assert.deepEqual(
      { type: e.media.type, filename: e.media.filename, mimetype: e.media.mimetype, caption: e.media.caption, sha256: e.media.sha256, size: e.media.size, status: e.media.status, page_count: e.media.page_count },
      { type: 'document', filename: 'receta.pdf', mimetype: 'application/pdf', caption: 'su receta', sha256: want, size: plain.length, status: 'ok', page_count: 1 })
    assert.equal(e.text, null)
  }
  assert.deepEqual(entries.map(e => e.device).sort(), [0, 1])
  const phone = await waitFor(async () => {
    const p = (await sim.ctl('GET', `/accounts/${R}`)).body.phone_inbox.find(x => x.id === m.attrs.id)
    return p?.media?.status === 'ok' && p
  }, { what: 'the phone decrypted its copy' })
  assert.equal(phone.media.sha256, want)
  assert.equal(phone.dsm, true)

  // a wrong fileSha256 (whatsmeow ErrInvalidMediaSHA256) and a download the host corrupts (ErrInvalidMediaHMAC...)
  const bad = { ...doc, fileSha256: sha(Buffer.from('not it')) }
  const m2 = await rawTextMessage(rc, { to: cpn, devices: [cpn], message: { documentMessage: bad }, mediatype: 'document' })
  rc.send(m2)
  const e2 = await waitFor(async () => { const e = (await inbox(C)).find(x => x.id === m2.attrs.id); return e?.media?.status === 'error' && e }, { what: 'sha mismatch seen' })
  assert.equal(e2.media.error, 'fileSha256 mismatch')
  assert.equal(e2.media.sha256, null)
  await sim.ctl('POST', '/media/fault', { type: 'corrupt', times: 1 })
  const m3 = await rawTextMessage(rc, { to: cpn, devices: [cpn], message: { documentMessage: doc }, mediatype: 'document' })
  rc.send(m3)
  const e3 = await waitFor(async () => { const e = (await inbox(C)).find(x => x.id === m3.attrs.id); return e?.media?.status === 'error' && e }, { what: 'corruption seen' })
  assert.equal(e3.media.error, 'fileEncSha256 mismatch')
  // the right blob and hashes but another media key: the mac does not verify (whatsmeow ErrInvalidMediaHMAC)
  const m4 = await rawTextMessage(rc, { to: cpn, devices: [cpn], message: { documentMessage: { ...doc, mediaKey: randomBytes(32) } }, mediatype: 'document' })
  rc.send(m4)
  const e4 = await waitFor(async () => { const e = (await inbox(C)).find(x => x.id === m4.attrs.id); return e?.media?.status === 'error' && e }, { what: 'mac mismatch seen' })
  assert.equal(e4.media.error, 'media mac mismatch')
  const s = await stats()
  assert.ok(s.media_received >= 3)
  assert.equal(s.media_receive_errors, 3)
})

test('a contact sends a document and an image: uploaded to the host, the raw client downloads and decrypts both', { timeout: 30000 }, async () => {
  const file = Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(123457)])
  const r = await sim.ctl('POST', `/contacts/${C}/send`, { to: R, media: { type: 'document', data: file.toString('base64'), filename: 'factura.pdf', mimetype: 'application/pdf', caption: 'su factura' } })
  assert.equal(r.status, 200, JSON.stringify(r.body))
  assert.equal(r.body.media.sha256, sha(file).toString('hex'))
  const msg = await rc.waitFor(n => n.tag === 'message' && n.attrs.id === r.body.id, 5000, 'media message')
  assert.equal(msg.attrs.type, 'media')
  const encNode = getBinaryNodeChild(msg, 'enc')
  assert.equal(encNode.attrs.mediatype, 'document')
  const plain = await rc.raw.signal.decrypt(rawAddr(msg.attrs.from), encNode.attrs.type, Buffer.from(encNode.content))
  const d = plain.documentMessage
  assert.equal(d.fileName, 'factura.pdf')
  assert.equal(d.mimetype, 'application/pdf')
  assert.equal(d.caption, 'su factura')
  assert.equal(Number(d.fileLength), file.length)
  assert.deepEqual(Buffer.from(d.fileSha256), sha(file))
  assert.ok(d.url.startsWith(`${sim.info.media_url}/v/t62.7119-24/`))
  const body = (await req('GET', `https://${sim.info.media_host}${d.directPath}&hash=${b64url(d.fileEncSha256)}&mms-type=document&__wa-mms=`, { ca })).body
  assert.deepEqual(sha(body), Buffer.from(d.fileEncSha256))
  assert.deepEqual(wmDecrypt(body, Buffer.from(d.mediaKey), 'WhatsApp Document Keys'), file)
  rc.send({ tag: 'receipt', attrs: { id: msg.attrs.id, to: msg.attrs.from } })

  const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(20000), Buffer.from([0xff, 0xd9])])
  const r2 = await sim.ctl('POST', `/contacts/${C}/send`, { to: R, media: { type: 'image', data: jpeg.toString('base64'), mimetype: 'image/jpeg', caption: 'los lentes', width: 640, height: 480 } })
  assert.equal(r2.status, 200)
  const msg2 = await rc.waitFor(n => n.tag === 'message' && n.attrs.id === r2.body.id, 5000, 'image message')
  const enc2 = getBinaryNodeChild(msg2, 'enc')
  assert.equal(enc2.attrs.mediatype, 'image')
  const im = (await rc.raw.signal.decrypt(rawAddr(msg2.attrs.from), enc2.attrs.type, Buffer.from(enc2.content))).imageMessage
  assert.equal(im.caption, 'los lentes')
  assert.equal(im.width, 640)
  const body2 = (await req('GET', im.url, { ca })).body
  assert.deepEqual(wmDecrypt(body2, Buffer.from(im.mediaKey), 'WhatsApp Image Keys'), jpeg)
  // the contact's record of what it sent
  const sent = (await sim.ctl('GET', `/contacts/${C}`)).body.sent.find(x => x.id === r2.body.id)
  assert.equal(sent.media.type, 'image')
  assert.equal(sent.media.sha256, sha(jpeg).toString('hex'))
  // bad requests
  for (const b of [{ to: R, media: { type: 'video', data: 'AA==' } }, { to: R, media: { type: 'document', data: '***' } }, { to: R, text: 'x', media: { type: 'document', data: 'AA==' } }]) {
    assert.equal((await sim.ctl('POST', `/contacts/${C}/send`, b)).status, 400, JSON.stringify(b))
  }
  assert.equal((await stats()).media_sent, 2)
})

test('an upload cut off midway leaves no file; a chunked upload (no Content-Length) is accepted', { timeout: 20000 }, async () => {
  const mc = await mediaConnParsed()
  const enc = wmEncrypt(randomBytes(200000), 'WhatsApp Document Keys')
  const t = b64url(enc.fileEncSha256)
  const url = `https://${mc.hosts[0]}/mms/document/${t}?auth=${encodeURIComponent(mc.auth)}&token=${t}`
  // the client (say, a helper killed with -9) goes away after 64 KiB of a declared 200 KiB
  await new Promise((resolve) => {
    const r = https.request(url, { method: 'POST', ca, agent: false, headers: { 'content-length': enc.body.length } })
    r.on('error', () => resolve())
    r.write(enc.body.subarray(0, 65536), () => setTimeout(() => { r.destroy(); resolve() }, 200))
  })
  const last = await waitFor(async () => {
    const u = (await sim.ctl('GET', '/media')).body.uploads.at(-1)
    return u?.error === 'upload aborted' && u
  }, { what: 'aborted upload recorded' })
  assert.equal(last.status, 0)
  assert.deepEqual(readdirSync(path.join(dir, 'media', 'tmp')), [])
  assert.ok(!existsSync(path.join(dir, 'media', 'blobs', enc.fileEncSha256.toString('hex'))))
  // chunked transfer encoding, two writes
  const r = await new Promise((resolve, reject) => {
    const q = https.request(url, { method: 'POST', ca, agent: false }, (res) => {
      const c = []; res.on('data', d => c.push(d)); res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(c) }))
    })
    q.on('error', reject)
    q.write(enc.body.subarray(0, 100000))
    q.end(enc.body.subarray(100000))
  })
  assert.equal(r.status, 200, r.body.toString())
  assert.ok(existsSync(path.join(dir, 'media', 'blobs', enc.fileEncSha256.toString('hex'))))
  // a refused 3 MB upload: the body is read first, so the client gets the status, not a reset
  const big = wmEncrypt(randomBytes(3e6), 'WhatsApp Document Keys')
  assert.equal((await upload(mc, big, { auth: 'wrong' })).status, 401)
  await sim.ctl('POST', '/media/fault', { type: 'refuse', code: 503, times: 1 })
  assert.equal((await upload(mc, big)).status, 503)
})

test('a restart with the same --media-dir keeps the CA and the direct paths', { timeout: 20000 }, async () => {
  const mc = await mediaConnParsed()
  const enc = wmEncrypt(randomBytes(1000), 'WhatsApp Image Keys')
  const up = json(await upload(mc, enc, { type: 'image' }))
  const caBefore = readFileSync(sim.info.media_ca)
  const certBefore = readFileSync(path.join(dir, 'media', 'server.pem'))
  const sim2 = await startSim(['--media-dir', path.join(dir, 'media')])
  try {
    assert.equal(sim2.info.media_ca, sim.info.media_ca)
    assert.deepEqual(readFileSync(sim2.info.media_ca), caBefore, 'the CA is kept')
    assert.notDeepEqual(readFileSync(path.join(dir, 'media', 'server.pem')), certBefore, 'a new server certificate')
    const r = await req('GET', `${sim2.info.media_url}${up.direct_path}`, { ca: caBefore })
    assert.equal(r.status, 200)
    assert.deepEqual(r.body, enc.body)
  } finally { await sim2.stop() }
})

test('simulators started at once on one fresh --media-dir share one CA', { timeout: 30000 }, async () => {
  const d = path.join(dir, 'shared')
  const sims = await Promise.all([0, 1, 2].map(() => startSim(['--media-dir', d])))
  try {
    const caShared = readFileSync(path.join(d, 'ca.pem'))
    for (const s of sims) {
      assert.equal(s.info.media_ca, path.join(d, 'ca.pem'))
      assert.equal((await req('GET', `${s.info.media_url}/nothing`, { ca: caShared })).status, 404) // TLS verified
    }
    assert.deepEqual(readdirSync(d).filter(f => !['ca.pem', 'ca.key', 'server.pem', 'server.key', 'host.secret', 'blobs', 'tmp'].includes(f)), [])
  } finally { await Promise.all(sims.map(s => s.stop())) }
})
