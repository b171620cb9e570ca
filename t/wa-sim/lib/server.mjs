// WebSocket front end: HTTP(S) server, /ws/chat upgrade, per-connection Noise + frame handling.
// Everything above the transport (stanzas) is delegated to the Sim core (lib/sim.mjs).
import http from 'node:http'
import https from 'node:https'
import { readFileSync } from 'node:fs'
import { WebSocketServer } from 'ws'
import { proto } from 'baileys'
import { encodeNode, decodeNode } from './wabinary.mjs'
import { NoiseResponder, FrameReader, encodeFrame, MAX_FRAME } from './noise.mjs'

let connSeq = 0

/** One client WebSocket connection. */
export class Conn {
  constructor (server, ws, req) {
    this.server = server
    this.sim = server.sim
    this.stats = server.stats
    this.log = server.log
    this.ws = ws
    this.id = ++connSeq
    this.remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`
    this.reader = new FrameReader()
    this.noise = new NoiseResponder({ serverStatic: server.keys.serverStatic, certChain: server.certChain })
    this.phase = 'hello' // hello -> finish -> transport -> closed
    this.closed = false
    this.stalled = false // fault "stall": swallow pings (and everything else) without answering
    this.queue = Promise.resolve() // decoded nodes are processed strictly in order
    this.device = null // set by the sim after a successful login: { account, deviceId }
    ws.on('message', (data, isBinary) => this.onData(data, isBinary))
    ws.on('close', () => this.onClose())
    // 'close' fires only after the socket is fully torn down, one or more loop turns after the client's FIN was
    // read; a successor's upgrade read in that window would count as a second concurrent connection. The FIN
    // ('end') is when the client stopped talking to us.
    req.socket.once('end', () => this.onClose())
    ws.on('error', (err) => { this.log(`conn ${this.id} ws error: ${err.message}`); this.onClose() })
  }

  onData (data, isBinary) {
    if (this.closed) return
    if (!isBinary) return // like whatsmeow: ignore text messages
    this.stats.frames_in_bytes += data.length
    let frames
    try {
      frames = this.reader.push(data)
    } catch (err) {
      this.log(`conn ${this.id}: malformed input (${err.message}); closing`)
      return this.close()
    }
    if (this.reader.routingInfo && !this.routingInfo) {
      this.routingInfo = Buffer.from(this.reader.routingInfo)
      this.stats.ed_headers++
    }
    for (const f of frames) {
      this.stats.frames_in++
      try {
        this.onFrame(f)
      } catch (err) {
        this.log(`conn ${this.id}: bad frame in phase ${this.phase} (${err.message}); closing`)
        return this.close()
      }
    }
  }

  onFrame (frame) {
    if (this.phase === 'hello') {
      const reply = this.noise.onClientHello(frame)
      this.phase = 'finish'
      this.sendRaw(reply)
    } else if (this.phase === 'finish') {
      const payloadBytes = this.noise.onClientFinish(frame)
      this.phase = 'transport'
      const payload = proto.ClientPayload.decode(payloadBytes)
      this.clientStatic = this.noise.clientStatic
      this.enqueue(() => this.sim.onClientPayload(this, payload))
    } else if (this.phase === 'transport') {
      const plain = this.noise.transport.decrypt(frame)
      this.enqueue(async () => {
        const node = decodeNode(plain)
        if (this.stalled) return
        await this.sim.onNode(this, node)
      })
    }
  }

  enqueue (fn) {
    this.queue = this.queue.then(() => this.closed ? undefined : fn()).catch((err) => {
      this.log(`conn ${this.id}: error handling input: ${err.stack || err}; closing`)
      this.close()
    })
  }

  sendRaw (payload) {
    if (this.closed) return
    const out = encodeFrame(Buffer.from(payload))
    // Frames written in one turn of the event loop leave in one write (cork until the tick's end): under load an ack
    // and a receipt per message would otherwise cost a syscall each (setNoDelay is on).
    const sock = this.ws._socket
    if (sock && !this.corked) {
      this.corked = true
      sock.cork()
      process.nextTick(() => { this.corked = false; sock.uncork() })
    }
    // the server never sends an intro header; frames go one per WS message (like Baileys does)
    this.ws.send(out)
    this.stats.frames_out++
  }

  /** Send a binary node (Baileys' encoding, lib/wabinary.mjs: adds the 0x00 flags byte). */
  send (node) {
    if (this.closed || this.phase !== 'transport') return
    if (this.server.verbose) this.log(`conn ${this.id} >> ${summarize(node)}`)
    this.sendRaw(this.noise.transport.encrypt(encodeNode(node)))
  }

  /** Write something that is not a valid encrypted frame (fault injection "garbage"). */
  sendGarbage () {
    if (this.closed) return
    const junk = Buffer.from('0000ff' + 'deadbeef'.repeat(8), 'hex')
    junk.writeUIntBE(junk.length - 3, 0, 3)
    this.ws.send(junk)
    this.stats.frames_out++
  }

  streamError (attrs, children = []) {
    this.send({ tag: 'stream:error', attrs, content: children.length ? children : undefined })
    // give the frame a moment to flush, then close like the real server does
    setTimeout(() => this.close(), 50)
  }

  drop () { // abrupt TCP drop, no WS close handshake
    if (this.closed) return
    this.ws.terminate()
    this.onClose()
  }

  close () {
    if (this.closed) return
    try { this.ws.close() } catch {}
    setTimeout(() => { try { this.ws.terminate() } catch {} }, 1000).unref()
    this.onClose()
  }

  onClose () {
    if (this.closed) return
    this.closed = true
    this.phase = 'closed'
    this.server.conns.delete(this)
    this.stats.ws_open = this.server.conns.size
    try { this.sim.onConnClosed(this) } catch (err) { this.log(`onConnClosed: ${err.stack}`) }
  }
}

export function summarize (node) {
  const a = Object.entries(node.attrs || {}).map(([k, v]) => `${k}=${v}`).join(' ')
  let c = ''
  if (Array.isArray(node.content)) c = '[' + node.content.map(n => n.tag).join(',') + ']'
  else if (node.content) c = `(${node.content.length}B)`
  return `<${node.tag} ${a}>${c}`
}

export function newStats () {
  return {
    ws_open: 0,
    ws_total: 0,
    ws_max_concurrent: 0,
    last_upgrade_headers: null,
    connections_open: 0, // authenticated (logged-in) connections
    logins: 0,
    login_failures: 0,
    registrations: 0,
    pairings: 0,
    conflicts_sent: 0,
    frames_in: 0,
    frames_out: 0,
    frames_in_bytes: 0,
    messages_relayed: 0,
    messages_to_clients: 0,
    receipts_sent: 0,
    receipts_received: 0,
    retry_receipts_received: 0,
    retry_receipts_sent: 0,
    ed_headers: 0, // connections that started with the 'ED' routing header
    iqs: 0
  }
}

/**
 * Start the WS server. opts: { host, port, tls: {cert,key} | null, keys, certChain, sim, log }
 * Resolves to { server, port, url }.
 */
export async function startWsServer (opts) {
  const { host, port, tls, sim, log } = opts
  const state = {
    sim,
    log,
    keys: opts.keys,
    certChain: opts.certChain,
    stats: sim.stats,
    conns: new Set(),
    verbose: !!opts.verbose
  }
  const handler = (req, res) => {
    res.writeHead(req.url.split('?')[0] === '/ws/chat' ? 426 : 404, { 'content-type': 'text/plain' })
    res.end(req.url.split('?')[0] === '/ws/chat' ? 'upgrade required\n' : 'not found\n')
  }
  const srv = tls
    ? https.createServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, handler)
    : http.createServer(handler)
  // An idle WS must stay open (the nginx module's first milestone connects and sends nothing);
  // these HTTP timeouts only apply before the upgrade, but make them generous anyway.
  srv.headersTimeout = 120000
  srv.requestTimeout = 0
  srv.keepAliveTimeout = 120000
  // maxPayload bounds one WS message; a Noise frame is < 2^24 plus the intro.
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME + 64 * 1024, perMessageDeflate: false })
  srv.on('upgrade', (req, socket, head) => {
    const path = (req.url || '').split('?')[0]
    if (path !== '/ws/chat') {
      socket.write('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      socket.destroy()
      return
    }
    socket.setTimeout(0)
    socket.setNoDelay(true)
    wss.handleUpgrade(req, socket, head, (ws) => {
      const st = state.stats
      const headers = {}
      for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = v
      st.last_upgrade_headers = headers
      const c = new Conn(state, ws, req)
      state.conns.add(c)
      st.ws_total++
      st.ws_open = state.conns.size
      if (st.ws_open > st.ws_max_concurrent) st.ws_max_concurrent = st.ws_open
      log(`conn ${c.id} open from ${c.remote} (open=${st.ws_open})`)
    })
  })
  srv.on('clientError', (err, socket) => { try { socket.destroy() } catch {} ; void err })
  await new Promise((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(port, host, () => { srv.off('error', reject); resolve() })
  })
  const realPort = srv.address().port
  const url = `${tls ? 'wss' : 'ws'}://${host}:${realPort}/ws/chat`
  return {
    srv,
    state,
    port: realPort,
    url,
    async close () {
      for (const c of [...state.conns]) c.drop()
      await new Promise(resolve => srv.close(() => resolve()))
    }
  }
}
