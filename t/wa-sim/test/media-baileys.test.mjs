// Media with the real Baileys rc14 client (issue 13): Baileys sends a PDF through the simulator to a 2-device contact
// whose devices both decrypt it to the same SHA-256 (the own phone too), and downloads and decrypts a document the
// contact sent it. Baileys runs in a child process (lib/baileys-media-client.mjs) started with
// NODE_EXTRA_CA_CERTS = the simulator's test CA: that is the only way its node:https upload and fetch download trust
// it (TLS verification stays on). The same client without the variable cannot upload.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startSim, waitFor, exitWhenDone } from '../lib/testkit.mjs'

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'lib', 'baileys-media-client.mjs')
const A = '573008860001' // Baileys account (trusts the CA)
const A2 = '573008860002' // Baileys account without the CA
const C = '573008869001' // contact, 2 devices
let sim, dir
const sha = (b) => createHash('sha256').update(b).digest('hex')

/** run the Baileys child; env: extra variables (NODE_EXTRA_CA_CERTS removed unless given); resolves its RESULT */
function runChild (env, timeoutMs = 90000) {
  const e = { ...process.env, WA_SIM_INFO: JSON.stringify(sim.info), ...env }
  if (!('NODE_EXTRA_CA_CERTS' in env)) delete e.NODE_EXTRA_CA_CERTS
  const p = spawn(process.execPath, [CHILD], { env: e, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''; let err = ''
  p.stdout.on('data', (d) => { out += d })
  p.stderr.on('data', (d) => { err += d; if (err.length > 1e6) err = err.slice(-5e5); if (process.env.WA_SIM_DEBUG) process.stderr.write(d) })
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`Baileys child timed out; stderr:\n${err.slice(-4000)}`)) }, timeoutMs)
    p.on('exit', (code) => {
      clearTimeout(t)
      const line = out.split('\n').find(l => l.startsWith('RESULT '))
      if (code !== 0 || !line) return reject(new Error(`Baileys child exited ${code}; stdout:\n${out}\nstderr:\n${err.slice(-4000)}`))
      resolve(JSON.parse(line.slice('RESULT '.length)))
    })
  })
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'wa-sim-media-baileys-'))
  sim = await startSim(['--media-dir', path.join(dir, 'media')])
  assert.equal((await sim.ctl('POST', '/contacts', { phone: C, devices: 2 })).status, 200)
}, { timeout: 20000 })
after(async () => {
  await sim?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
  exitWhenDone()
})

test('Baileys sends a 2 MB PDF to a 2-device contact (both decrypt it, same SHA-256) and downloads the contact\'s document', { timeout: 120000 }, async () => {
  // a 2 MB "PDF" (header, a binary stream, trailer)
  const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n1 0 obj\n<< /Length 2097000 >>\nstream\n'), randomBytes(2097000), Buffer.from('\nendstream\nendobj\ntrailer\n<< >>\n%%EOF\n')])
  const incoming = Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(250001), Buffer.from('\n%%EOF\n')])
  writeFileSync(path.join(dir, 'send.pdf'), pdf)
  writeFileSync(path.join(dir, 'receive.pdf'), incoming)
  const r = await runChild({
    NODE_EXTRA_CA_CERTS: sim.info.media_ca, MEDIA_ACCOUNT: A, MEDIA_CONTACT: C,
    MEDIA_SEND: path.join(dir, 'send.pdf'), MEDIA_RECEIVE: path.join(dir, 'receive.pdf')
  })
  assert.equal(r.error, undefined, r.error)
  assert.equal(r.send_error, undefined, r.send_error)
  assert.equal(r.node_extra_ca_certs, sim.info.media_ca)
  // what Baileys put in its DocumentMessage: the host named in media_conn
  assert.ok(r.sent.url.startsWith(`${sim.info.media_url}/v/t62.7119-24/`), r.sent.url)
  assert.match(r.sent.direct_path, /^\/v\/t62\.7119-24\//)
  assert.equal(r.sent.file_sha256, sha(pdf))
  assert.equal(r.sent.file_length, pdf.length)
  assert.equal(r.sent.delivered, true)
  // both contact devices downloaded, verified and decrypted it
  const want = sha(pdf)
  const entries = await waitFor(async () => {
    const es = (await sim.ctl('GET', `/contacts/${C}/inbox`)).body.filter(e => e.id === r.sent.id)
    return es.length === 2 && es.every(e => e.media?.status === 'ok') && es
  }, { timeoutMs: 20000, what: 'both contact devices decrypted the PDF' })
  assert.deepEqual(entries.map(e => e.device).sort(), [0, 1])
  for (const e of entries) {
    assert.deepEqual(
      { type: e.media.type, filename: e.media.filename, mimetype: e.media.mimetype, sha256: e.media.sha256, size: e.media.size, caption: e.media.caption },
      { type: 'document', filename: 'comprobante.pdf', mimetype: 'application/pdf', sha256: want, size: pdf.length, caption: 'envío de comprobante' })
  }
  // the own phone's copy (deviceSentMessage)
  const phone = await waitFor(async () => {
    const p = (await sim.ctl('GET', `/accounts/${A}`)).body.phone_inbox.find(x => x.id === r.sent.id)
    return p?.media?.status === 'ok' && p
  }, { what: 'the phone decrypted its copy' })
  assert.equal(phone.media.sha256, want)
  // Baileys downloaded and decrypted the contact's document (fetch, NODE_EXTRA_CA_CERTS)
  assert.equal(r.received.sha256, sha(incoming))
  assert.equal(r.received.size, incoming.length)
  assert.deepEqual([r.received.file_name, r.received.mimetype, r.received.caption], ['receta.pdf', 'application/pdf', 'su receta'])
  const s = (await sim.ctl('GET', '/stats')).body
  assert.ok(s.media_conn_iqs >= 1)
  assert.equal(s.media_uploads, 2) // Baileys' PDF and the contact's document
  assert.ok(s.media_downloads >= 4) // 2 contact devices + phone + Baileys
  assert.ok((await sim.ctl('GET', '/media')).body.uploads.some(u => u.status === 200 && u.origin === 'https://web.whatsapp.com' && u.size === pdf.length + 16 - (pdf.length % 16) + 10))
})

test('without NODE_EXTRA_CA_CERTS the same Baileys client cannot upload (TLS verification is on)', { timeout: 120000 }, async () => {
  const before = (await sim.ctl('GET', '/stats')).body
  writeFileSync(path.join(dir, 'small.pdf'), Buffer.from('%PDF-1.4\nsmall\n%%EOF\n'))
  const r = await runChild({ MEDIA_ACCOUNT: A2, MEDIA_CONTACT: C, MEDIA_SEND: path.join(dir, 'small.pdf') })
  assert.equal(r.error, undefined, r.error)
  assert.equal(r.node_extra_ca_certs, null)
  assert.equal(r.sent, undefined)
  assert.match(r.send_error, /Media upload failed on all hosts/)
  const after = (await sim.ctl('GET', '/stats')).body
  assert.equal(after.media_uploads, before.media_uploads)
  assert.ok(after.media_conn_iqs > before.media_conn_iqs, 'it did ask for media_conn')
})
