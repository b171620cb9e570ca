// Persistent state: phone accounts (PN, LID, account signature key, linked devices with their uploaded
// keys) and contacts (each device a libsignal identity). Written atomically (tmp + rename) to --state.
import { existsSync, readFileSync } from 'node:fs'
import { randomInt } from 'node:crypto'
import { Curve } from 'baileys'
import { SignalDevice } from './signal-device.mjs'

const b64 = (b) => Buffer.from(b).toString('base64')
const unb64 = (s) => Buffer.from(s, 'base64')

export const S_WHATSAPP_NET = '@s.whatsapp.net' // encodes as FA 00 03 (empty user), see fact sheet §10.8
export const pnJid = (phone, device) => device ? `${phone}:${device}@s.whatsapp.net` : `${phone}@s.whatsapp.net`
export const lidJid = (lid, device) => device ? `${lid}:${device}@lid` : `${lid}@lid`

export function validPhone (phone) {
  return typeof phone === 'string' && /^[1-9][0-9]{6,14}$/.test(phone)
}

/** Random 15-digit LID user (real LIDs are opaque numbers of about this size). */
function newLid (taken) {
  for (;;) {
    const lid = String(randomInt(1, 10)) + String(randomInt(0, 1e7)).padStart(7, '0') + String(randomInt(0, 1e7)).padStart(7, '0')
    if (!taken.has(lid)) return lid
  }
}

export class Store {
  constructor ({ file, atomicWrite, log }) {
    this.file = file
    this.atomicWrite = atomicWrite
    this.log = log
    this.accounts = new Map() // phone -> account
    this.contacts = new Map() // phone -> contact
    this.lids = new Map() // LID user -> { kind: 'account'|'contact', obj } (index for findUser)
    this.saveTimer = null
  }

  load () {
    if (!this.file || !existsSync(this.file)) return
    const o = JSON.parse(readFileSync(this.file, 'utf8'))
    for (const a of o.accounts || []) {
      const acct = {
        phone: a.phone,
        lid: a.lid,
        accountKey: { public: unb64(a.accountKey.public), private: unb64(a.accountKey.private) },
        nextDevice: a.nextDevice,
        nextKeyIndex: a.nextKeyIndex,
        devices: new Map(),
        phoneDevice: SignalDevice.fromJSON(a.phoneDevice),
        maxConcurrent: a.maxConcurrent || 0
      }
      for (const d of a.devices) {
        acct.devices.set(d.id, {
          ...d,
          noisePub: unb64(d.noisePub),
          identityPub: unb64(d.identityPub),
          skey: d.skey && { id: d.skey.id, value: unb64(d.skey.value), signature: unb64(d.skey.signature) },
          preKeys: new Map(Object.entries(d.preKeys || {}).map(([id, v]) => [Number(id), unb64(v)])),
          maxConcurrent: d.maxConcurrent || 0
        })
      }
      this.accounts.set(acct.phone, acct)
    }
    for (const c of o.contacts || []) {
      this.contacts.set(c.phone, {
        phone: c.phone,
        lid: c.lid,
        name: c.name,
        devices: c.devices.map(d => ({ id: d.id, signal: SignalDevice.fromJSON(d.signal) })),
        inbox: c.inbox || [],
        lidMode: !!c.lidMode,
        requireTcToken: !!c.requireTcToken,
        tokensIssued: c.tokensIssued || {}
      })
    }
    for (const a of this.accounts.values()) this.lids.set(a.lid, { kind: 'account', obj: a })
    for (const c of this.contacts.values()) if (!this.lids.has(c.lid)) this.lids.set(c.lid, { kind: 'contact', obj: c })
    this.log(`state loaded from ${this.file}: ${this.accounts.size} accounts, ${this.contacts.size} contacts`)
  }

