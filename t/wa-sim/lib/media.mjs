// The media host: what the media_conn iq names and what clients upload media to and download it from.
// Followed from whatsmeow 33cfac5 (/work/.mirror/tulir+whatsmeow): mediaconn.go (queryMediaConn: the <media_conn>
// attributes and <host hostname>), upload.go (rawUpload: POST https://<host>/mms/<mmsType>/<token>?auth=&token=,
// token = base64.URLEncoding(fileEncSHA256), JSON answer url/direct_path/handle/object_id), download.go
// (DownloadMediaWithPath: GET https://<host><direct_path>&hash=…&mms-type=…&__wa-mms=, downloadEncryptedMedia /
// validateMedia / downloadAndDecrypt: SHA-256 of the body, HMAC-SHA256(macKey, iv‖ciphertext)[:10], AES-256-CBC,
// SHA-256 of the plaintext; getMediaKeys: HKDF-SHA256 112 bytes, the per-type info string), and from Baileys rc14
// (Utils/messages-media.js getWAUploadToServer: the same URL with the token's `=` padding stripped, node:https).
import https from 'node:https'
import { execFileSync } from 'node:child_process'
import { createHash, createHmac, createDecipheriv, randomBytes, timingSafeEqual } from 'node:crypto'
import { createReadStream, createWriteStream, existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmdirSync, statSync, unlinkSync, writeFileSync, chmodSync } from 'node:fs'
import { unlink as unlinkAsync } from 'node:fs/promises'
import path from 'node:path'
import { getMediaKeys, encryptedStream } from 'baileys'
import { httpError } from './control.mjs'

export const DEFAULT_MAX_BYTES = 100 * 1024 * 1024 // upload body cap (ciphertext‖mac)
const MAC_LEN = 10 // whatsmeow download.go mediaHMACLength
// whatsmeow download.go mediaTypeToMMSType (the upload path segment) and the HKDF info strings (MediaType)
export const MMS_TYPES = {
  image: 'Image', video: 'Video', audio: 'Audio', ptt: 'Audio', document: 'Document', sticker: 'Image',
  'md-msg-hist': 'History', 'md-app-state': 'App State', 'sticker-pack': 'Sticker Pack', 'thumbnail-link': 'Link Thumbnail'
}
// the first path segment of real direct paths per type (/v/t62.7119-24/… for documents, …)
const PATH_CLASS = { image: 't62.7118-24', sticker: 't62.15575-24', video: 't62.7161-24', audio: 't62.7117-24', ptt: 't62.7117-24', document: 't62.7119-24' }
const FAULT_TYPES = ['refuse', 'stall', 'garbage', 'corrupt', 'media_conn_error', 'expire_auth', 'clear']
const b64url = (b) => Buffer.from(b).toString('base64url')

/**
 * A test CA and a server certificate for 127.0.0.1 (IP SAN) and localhost in `dir` (made with the openssl CLI;
 * EC P-256, so it takes milliseconds). An existing CA there (ca.pem + ca.key) is kept, so a client told to trust it
 * before the simulator started keeps trusting it; the server certificate is made anew at every start.
 */
