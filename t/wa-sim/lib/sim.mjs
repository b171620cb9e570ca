// Sim core (placeholder: WS-level stats only; stanza handling follows).
import { newStats } from './server.mjs'
import { httpError } from './control.mjs'

export class Sim {
  constructor (opts) {
    this.opts = opts
    this.log = opts.log
    this.stats = newStats()
  }
  async load () {}
  attach (ws) { this.ws = ws }
  shutdown () {}
  getStats () { return { ...this.stats } }
  resetStats () {
    const s = this.stats
    s.ws_total = 0
    s.ws_max_concurrent = s.ws_open
    return this.getStats()
  }
  async onClientPayload (conn, payload) { this.log(`conn ${conn.id}: client payload ${JSON.stringify(payload.toJSON())}`) }
  async onNode (conn, node) { this.log(`conn ${conn.id}: node ${node.tag}`) }
  onConnClosed (conn) {}
  scan () { throw httpError(501, 'not implemented yet') }
}
