// Control API (HTTP JSON): the tests act as the phone and as the contacts through it.
import http from 'node:http'

class HttpError extends Error {
  constructor (status, message) { super(message); this.status = status }
}
export const httpError = (status, message) => new HttpError(status, message)

const MAX_BODY = 1 << 20
// POST /contacts/:phone/send may carry a file as base64 (media.data): 48 MiB of JSON, ~36 MiB of file
const MAX_MEDIA_BODY = 48 << 20

function readBody (req, limit = MAX_BODY) {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks = []
    req.on('data', (c) => {
      size += c.length
      if (size > limit) { reject(httpError(413, 'body too large')); req.destroy(); return }
      chunks.push(c)
    })
    req.on('end', () => {
      const s = Buffer.concat(chunks).toString('utf8')
      if (!s) return resolve({})
      try { resolve(JSON.parse(s)) } catch { reject(httpError(400, 'invalid JSON')) }
    })
    req.on('error', reject)
  })
}

export async function startControlServer ({ host, port, sim, log }) {
  const media = () => { if (!sim.media) throw httpError(404, 'media host not enabled (start with --media-dir)'); return sim.media }
  // [method, regex, handler(params, body)]
  const routes = [
    ['GET', /^\/stats$/, () => sim.getStats()],
    ['POST', /^\/stats\/reset$/, () => sim.resetStats()],
    ['GET', /^\/config$/, () => sim.getConfig()],
    ['POST', /^\/config$/, (p, b) => sim.setConfig(b)],
    ['GET', /^\/passkey$/, () => sim.getPasskey()],
    ['POST', /^\/passkey$/, (p, b) => sim.setPasskey(b)],
    ['POST', /^\/scan$/, (p, b) => sim.scan(b)],
    ['POST', /^\/pairing-code$/, (p, b) => sim.pairingCode(b)],
    ['POST', /^\/accounts\/import$/, (p, b) => sim.importDevices(b)],
    ['GET', /^\/accounts\/([^/]+)$/, (p) => sim.getAccount(p[1])],
    ['POST', /^\/accounts\/([^/]+)\/unlink$/, (p, b) => sim.unlink(p[1], b)],
    ['POST', /^\/contacts$/, (p, b) => sim.addContact(b)],
    ['GET', /^\/contacts\/([^/]+)$/, (p) => sim.getContact(p[1])],
    ['GET', /^\/contacts\/([^/]+)\/inbox$/, (p) => sim.getInbox(p[1])],
    ['POST', /^\/contacts\/([^/]+)\/send$/, (p, b) => sim.contactSend(p[1], b)],
    ['POST', /^\/contacts\/([^/]+)\/privacy-token$/, (p, b) => sim.privacyToken(p[1], b)],
    ['POST', /^\/devices\/([^/]+)\/fault$/, (p, b) => sim.fault(p[1], b)],
    ['GET', /^\/media$/, () => media().view()],
    ['POST', /^\/media\/config$/, (p, b) => media().setConfig(b)],
    ['POST', /^\/media\/fault$/, (p, b) => media().fault(b)],
    ['GET', /^\/health$/, () => ({ ok: true })]
  ]
  const srv = http.createServer(async (req, res) => {
    let path = (req.url || '/').split('?')[0]
    let status = 200
    let out
    try {
      try { path = decodeURIComponent(path) } catch { throw httpError(400, 'bad URL encoding') }
      const matches = routes.filter(([, re]) => re.test(path))
      if (!matches.length) throw httpError(404, 'no such route')
      const route = matches.find(([m]) => m === req.method)
      if (!route) throw httpError(405, 'method not allowed')
      const body = req.method === 'POST' ? await readBody(req, /\/send$/.test(path) ? MAX_MEDIA_BODY : MAX_BODY) : {}
      out = await route[2](path.match(route[1]), body)
    } catch (err) {
      status = err.status || 500
      out = { error: err.message }
      if (status >= 500) log(`control ${req.method} ${path}: ${err.stack}`)
    }
    const s = JSON.stringify(out ?? {})
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) })
    res.end(s)
  })
  await new Promise((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(port, host, () => { srv.off('error', reject); resolve() })
  })
  return { srv, port: srv.address().port, close: () => new Promise(resolve => { srv.closeAllConnections?.(); srv.close(() => resolve()) }) }
}