export function makeMediaCerts (dir) {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const run = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: 'pipe' })
  const ca = path.join(dir, 'ca.pem'); const caKey = path.join(dir, 'ca.key')
  const tag = `${process.pid}.${randomBytes(4).toString('hex')}` // simulators may share a directory: own temp names
  if (!existsSync(ca) || !existsSync(caKey)) {
    // one process makes the CA (mkdir is the lock); the others wait for it
    const lock = path.join(dir, 'ca.lock')
    let mine = false
    for (const end = Date.now() + 15000; !mine && !(existsSync(ca) && existsSync(caKey));) {
      try { mkdirSync(lock); mine = true } catch (err) {
        if (err.code !== 'EEXIST') throw err
        try { if (Date.now() - statSync(lock).mtimeMs > 30000) rmdirSync(lock) } catch {} // left by a crash
        if (Date.now() > end) throw new Error(`${lock} held for too long`)
        execFileSync('sleep', ['0.05'])
      }
    }
    if (mine) {
      try {
        if (!existsSync(ca) || !existsSync(caKey)) {
          run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `ca.key.${tag}`, '-out', `ca.pem.${tag}`,
            '-days', '30', '-subj', '/CN=wa-sim media test CA',
            '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
          chmodSync(path.join(dir, `ca.key.${tag}`), 0o600)
          renameSync(path.join(dir, `ca.key.${tag}`), caKey)
          renameSync(path.join(dir, `ca.pem.${tag}`), ca)
        }
      } finally { rmdirSync(lock) }
    }
  }
  writeFileSync(path.join(dir, `server.ext.${tag}`), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' +
    'extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n')
  try {
    run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `server.key.${tag}`, '-out', `server.csr.${tag}`, '-subj', '/CN=127.0.0.1')
    chmodSync(path.join(dir, `server.key.${tag}`), 0o600)
    run('x509', '-req', '-in', `server.csr.${tag}`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '0x' + randomBytes(8).toString('hex'),
      '-out', `server.pem.${tag}`, '-days', '30', '-extfile', `server.ext.${tag}`)
    const out = { cert: readFileSync(path.join(dir, `server.pem.${tag}`)), key: readFileSync(path.join(dir, `server.key.${tag}`)) }
    // the newest server certificate is also left as server.pem / server.key (for inspection)
    renameSync(path.join(dir, `server.key.${tag}`), path.join(dir, 'server.key'))
    renameSync(path.join(dir, `server.pem.${tag}`), path.join(dir, 'server.pem'))
    return { ca, ...out }
  } finally {
    for (const f of [`server.ext.${tag}`, `server.csr.${tag}`, `server.key.${tag}`, `server.pem.${tag}`]) { try { unlinkSync(path.join(dir, f)) } catch {} }
  }
}

/** base64url with or without `=` padding (whatsmeow keeps it, Baileys strips it) -> Buffer, or null */
function decodeToken (s) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]+={0,2}$/.test(s)) return null
  const b = Buffer.from(s.replace(/=+$/, ''), 'base64url')
  return b.length === 32 ? b : null
}

export class MediaHost {
  constructor ({ dir, maxBytes = DEFAULT_MAX_BYTES, log, stats }) {
    this.dir = path.resolve(dir)
    this.maxBytes = maxBytes
    this.log = log
    this.ttl = 300 // seconds the client may cache the media_conn answer (whatsmeow MediaConn.TTL)
    this.authTtl = 21600
    this.maxBuckets = 12
    this.auths = new Map() // auth -> expiry (ms)
    this.faults = [] // [{type, on, code, left}]
    this.stalled = new Set() // responses held open by the stall fault
    this.uploads = [] // the last 100 upload attempts: {t, type, status, size, error, origin}
    this.stats = stats
    Object.assign(stats, {
      media_conn_iqs: 0, media_uploads: 0, media_upload_bytes: 0, media_upload_errors: {}, media_downloads: 0,
      media_download_errors: {}, media_faults_injected: 0, media_received: 0, media_receive_errors: 0, media_sent: 0
    })
  }