  toJSON () {
    return {
      version: 1,
      accounts: [...this.accounts.values()].map(a => ({
        phone: a.phone,
        lid: a.lid,
        accountKey: { public: b64(a.accountKey.public), private: b64(a.accountKey.private) },
        nextDevice: a.nextDevice,
        nextKeyIndex: a.nextKeyIndex,
        maxConcurrent: a.maxConcurrent,
        phoneDevice: a.phoneDevice.toJSON(),
        devices: [...a.devices.values()].map(d => ({
          ...d,
          noisePub: b64(d.noisePub),
          identityPub: b64(d.identityPub),
          skey: d.skey && { id: d.skey.id, value: b64(d.skey.value), signature: b64(d.skey.signature) },
          preKeys: Object.fromEntries([...d.preKeys].map(([id, v]) => [id, b64(v)])),
          lowNotified: undefined
        }))
      })),
      contacts: [...this.contacts.values()].map(c => ({
        phone: c.phone,
        lid: c.lid,
        name: c.name,
        devices: c.devices.map(d => ({ id: d.id, signal: d.signal.toJSON() })),
        inbox: c.inbox,
        lidMode: c.lidMode,
        requireTcToken: c.requireTcToken,
        tokensIssued: c.tokensIssued
      }))
    }
  }

  /** Persist now (synchronously, atomically). Cheap enough for a test server. */
  save () {
    if (this.saveTimer) { clearTimeout(this.saveTimer); this.saveTimer = null }
    if (!this.file) return
    this.atomicWrite(this.file, JSON.stringify(this.toJSON()))
  }

  /**
   * Persist within `ms` (coalesced): the message path calls this instead of save(), so a burst of messages
   * costs one state write, not one per message. SIGTERM/SIGINT still save synchronously (Sim.shutdown).
   */
  saveSoon (ms = 200) {
    if (!this.file || this.saveTimer) return
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null
      try { this.save() } catch (err) { this.log(`state save failed: ${err.message}`) }
    }, ms)
    this.saveTimer.unref?.()
  }

  takenLids () {
    return new Set([...this.accounts.values()].map(a => a.lid).concat([...this.contacts.values()].map(c => c.lid)))
  }

  /** Accounts are created on demand when a phone first scans/links. */
  getOrCreateAccount (phone, lid) {
    let a = this.accounts.get(phone)
    if (a) return a
    const accountKey = Curve.generateKeyPair()
    a = {
      phone,
      lid: lid || newLid(this.takenLids()),
      accountKey,
      nextDevice: 1,
      nextKeyIndex: 1,
      devices: new Map(),
      // the phone is Signal device 0; its identity key is the account signature key
      // (few prekeys made up front, more on demand: creating thousands of accounts by /accounts/import stays cheap)
      phoneDevice: SignalDevice.create({ identity: { pubKey: accountKey.public, privKey: accountKey.private }, preKeys: 4, refill: 10 }),
      maxConcurrent: 0
    }
    this.accounts.set(phone, a)
    this.lids.set(a.lid, { kind: 'account', obj: a })
    return a
  }

  createContact (phone, nDevices, name) {
    const c = {
      phone,
      lid: newLid(this.takenLids()),
      name: name || `Contact ${phone.slice(-4)}`,
      devices: [],
      inbox: [],
      lidMode: false, // writes to accounts from its LID (from="LID:dev@lid" sender_pn=PN) instead of its PN
      requireTcToken: false, // messages to it without a valid <tctoken> get ack error 463
      tokensIssued: {} // account phone -> [{token (base64), t}]: privacy tokens it issued (privacy_token notifications)
    }
    for (let i = 0; i < nDevices; i++) c.devices.push({ id: i, signal: SignalDevice.create() })
    this.contacts.set(phone, c)
    this.lids.set(c.lid, { kind: 'contact', obj: c })
    return c
  }

  /** Who owns a user part (PN or LID)? -> { kind: 'account'|'contact', obj } */
  findUser (user, server) {
    if (server === 'lid') return this.lids.get(user) || null
    const a = this.accounts.get(user)
    if (a) return { kind: 'account', obj: a }
    const c = this.contacts.get(user)
    return c ? { kind: 'contact', obj: c } : null
  }
}
