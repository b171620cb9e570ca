#!/usr/bin/env node
// Child process for test/media-baileys.test.mjs: the real Baileys rc14 client sends and receives documents through
// the simulator's media host. Baileys uploads with node:https and downloads with fetch, and both trust the test CA
// only through NODE_EXTRA_CA_CERTS, which Node reads when the process starts: so this runs in its own process,
// started with that variable (or without it, to show that the upload then fails).
//
// env: WA_SIM_INFO (the simulator's ready line), MEDIA_ACCOUNT, MEDIA_CONTACT, MEDIA_SEND (a file Baileys sends as
// a PDF), MEDIA_RECEIVE (a file the contact sends to Baileys; optional). Prints one line `RESULT {json}` on stdout.
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import * as B from 'baileys'
import { pairAndLogin, waitFor, strictCurveVerify } from './testkit.mjs'

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} not set`); return v }
const info = JSON.parse(env('WA_SIM_INFO'))
const ctl = async (method, p, body) => {
  const res = await fetch(info.control_url + p, {
    method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(30000)
  })
  return { status: res.status, body: await res.json() }
}
const sha = (b) => createHash('sha256').update(b).digest('hex')
const account = env('MEDIA_ACCOUNT'); const contact = env('MEDIA_CONTACT')
const result = { node_extra_ca_certs: process.env.NODE_EXTRA_CA_CERTS ?? null }
let h
try {
  strictCurveVerify()
  const a = await pairAndLogin({ info, ctl }, account)
  h = a.h
  const file = readFileSync(env('MEDIA_SEND'))
  try {
    // Baileys: media_conn iq, encryptedStream, upload to https://<host from media_conn>/mms/document/<token>?auth&token
    const m = await h.sock.sendMessage(`${contact}@s.whatsapp.net`, {
      document: file, mimetype: 'application/pdf', fileName: 'comprobante.pdf', caption: 'envío de comprobante'
    })
    const d = m.message.documentMessage
    result.sent = {
      id: m.key.id, url: d.url, direct_path: d.directPath, file_sha256: Buffer.from(d.fileSha256).toString('hex'),
      file_length: Number(d.fileLength), file_name: d.fileName, mimetype: d.mimetype, caption: d.caption
    }
    // the contact's delivery receipt
    await waitFor(() => h.msgUpdates.some(u => u.key.id === m.key.id && u.update.status >= 3), { timeoutMs: 10000, what: 'delivery receipt' })
    result.sent.delivered = true
  } catch (err) {
    result.send_error = err.message
  }
  if (process.env.MEDIA_RECEIVE) {
    const inc = readFileSync(process.env.MEDIA_RECEIVE)
    const r = await ctl('POST', `/contacts/${contact}/send`, {
      to: account, media: { type: 'document', data: inc.toString('base64'), filename: 'receta.pdf', mimetype: 'application/pdf', caption: 'su receta' }
    })
    if (r.status !== 200) throw new Error(`contact send: ${JSON.stringify(r.body)}`)
    const up = await waitFor(() => h.upserts.find(x => x.key.id === r.body.id), { timeoutMs: 15000, what: 'the contact\'s document' })
    const d = up.message?.documentMessage
    // Baileys downloads with fetch from the url's host + direct path (downloadContentFromMessage) and decrypts
    const buf = await B.downloadMediaMessage(up, 'buffer', {})
    result.received = {
      id: up.key.id, sha256: sha(buf), size: buf.length, file_name: d?.fileName, mimetype: d?.mimetype, caption: d?.caption,
      declared_sha256: d ? Buffer.from(d.fileSha256).toString('hex') : null
    }
  }
} catch (err) {
  result.error = err.stack || String(err)
} finally {
  h?.end()
}
process.stdout.write('RESULT ' + JSON.stringify(result) + '\n')
// Baileys leaves timers behind (NOTES.md §4)
setTimeout(() => process.exit(0), 200)