  async start (host = '127.0.0.1', port = 0) {
    this.certs = makeMediaCerts(this.dir)
    this.caPem = readFileSync(this.certs.ca)
    mkdirSync(path.join(this.dir, 'blobs'), { recursive: true })
    mkdirSync(path.join(this.dir, 'tmp'), { recursive: true })
    const secretFile = path.join(this.dir, 'host.secret') // signs direct paths (oh=); kept so they survive restarts
    if (!existsSync(secretFile)) { // created atomically: simulators sharing the directory must agree on it
      const tmp = `${secretFile}.${process.pid}.${randomBytes(4).toString('hex')}`
      writeFileSync(tmp, randomBytes(32).toString('hex'), { mode: 0o600 })
      try { linkSync(tmp, secretFile) } catch (err) { if (err.code !== 'EEXIST') throw err } finally { unlinkSync(tmp) }
    }
    this.secret = Buffer.from(readFileSync(secretFile, 'utf8').trim(), 'hex')
    this.agent = new https.Agent({ ca: this.caPem, keepAlive: false }) // the contacts' own client
    this.srv = https.createServer({ cert: this.certs.cert, key: this.certs.key }, (req, res) => {
      this.onRequest(req, res).catch(err => {
        this.log(`media host ${req.method} ${req.url?.split('?')[0]}: ${err.stack}`)
        if (!res.headersSent) this.reply(res, 500, { error: 'internal' })
      })
    })
    this.srv.headersTimeout = 30000
    this.srv.requestTimeout = 0 // a stalled answer is the fault's business; big uploads take their time
    this.srv.on('clientError', (err, socket) => { try { socket.destroy() } catch {} ; void err })
    await new Promise((resolve, reject) => {
      this.srv.once('error', reject)
      this.srv.listen(port, host, () => { this.srv.off('error', reject); resolve() })
    })
    this.port = this.srv.address().port
    this.hostname = `${host.includes(':') ? `[${host}]` : host}:${this.port}`
    this.url = `https://${this.hostname}`
    return this
  }

  view () {
    return {
      url: this.url, hostname: this.hostname, ca: this.certs.ca, dir: this.dir, max_bytes: this.maxBytes,
      ttl: this.ttl, auth_ttl: this.authTtl, max_buckets: this.maxBuckets, auths_valid: [...this.auths.values()].filter(x => x > Date.now()).length,
      faults: this.faults.map(f => ({ type: f.type, on: f.on, code: f.code ?? null, times_left: f.left ?? null })),
      stalled: this.stalled.size, uploads: this.uploads
    }
  }

  setConfig (b = {}) {
    for (const k of ['ttl', 'auth_ttl', 'max_bytes']) {
      if (k in b && !(Number.isInteger(b[k]) && b[k] > 0)) throw httpError(400, `${k} must be a positive integer`)
    }
    for (const k of Object.keys(b)) if (!['ttl', 'auth_ttl', 'max_bytes'].includes(k)) throw httpError(400, `unknown key ${k}`)
    if ('ttl' in b) this.ttl = b.ttl
    if ('auth_ttl' in b) this.authTtl = b.auth_ttl
    if ('max_bytes' in b) this.maxBytes = b.max_bytes
    return this.view()
  }

  /**
   * POST /media/fault {type, on?, code?, times?}: refuse (HTTP `code`, default 500), stall (read the request, never
   * answer), garbage (200 with a body that is not JSON), corrupt (download only: one byte of the blob flipped),
   * media_conn_error (the iq gets an error `code`, default 500), expire_auth (every auth handed out so far is
   * refused from now on, as after auth_ttl), clear (all faults off, stalled requests cut). `on`: upload (default),
   * download or both. A fault stays until cleared; `times` N: only the next N requests.
   */
  fault (b = {}) {
    const { type } = b
    if (!FAULT_TYPES.includes(type)) throw httpError(400, `type must be one of ${FAULT_TYPES.join(', ')}`)
    if (type === 'clear') {
      this.faults = []
      for (const res of this.stalled) { try { res.socket?.destroy() } catch {} }
      this.stalled.clear()
      return this.view()
    }
    if (type === 'expire_auth') { this.auths.clear(); return this.view() }
    const on = b.on ?? (type === 'corrupt' ? 'download' : type === 'media_conn_error' ? 'media_conn' : 'upload')
    const valid = type === 'corrupt' ? ['download'] : type === 'media_conn_error' ? ['media_conn'] : ['upload', 'download', 'both']
    if (!valid.includes(on)) throw httpError(400, `on must be one of ${valid.join(', ')} for ${type}`)
    let code
    if (type === 'refuse' || type === 'media_conn_error') {
      code = b.code ?? 500
      if (!Number.isInteger(code) || code < 400 || code > 599) throw httpError(400, 'code must be 400..599')
    }
    let left
    if (b.times !== undefined) {
      if (!Number.isInteger(b.times) || b.times < 1 || b.times > 1000) throw httpError(400, 'times must be 1..1000')
      left = b.times
    }
    this.faults.push({ type, on, code, left })
    return this.view()
  }

  takeFault (kind) {
    const i = this.faults.findIndex(f => f.on === kind || (f.on === 'both' && (kind === 'upload' || kind === 'download')))
    if (i < 0) return null
    const f = this.faults[i]
    if (f.left !== undefined && --f.left <= 0) this.faults.splice(i, 1)
    this.stats.media_faults_injected++
    return f
  }

  issueAuth () {
    const auth = randomBytes(32).toString('base64') // '+', '/' and '=' in it: clients must URL-encode it
    this.auths.set(auth, Date.now() + this.authTtl * 1000)
    if (this.auths.size > 1000) this.auths.delete(this.auths.keys().next().value)
    return auth
  }

  /** The answer to <iq xmlns="w:m" type="set"><media_conn/></iq> (whatsmeow mediaconn.go queryMediaConn), or a fault. */
  mediaConn () {
    this.stats.media_conn_iqs++
    const f = this.takeFault('media_conn')
    if (f) return { error: f.code }
    return {
      node: {
        tag: 'media_conn',
        attrs: { auth: this.issueAuth(), ttl: String(this.ttl), auth_ttl: String(this.authTtl), max_buckets: String(this.maxBuckets) },
        content: [{ tag: 'host', attrs: { hostname: this.hostname, maxContentLengthBytes: String(this.maxBytes) } }]
      }
    }
  }

  reply (res, status, obj, raw) {
    const body = raw ?? JSON.stringify(obj)
    res.writeHead(status, { 'content-type': raw ? 'text/html' : 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }

  noteUpload (rec) {
    this.uploads.push({ t: Math.floor(Date.now() / 1000), ...rec })
    if (this.uploads.length > 100) this.uploads.shift()
    if (rec.status !== 200) this.stats.media_upload_errors[rec.status] = (this.stats.media_upload_errors[rec.status] || 0) + 1
  }

  /** hold the request: read (and drop) its body, never answer; cut at `clear` or shutdown */
  stall (req, res) {
    this.stalled.add(res)
    req.on('data', () => {})
    res.on('close', () => this.stalled.delete(res))
  }

  async onRequest (req, res) {
    const u = new URL(req.url || '/', 'https://media.invalid')
    const segs = u.pathname.split('/')
    if (req.method === 'POST' && segs.length === 4 && segs[1] === 'mms') return this.onUpload(req, res, u, segs[2], segs[3])
    if (req.method === 'GET' && segs[1] === 'v') return this.onDownload(req, res, u)
    req.resume()
    this.reply(res, 404, { error: 'not found' })
  }

  async onUpload (req, res, u, mmsType, pathToken) {
    const rec = { type: mmsType, origin: req.headers.origin ?? null, size: null }
    const fail = async (status, error, { drain = true } = {}) => {
      this.noteUpload({ ...rec, status, error })
      if (drain && !req.complete) {
        // read (and drop) the rest of the body first, so the client gets the answer rather than a reset
        let n = 0
        await new Promise(resolve => {
          req.on('data', (c) => { n += c.length; if (n > this.maxBytes) req.destroy() }) // bounded, like an accepted body
          req.on('end', resolve); req.on('close', resolve); req.on('error', resolve)
        })
      } else {
        res.setHeader('connection', 'close') // an oversize body is not read: answer and close
        req.resume()
      }
      if (!res.destroyed) this.reply(res, status, { error })
    }
    const f = this.takeFault('upload')
    if (f?.type === 'stall') { this.noteUpload({ ...rec, status: 0, error: 'fault stall' }); return this.stall(req, res) }
    if (f?.type === 'refuse') return fail(f.code, 'fault refuse')
    if (!MMS_TYPES[mmsType]) return fail(400, `unknown media type ${mmsType}`)
    const auth = u.searchParams.get('auth')
    const exp = auth !== null ? this.auths.get(auth) : undefined
    if (!exp) return fail(401, 'auth missing or unknown')
    if (exp < Date.now()) return fail(401, 'auth expired')
    let tokenStr
    try { tokenStr = decodeURIComponent(pathToken) } catch { return fail(400, 'bad token encoding') }
    const token = decodeToken(tokenStr)
    const qToken = decodeToken(u.searchParams.get('token'))
    if (!token) return fail(400, 'token is not base64url of 32 bytes')
    if (!qToken || !qToken.equals(token)) return fail(400, 'token query parameter differs from the path')
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null
    if (declared !== null && declared > this.maxBytes) return fail(413, `body larger than ${this.maxBytes} bytes`, { drain: false })
    // stream the body to a temporary file, hashing it; never more than one chunk in memory
    const tmp = path.join(this.dir, 'tmp', `up-${process.pid}-${randomBytes(6).toString('hex')}`)
    const out = createWriteStream(tmp, { mode: 0o600 })
    const h = createHash('sha256')
    let size = 0
    const outcome = await new Promise((resolve) => {
      let done = false
      const finish = (r) => { if (!done) { done = true; resolve(r) } }
      req.on('data', (chunk) => {
        if (done) return // after an oversize body: drained, not kept
        size += chunk.length
        if (size > this.maxBytes) return finish('too_big')
        h.update(chunk)
        if (!out.write(chunk)) { req.pause(); out.once('drain', () => req.resume()) }
      })
      req.on('end', () => finish('ok'))
      req.on('error', () => finish('aborted'))
      req.on('close', () => finish(req.complete ? 'ok' : 'aborted'))
    })
    await new Promise(resolve => out.end(resolve))
    rec.size = size
    if (outcome === 'too_big') { await unlinkAsync(tmp).catch(() => {}); return fail(413, `body larger than ${this.maxBytes} bytes`, { drain: false }) }
    if (outcome !== 'ok' || (declared !== null && size !== declared)) {
      await unlinkAsync(tmp).catch(() => {})
      return this.noteUpload({ ...rec, status: 0, error: 'upload aborted' })
    }
    const hash = h.digest()
    if (!hash.equals(token)) { await unlinkAsync(tmp).catch(() => {}); return fail(400, 'token is not the SHA-256 of the body') }
    // an encrypted upload is AES-CBC ciphertext (whole 16-byte blocks, at least one) followed by the 10-byte mac
    if (size < 16 + MAC_LEN || (size - MAC_LEN) % 16 !== 0) {
      await unlinkAsync(tmp).catch(() => {})
      return fail(400, 'body is not ciphertext‖mac (length must be 16n+10)')
    }
    const hex = hash.toString('hex')
    renameSync(tmp, path.join(this.dir, 'blobs', hex))
    const objectId = String(BigInt('0x' + hex.slice(0, 15)))
    const directPath = this.directPath(mmsType, hex, objectId)
    this.stats.media_uploads++
    this.stats.media_upload_bytes += size
    if (f?.type === 'garbage') { this.noteUpload({ ...rec, status: 200, error: 'fault garbage' }); return this.reply(res, 200, null, '<html><body>upstream error</body></html>\n{"url":') }
    this.noteUpload({ ...rec, status: 200, error: null, enc_sha256: hex, direct_path: directPath })
    this.reply(res, 200, { url: `${this.url}${directPath}&mms3=true`, direct_path: directPath, object_id: objectId })
  }

  /** /v/<class>/<object>_<hex sha256 of the blob>_n.enc?ccb=11-4&oh=<signature>&oe=<expiry, hex unix s>&_nc_sid=5e03e0 */
  directPath (mmsType, hex, objectId) {
    const p = `/v/${PATH_CLASS[mmsType] || 't62.7119-24'}/${objectId}_${hex}_n.enc`
    const oe = Math.floor(Date.now() / 1000 + 30 * 86400).toString(16).toUpperCase()
    return `${p}?ccb=11-4&oh=${this.sign(p, oe)}&oe=${oe}&_nc_sid=5e03e0`
  }

  sign (p, oe) { return '01_' + b64url(createHmac('sha256', this.secret).update(`${p}|${oe}`).digest().subarray(0, 24)) }

  async onDownload (req, res, u) {
    req.resume()
    const fail = (status, error) => {
      this.stats.media_download_errors[status] = (this.stats.media_download_errors[status] || 0) + 1
      this.reply(res, status, { error })
    }
    const f = this.takeFault('download')
    if (f?.type === 'stall') return this.stall(req, res)
    if (f?.type === 'refuse') return fail(f.code, 'fault refuse')
    const m = /^\/v\/[a-z0-9.-]+\/\d+_([0-9a-f]{64})_n\.enc$/.exec(u.pathname)
    if (!m) return fail(404, 'not found')
    const oh = u.searchParams.get('oh'); const oe = u.searchParams.get('oe')
    const want = oe ? this.sign(u.pathname, oe) : null
    if (!oh || !want || oh.length !== want.length || !timingSafeEqual(Buffer.from(oh), Buffer.from(want))) return fail(403, 'bad signature (oh)')
    if (parseInt(oe, 16) * 1000 < Date.now()) return fail(410, 'url expired (oe)')
    const file = path.join(this.dir, 'blobs', m[1])
    let st
    try { st = statSync(file) } catch { return fail(404, 'no such blob') }
    this.stats.media_downloads++
    if (f?.type === 'garbage') return this.reply(res, 200, null, '<html><body>not media</body></html>\n')
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size })
    if (f?.type === 'corrupt') {
      // flip one byte in the middle: the mac (and the file hash) no longer match
      const buf = readFileSync(file)
      buf[buf.length >> 1] ^= 0x01
      return res.end(buf)
    }
    createReadStream(file).pipe(res)
  }

  // ------------------------------------------------------------------------------------------------------------
  // The simulated devices' side: they use this host over HTTPS like any client (trusting the test CA).

  /** an https request to the host; body: a file path or Buffer; resolves {status, body (Buffer, capped)} */
  request (method, urlPath, { body, headers = {}, onData } = {}) {
    return new Promise((resolve, reject) => {
      const req = https.request(`${this.url}${urlPath}`, { method, agent: this.agent, headers: { origin: 'https://web.whatsapp.com', ...headers } }, (res) => {
        const chunks = []; let size = 0
        res.on('data', (c) => {
          size += c.length
          if (size > this.maxBytes + 1024) { req.destroy(new Error('response too large')); return }
          if (onData && res.statusCode === 200) onData(c); else chunks.push(c)
        })
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks), size }))
        res.on('error', reject)
      })
      req.setTimeout(30000, () => req.destroy(new Error('media host timed out')))
      req.on('error', reject)
      if (typeof body === 'string') createReadStream(body).on('error', reject).pipe(req)
      else req.end(body)
    })
  }

  /**
   * Encrypt `data` as media of `mmsType` with Baileys' encryptedStream (Utils/messages-media.js: random media key,
   * getMediaKeys, AES-256-CBC, HMAC[:10], the hashes) and upload it here like Baileys' getWAUploadToServer does.
   * Returns the fields of the ImageMessage / DocumentMessage.
   */
  async encryptAndUpload (data, mmsType) {
    const enc = await encryptedStream(data, mmsType)
    try {
      const token = b64url(enc.fileEncSha256)
      const auth = encodeURIComponent(this.issueAuth())
      const r = await this.request('POST', `/mms/${mmsType}/${token}?auth=${auth}&token=${token}`, {
        body: enc.encFilePath, headers: { 'content-type': 'application/octet-stream', 'content-length': statSync(enc.encFilePath).size }
      })
      let j = null
      try { j = JSON.parse(r.body.toString('utf8')) } catch {}
      if (r.status !== 200 || !j?.direct_path) throw httpError(502, `upload to the media host failed: ${r.status} ${r.body.toString('utf8').slice(0, 200)}`)
      this.stats.media_sent++
      return {
        url: j.url, directPath: j.direct_path, mediaKey: enc.mediaKey, fileEncSha256: enc.fileEncSha256,
        fileSha256: enc.fileSha256, fileLength: enc.fileLength, mediaKeyTimestamp: Math.floor(Date.now() / 1000)
      }
    } finally {
      await unlinkAsync(enc.encFilePath).catch(() => {})
    }
  }

  /**
   * A simulated device received media: download it by direct path, check it and decrypt it the way whatsmeow's
   * downloadAndDecrypt does (download.go: SHA-256 of body = fileEncSha256, HMAC-SHA256(macKey, iv‖ciphertext)[:10]
   * = the last 10 bytes, AES-256-CBC, SHA-256 of the plaintext = fileSha256), keys from Baileys' getMediaKeys.
   * Streams: at most one chunk plus 10 bytes held. Resolves {sha256 (hex), size}; throws with the reason.
   * (Baileys' own downloadContentFromMessage checks neither the mac nor the hashes, and its fetch would trust the
   * test CA only through NODE_EXTRA_CA_CERTS, which this process cannot set for itself: see NOTES.md §9.)
   */
  async downloadAndDecrypt (m, mmsType) {
    if (!m.directPath || !m.directPath.startsWith('/')) throw new Error('no direct path')
    if (!m.mediaKey?.length) throw new Error('no media key')
    if (m.fileEncSha256?.length !== 32 || m.fileSha256?.length !== 32) throw new Error('fileEncSha256/fileSha256 missing')
    const { iv, cipherKey, macKey } = await getMediaKeys(Buffer.from(m.mediaKey), mmsType)
    const encHash = createHash('sha256')
    const mac = createHmac('sha256', macKey).update(iv)
    const aes = createDecipheriv('aes-256-cbc', cipherKey, iv)
    const plainHash = createHash('sha256')
    let held = Buffer.alloc(0) // the last MAC_LEN bytes seen so far (the mac, once the body ends)
    let plainSize = 0
    const feed = (c) => {
      encHash.update(c)
      const all = held.length ? Buffer.concat([held, c]) : c
      const body = all.subarray(0, Math.max(0, all.length - MAC_LEN))
      held = Buffer.from(all.subarray(body.length))
      if (body.length) { mac.update(body); const p = aes.update(body); plainHash.update(p); plainSize += p.length }
    }
    const q = `&hash=${encodeURIComponent(Buffer.from(m.fileEncSha256).toString('base64url'))}&mms-type=${mmsType}&__wa-mms=`
    const r = await this.request('GET', m.directPath + q, { onData: feed })
    if (r.status !== 200) throw new Error(`download failed with HTTP ${r.status}`)
    if (r.size <= MAC_LEN) throw new Error('file too short')
    if (!encHash.digest().equals(Buffer.from(m.fileEncSha256))) throw new Error('fileEncSha256 mismatch')
    if (!timingSafeEqual(mac.digest().subarray(0, MAC_LEN), held)) throw new Error('media mac mismatch')
    let last
    try { last = aes.final() } catch (err) { throw new Error(`decrypt failed: ${err.message}`) }
    plainHash.update(last); plainSize += last.length
    const sha = plainHash.digest()
    if (!sha.equals(Buffer.from(m.fileSha256))) throw new Error('fileSha256 mismatch')
    return { sha256: sha.toString('hex'), size: plainSize }
  }

  async close () {
    for (const res of this.stalled) { try { res.socket?.destroy() } catch {} }
    this.stalled.clear()
    this.srv.closeAllConnections?.()
    await new Promise(resolve => this.srv.close(() => resolve()))
  }
}

/** The media part of a decrypted message (unwrapping a deviceSentMessage): {kind, mmsType, msg} or null */
export function mediaOf (m) {
  const inner = m?.deviceSentMessage?.message ?? m
  if (inner?.documentMessage) return { kind: 'document', mmsType: 'document', msg: inner.documentMessage }
  if (inner?.documentWithCaptionMessage?.message?.documentMessage) return { kind: 'document', mmsType: 'document', msg: inner.documentWithCaptionMessage.message.documentMessage }
  if (inner?.imageMessage) return { kind: 'image', mmsType: 'image', msg: inner.imageMessage }
  return null
}
