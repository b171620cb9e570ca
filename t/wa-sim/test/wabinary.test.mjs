// lib/wabinary.mjs (the allocation-light binary node codec) against Baileys 7.0.0-rc14's own
// encodeBinaryNode / decodeBinaryNode: byte-for-byte equal encodings and deep-equal decodings (or the same
// error message) on random nodes, corrupted buffers, compressed frames and real stanzas.
// Random inputs come from a seeded PRNG; a failure prints the seed: rerun with WABINARY_SEED=<seed>.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { deflateSync } from 'node:zlib'
import { encodeBinaryNode, decodeBinaryNode, jidDecode, jidEncode } from 'baileys'
import * as jidUtils from 'baileys/lib/WABinary/jid-utils.js'
import { SINGLE_BYTE_TOKENS, DOUBLE_BYTE_TOKENS, TOKEN_MAP } from 'baileys/lib/WABinary/constants.js'
import { encodeNode, decodeNode } from '../lib/wabinary.mjs'

const SEED = process.env.WABINARY_SEED !== undefined
  ? Number(process.env.WABINARY_SEED) >>> 0
  : (Math.random() * 2 ** 32) >>> 0

function mulberry32 (a) {
  return function () {
    a |= 0; a = a + 0x6D2B79F5 | 0
    let t = Math.imul(a ^ a >>> 15, 1 | a)
    t = t + Math.imul(t ^ t >>> 7, 61 | t) ^ t
    return ((t ^ t >>> 14) >>> 0) / 4294967296
  }
}

/** A test driven by its own PRNG stream (seed ^ salt); any failure is tagged with the seed. */
function seeded (name, salt, fn) {
  test(name, async () => {
    const rnd = mulberry32((SEED ^ salt) >>> 0)
    const R = {
      f: rnd,
      int: (n) => Math.floor(rnd() * n), // 0..n-1
      range: (a, b) => a + Math.floor(rnd() * (b - a + 1)),
      pick: (arr) => arr[Math.floor(rnd() * arr.length)],
      chance: (p) => rnd() < p
    }
    try {
      await fn(R)
    } catch (err) {
      console.error(`wabinary.test: "${name}" failed with WABINARY_SEED=${SEED}`)
      err.message = `[WABINARY_SEED=${SEED}] ${err.message}`
      throw err
    }
  })
}

// ---------------------------------------------------------------------------------------------------
// comparison helpers

/** Deep copy with every Buffer / Uint8Array replaced by {$bytes: 'Type:hex'}; keys with undefined values kept. */
function norm (v) {
  if (v instanceof Uint8Array) return { $bytes: (Buffer.isBuffer(v) ? 'Buffer:' : 'Uint8Array:') + Buffer.from(v.buffer, v.byteOffset, v.length).toString('hex') }
  if (Array.isArray(v)) return v.map(norm)
  if (v && typeof v === 'object') {
    const o = Object.create(Object.getPrototypeOf(v))
    for (const k of Object.keys(v)) Object.defineProperty(o, k, { value: norm(v[k]), enumerable: true, writable: true, configurable: true })
    return o
  }
  return v
}

function outcome (fn) {
  try { return { value: fn() } } catch (err) { return { err } }
}
async function outcomeAsync (fn) {
  try { return { value: await fn() } } catch (err) { return { err } }
}

const hexOf = (b, max = 160) => { const h = Buffer.from(b).toString('hex'); return h.length > max ? h.slice(0, max) + `...(${b.length} bytes)` : h }
function describe (node) {
  try {
    const s = JSON.stringify(node, (k, v) => {
      if (v && v.type === 'Buffer' && Array.isArray(v.data)) return `<Buffer ${v.data.length}>`
      if (v instanceof Uint8Array) return `<Uint8Array ${v.length}>`
      if (typeof v === 'undefined') return '<undefined>'
      return v
    })
    return s.length > 600 ? s.slice(0, 600) + '...' : s
  } catch (err) { return String(err) }
}

function sameError (mine, theirs, what) {
  assert.equal(mine.err.constructor.name + ': ' + mine.err.message, theirs.err.constructor.name + ': ' + theirs.err.message, `error differs: ${what}`)
}

/** Encodes with both; asserts the same bytes or the same error. Returns the encoding, or undefined if both threw. */
function checkEncode (node) {
  const mine = outcome(() => encodeNode(node))
  const theirs = outcome(() => encodeBinaryNode(node))
  if (mine.err || theirs.err) {
    if (!mine.err || !theirs.err) {
      assert.fail(`only ${mine.err ? 'wabinary' : 'Baileys'} threw (${(mine.err || theirs.err).message}) encoding ${describe(node)}`)
    }
    sameError(mine, theirs, `encoding ${describe(node)}`)
    return undefined
  }
  assert.ok(Buffer.isBuffer(mine.value), 'encodeNode returns a Buffer')
  if (!mine.value.equals(theirs.value)) {
    assert.fail(`encodings differ for ${describe(node)}\n wabinary ${hexOf(mine.value, 400)}\n baileys  ${hexOf(theirs.value, 400)}`)
  }
  return mine.value
}

/** Decodes with both; asserts deep-equal results (Buffers by bytes) or the same error. */
async function checkDecode (buf) {
  const mine = outcome(() => decodeNode(buf))
  const theirs = await outcomeAsync(() => decodeBinaryNode(buf))
  if (mine.err || theirs.err) {
    if (!mine.err || !theirs.err) {
      assert.fail(`only ${mine.err ? 'wabinary' : 'Baileys'} threw (${(mine.err || theirs.err).message}) decoding ${hexOf(buf)}`)
    }
    sameError(mine, theirs, `decoding ${hexOf(buf)}`)
    return { err: mine.err }
  }
  assert.deepStrictEqual(norm(mine.value), norm(theirs.value), `decodings differ for ${hexOf(buf)}`)
  return { value: mine.value }
}

// ---------------------------------------------------------------------------------------------------
// random nodes

const TOKENS = [...SINGLE_BYTE_TOKENS.slice(1), ...DOUBLE_BYTE_TOKENS.flat()]
const PROTO_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', '__defineGetter__']
const TEXT_CHARS = [...'abcxyzABCXYZ019 _-.:@/+=', 'é', 'ñ', 'ü', 'ç', 'ß', '中', '文', '😀', '👍🏽', '🇨🇴', '\u0000', '\n', '\t', '\uD800', '\uDC00', '\u00ff', '\u0100', '\u200d']
const WEIRD_JIDS = [
  'server@s.whatsapp.net', '@s.whatsapp.net', 's.whatsapp.net', 'status@broadcast', '0@c.us', 'server@c.us',
  '573001234567_1@s.whatsapp.net', '573001234567_1:3@s.whatsapp.net', '573001234567_x:3@s.whatsapp.net',
  '573001234567_999:3@s.whatsapp.net', '573001234567:x@s.whatsapp.net', '573001234567:0@s.whatsapp.net',
  '573001234567:300@s.whatsapp.net', '573001234567:-1@s.whatsapp.net', '573001234567:1.5@lid', '1:1e3@lid',
  '1:2:3@s.whatsapp.net', 'a@b@c', '@', 'a@', 'x:@y', '123:4@g.us', ':5@lid', '_@s.whatsapp.net', 'u:Infinity@lid',
  '13135550002@bot', '120363025246125486@newsletter', 'abc@lid', 'constructor@s.whatsapp.net', 'x@constructor',
  '573001234567@c.us', '12345@hosted', '12345:7@hosted.lid', 'ABCDEF@s.whatsapp.net', '12-34@g.us'
]

function digits (R, a, b) { let s = ''; const n = R.range(a, b); for (let i = 0; i < n; i++) s += R.int(10); return s }
function fromAlphabet (R, alpha, a, b) { let s = ''; const n = R.range(a, b); for (let i = 0; i < n; i++) s += R.pick(alpha); return s }
function text (R, a, b) { let s = ''; const n = R.range(a, b); for (let i = 0; i < n; i++) s += R.pick(TEXT_CHARS); return s }

function genString (R) {
  switch (R.int(20)) {
    case 0: case 1: case 2: return R.pick(TOKENS)
    case 3: return digits(R, 10, 12) + '@s.whatsapp.net'
    case 4: return digits(R, 10, 12) + ':' + R.range(1, 99) + '@s.whatsapp.net'
    case 5: return digits(R, 15, 15) + ':' + R.range(0, 30) + '@lid'
    case 6: return digits(R, 15, 15) + '@lid'
    case 7: return digits(R, 10, 15) + (R.chance(0.5) ? ':' + R.range(0, 9) : '') + (R.chance(0.5) ? '@hosted' : '@hosted.lid')
    case 8: return R.chance(0.5) ? '1203630' + digits(R, 11, 11) + '@g.us' : digits(R, 12, 12) + '-' + digits(R, 10, 10) + '@g.us'
    case 9: return R.pick(WEIRD_JIDS)
    case 10: return fromAlphabet(R, '0123456789ABCDEF', 1, R.chance(0.2) ? 140 : 40) // hex (> 127 chars: raw)
    case 11: return fromAlphabet(R, '0123456789abcdef', 1, 40) // lower case: not hex, raw
    case 12: return fromAlphabet(R, '0123456789-.', 1, R.chance(0.2) ? 140 : 30) // nibble
    case 13: return digits(R, 1, R.chance(0.1) ? 130 : 20)
    case 14: return fromAlphabet(R, '0123456789ABCDEF-.', 1, 20) // mixed: neither
    case 15: return text(R, 0, 40)
    case 16: return R.chance(0.8) ? '' : R.pick(PROTO_NAMES)
    case 17: return '3EB0' + fromAlphabet(R, '0123456789ABCDEF', 16, 36)
    case 18: return R.chance(0.9) ? text(R, 250, 300) : text(R, 70000, 70010) // BINARY_20 strings
    default: return String(R.range(0, 2e9))
  }
}

function genTag (R) {
  const k = R.int(100)
  if (k < 55) return R.pick(TOKENS)
  if (k < 97) return genString(R)
  // rare: invalid or non-string tags
  return R.pick(['', undefined, null, 0, 5, 12345, 1.5, true, ['1', '2'], ['A', 'B'], [1, 2], ['x'], { toString: () => 'iq' }, Symbol('s')])
}

function genAttrs (R) {
  const k = R.int(100)
  if (k < 10) return R.pick([undefined, null, {}])
  if (k < 11) return R.pick(['ab', ['v'], 7]) // not objects: Object.keys() of them
  const attrs = {}
  const n = R.chance(0.01) ? R.range(120, 140) : R.int(7) // >= 128 attrs: LIST_16 header
  for (let i = 0; i < n; i++) {
    const key = R.chance(0.6) ? R.pick(TOKENS) : genString(R)
    let value
    const v = R.int(100)
    if (v < 88) value = genString(R)
    else if (v < 92) value = R.range(-5, 100000) // counted but not written (Baileys quirk)
    else if (v < 95) value = undefined
    else if (v < 97) value = null
    else value = R.pick([true, false, 0, {}, ['x'], 1.5])
    if (key === '__proto__') Object.defineProperty(attrs, key, { value, enumerable: true, writable: true, configurable: true })
    else attrs[key] = value
  }
  return attrs
}

const BUF_LENGTHS = [0, 0, 1, 1, 2, 3, 17, 32, 100, 255, 255, 256, 256, 257, 1000, 4095, 65535, 70000]
function genBytes (R) {
  const len = R.chance(0.0004) ? (1 << 20) + R.int(3) : R.pick(BUF_LENGTHS) // BINARY_32: rare (slow in Baileys)
  const b = Buffer.allocUnsafe(len)
  for (let i = 0; i < Math.min(len, 64); i++) b[i] = R.int(256)
  if (len > 64) b.fill(R.int(256), 64)
  if (R.chance(0.2)) return new Uint8Array(b)
  if (R.chance(0.1)) return b.subarray(R.int(Math.min(len, 3) + 1)) // a view with an offset
  return b
}

function genContent (R, depth) {
  const k = R.int(100)
  if (k < 30) return undefined
  if (k < 45) return genString(R)
  if (k < 67) return genBytes(R)
  if (k < 97) {
    if (depth >= 4) return undefined
    if (R.chance(0.005)) { // LIST_16: > 255 children
      const kids = []
      const n = R.range(256, 300)
      for (let i = 0; i < n; i++) kids.push({ tag: R.pick(TOKENS), attrs: R.chance(0.5) ? { id: String(i) } : {} })
      return kids
    }
    const kids = []
    const n = R.int(6)
    for (let i = 0; i < n; i++) {
      if (R.chance(0.04)) kids.push(R.pick([null, undefined, 0, '', false, {}, { tag: '' }, { attrs: {} }, NaN])) // filtered out
      else if (R.chance(0.004)) kids.push(R.pick(['text', Buffer.from('x'), new Uint8Array(2), { tag: 0, attrs: {} }])) // kept, then throws
      else kids.push(genNode(R, depth + 1))
    }
    if (R.chance(0.02)) kids.length += 2 // holes
    return kids
  }
  return R.pick([null, 5, true, {}, 'x', new String('s'), Symbol('c')]) // invalid children (but 'x' is fine)
}

function genNode (R, depth = 0) {
  const node = { tag: genTag(R), attrs: genAttrs(R) }
  const content = genContent(R, depth)
  if (content !== undefined || R.chance(0.5)) node.content = content
  return node
}

// ---------------------------------------------------------------------------------------------------

test('uses the same jid helpers as the "baileys" package', () => {
  assert.equal(jidUtils.jidDecode, jidDecode)
  assert.equal(jidUtils.jidEncode, jidEncode)
})

seeded('random nodes: same encoding as encodeBinaryNode, same decoding as decodeBinaryNode', 0x1001, async (R) => {
  const N = 20000
  let encoded = 0; let decoded = 0; let threw = 0; let bytes = 0
  for (let i = 0; i < N; i++) {
    const node = genNode(R)
    const buf = checkEncode(node)
    if (!buf) { threw++; continue }
    encoded++
    bytes += buf.length
    const d = await checkDecode(buf)
    if (!d.err) decoded++
  }
  console.log(`random nodes: ${N} generated, ${encoded} encoded (${bytes} bytes), ${threw} threw on both, ${decoded} decoded`)
  assert.ok(encoded > N * 0.7, 'most random nodes encode')
  assert.ok(decoded > encoded * 0.5, 'most encodings decode')
})

const SPECIAL = [0x00, 0x01, 0x02, 0x03, 0x10, 0x7f, 0x80, 0xc8, 0xeb, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff]

seeded('corrupted buffers: both decoders agree (value or error message)', 0x2002, async (R) => {
  let n = 0; let errs = 0
  const sizeCap = (node) => { const b = encodeNode(node); return b.length <= 4096 ? b : null }
  for (let i = 0; i < 2500; i++) {
    const node = genNode(R)
    let buf
    try { buf = sizeCap(node) } catch { continue }
    if (!buf) continue
    for (let m = 0; m < 4; m++) {
      let b = Buffer.from(buf)
      switch (R.int(6)) {
        case 0: b = b.subarray(0, R.int(b.length)); break // truncate (may be empty)
        case 1: for (let j = R.range(1, 3); j > 0; j--) b[R.int(b.length)] = R.int(256); break
        case 2: for (let j = R.range(1, 3); j > 0; j--) b[1 + R.int(b.length - 1)] = R.pick(SPECIAL); break
        case 3: { // BINARY_32 with the top bit set: a negative length, the index moves backwards
          const at = 1 + R.int(b.length - 1)
          const neg = Buffer.from([0xfe, 0xff, 0xff, 0xff, 0x100 - R.range(1, 40)])
          if (R.chance(0.3)) neg[R.range(1, 3)] = R.int(256) | 0x80
          b = Buffer.concat([b.subarray(0, at), neg, b.subarray(at + (R.chance(0.5) ? 1 : 0))])
          break
        }
        case 4: { const at = 1 + R.int(b.length); b = Buffer.concat([b.subarray(0, at), Buffer.from([R.pick(SPECIAL), R.int(256)]), b.subarray(at)]); break }
        default: b[0] = R.int(256); b = b.subarray(0, Math.max(1, R.int(b.length + 1))) // flags (bit 2: inflate garbage)
      }
      const d = await checkDecode(b)
      n++
      if (d.err) errs++
    }
  }
  // hand-made: a negative BINARY_32 length in a child makes Baileys re-read earlier bytes / read undefined
  for (const hex of [
    '00f802' + '13' + 'fefffffff0',
    '00f802' + '13' + 'f802' + 'f8021afefffffffc' + 'f80113',
    '00f802' + '13' + 'f803' + 'f8021afefffffff9' + 'f80113' + 'f80113',
    '00f802' + '13' + 'f801' + 'f8021afe80000000',
    '00f802' + '13' + 'f802' + 'f8021afeffffffe0' + 'f80113',
    '00f802' + '13' + 'f802' + 'f8021afefffffff0' + 'fc01' + 'f80113',
    '00f802' + '13' + 'f5' + 'fc0161' + '0001' + '0002', // interop jid without its server: index restored
    '00f802' + '13' + 'f5' + 'fc0161' + '0001' + '0002' + 'ec', // interop jid, server throws: index restored
    '00f804' + '13' + '14' + 'f5fc0161' + '0001' + '0002' + 'f801' + 'f80113', // restored index: f8 is then the content's list
    '00f804' + '13' + '14' + 'f5fc0161' + '0001' + '0002' + 'ec' + 'f80113', // index restored after a half-read token
    '00f803' + '13' + 'f6fc0161' + '0003' + '03' + 'fc0178',
    '00f802' + '13' + 'ff' + '83' + '12fcab', '00f802' + '13' + 'fb' + '83' + '12fcab', '00f802' + '13' + 'fb' + '80',
    '00f802' + '13' + 'f7' + '81' + '05' + 'ff' + '8112', '00f802' + '13' + 'f7' + '09' + '00' + 'fa0003',
    '00f802' + '13' + 'fa' + '00' + '00', '00f802' + '13' + 'fd' + 'f00001' + '61', '00f900' + '13',
    '00f90003' + '13' + '0000', '00f800', '00f801', '', '00', '01f80113', '04f80113', '06f80113'
  ]) {
    await checkDecode(Buffer.from(hex, 'hex'))
    n++
  }
  console.log(`corrupted buffers: ${n} decoded by both, ${errs} random ones threw on both`)
})

seeded('compressed frames (flags & 2): inflated and decoded the same by both', 0x3003, async (R) => {
  let n = 0
  for (let i = 0; i < 400; i++) {
    let buf
    try { buf = encodeNode(genNode(R)) } catch { continue }
    if (buf.length > 200000) continue
    const z = deflateSync(buf.subarray(1))
    const frame = Buffer.concat([Buffer.from([R.pick([2, 2, 3, 6, 0x82])]), z])
    const d = await checkDecode(frame)
    const plain = await checkDecode(buf)
    assert.deepStrictEqual(norm(d.value), norm(plain.value), 'compressed and plain frames decode the same')
    await checkDecode(frame.subarray(0, 1 + R.int(z.length))) // truncated deflate stream
    const bad = Buffer.from(frame); bad[1 + R.int(z.length)] ^= 1 + R.int(255)
    await checkDecode(bad)
    n++
  }
  await checkDecode(Buffer.from([2])) // empty deflate stream
  await checkDecode(Buffer.from([2, 1, 2, 3]))
  console.log(`compressed frames: ${n}`)
})

const ME = '573001234567@s.whatsapp.net'
const ME_DEV = '573001234567:12@s.whatsapp.net'
const PEER = '573009876543@s.whatsapp.net'
const PEER_LID = '123456789012345:3@lid'
const rand = (n, seed) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7) & 0xff; return b }
const STANZAS = [
  {
    tag: 'message',
    attrs: { id: '3EB0C5A1F2B3D4E5F6A7', type: 'text', to: PEER, t: '1717171717' },
    content: [
      {
        tag: 'participants',
        attrs: {},
        content: [
          { tag: 'to', attrs: { jid: '573009876543:2@s.whatsapp.net' }, content: [{ tag: 'enc', attrs: { v: '2', type: 'pkmsg' }, content: rand(270, 1) }] },
          { tag: 'to', attrs: { jid: PEER_LID }, content: [{ tag: 'enc', attrs: { v: '2', type: 'msg' }, content: rand(120, 2) }] }
        ]
      },
      { tag: 'device-identity', attrs: {}, content: rand(160, 3) }
    ]
  },
  { tag: 'ack', attrs: { class: 'message', id: '3EB0C5A1F2B3D4E5F6A7', from: PEER, t: '1717171717' } },
  { tag: 'ack', attrs: { id: '3EB0C5A1F2B3D4E5F6A7', class: 'receipt', type: 'read', from: ME_DEV } },
  {
    tag: 'receipt',
    attrs: { id: '3EB0AAAAAAAAAAAAAAAA', from: PEER, recipient: ME, type: 'read', t: '1717171720' },
    content: [{ tag: 'list', attrs: {}, content: [{ tag: 'item', attrs: { id: '3EB0BBBBBBBBBBBBBBBB' } }, { tag: 'item', attrs: { id: '3EB0CCCCCCCCCCCCCCCC' } }] }]
  },
  {
    tag: 'iq',
    attrs: { id: '12345.6789-1', to: 's.whatsapp.net', type: 'get', xmlns: 'usync' },
    content: [{
      tag: 'usync',
      attrs: { context: 'message', mode: 'query', sid: '1717171717171-12345', last: 'true', index: '0' },
      content: [
        { tag: 'query', attrs: {}, content: [{ tag: 'devices', attrs: { version: '2' } }, { tag: 'lid', attrs: {} }] },
        { tag: 'list', attrs: {}, content: [{ tag: 'user', attrs: { jid: PEER } }, { tag: 'user', attrs: { jid: ME } }] }
      ]
    }]
  },
  {
    tag: 'iq',
    attrs: { from: 's.whatsapp.net', id: '12345.6789-1', type: 'result' },
    content: [{
      tag: 'usync',
      attrs: { context: 'message', index: '0', last: 'true', mode: 'query', sid: '1717171717171-12345' },
      content: [{
        tag: 'list',
        attrs: {},
        content: [{
          tag: 'user',
          attrs: { jid: PEER },
          content: [
            { tag: 'devices', attrs: {}, content: [{ tag: 'device-list', attrs: {}, content: [{ tag: 'device', attrs: { id: '0' } }, { tag: 'device', attrs: { id: '2', 'key-index': '1' } }] }] },
            { tag: 'lid', attrs: { val: '123456789012345@lid' } }
          ]
        }]
      }]
    }]
  },
  { tag: 'presence', attrs: { type: 'available', name: 'Ñandú 😀' } },
  { tag: 'success', attrs: { t: '1717171717', props: '12345', abprops: '1', location: 'frc', lid: '123456789012345@lid', creation: '1600000000' } },
  { tag: 'notification', attrs: { from: '120363040000000000@g.us', type: 'w:gp2', id: '1234567890', participant: PEER_LID, t: '1717171717' }, content: [{ tag: 'add', attrs: {}, content: [{ tag: 'participant', attrs: { jid: ME } }] }] }
]

test('real stanzas round-trip identically with both codecs', async () => {
  for (const stanza of STANZAS) {
    const buf = checkEncode(stanza)
    assert.ok(buf, `${stanza.tag} encodes`)
    const d = await checkDecode(buf)
    assert.deepStrictEqual(norm(d.value), norm(withContentKeys(stanza)), `${stanza.tag} round-trips`)
    await checkDecode(Buffer.concat([Buffer.from([2]), deflateSync(buf.subarray(1))]))
  }
  assert.equal(encodeNode(STANZAS[0]).length > 300, true)
})

/** The decoded form of a round-trippable node: `content` always present. */
function withContentKeys (node) {
  return { tag: node.tag, attrs: node.attrs, content: Array.isArray(node.content) ? node.content.map(withContentKeys) : node.content }
}

test('Baileys quirks are reproduced', async () => {
  // prototype names hit TOKEN_MAP's Object.prototype members: token byte 0, decoded as ''
  assert.ok(TOKEN_MAP.constructor && TOKEN_MAP.constructor.index === undefined)
  const q = checkEncode({ tag: 'iq', attrs: { constructor: 'toString' } })
  assert.equal(q.toString('hex'), '00f803' + TOKEN_MAP.iq.index.toString(16) + '0000')
  assert.deepStrictEqual(norm((await checkDecode(q)).value), norm({ tag: 'iq', attrs: { '': '' }, content: undefined }))
  // a non-string attr is counted in the list size but not written: its slot swallows the next item
  const c = checkEncode({ tag: 'iq', attrs: { n: 5, id: 'x' } })
  assert.equal(c[2], 2 * 2 + 1)
  assert.equal((await checkDecode(c)).err.message, 'end of stream')
  // AD jids lose their server; agents become domain types; NaN devices are 0
  for (const [jid, back] of [['1:2@g.us', '1:2@s.whatsapp.net'], ['1_1:2@s.whatsapp.net', '1:2@lid'], ['1:x@lid', '1@lid'], ['1_2@s.whatsapp.net', '1@s.whatsapp.net']]) {
    assert.equal((await checkDecode(checkEncode({ tag: 'to', attrs: { jid } }))).value.attrs.jid, back, jid)
  }
  // odd packed strings drop their padding char; > 127 chars are raw; '__proto__' keys do not become own keys
  assert.equal((await checkDecode(checkEncode({ tag: 'x', attrs: { a: '12345', b: 'ABC' } }))).value.attrs.b, 'ABC')
  const proto = Buffer.from('00f803' + TOKEN_MAP.iq.index.toString(16) + 'fc095f5f70726f746f5f5f' + 'fc0178', 'hex')
  assert.deepStrictEqual(Object.keys((await checkDecode(proto)).value.attrs), [])
  // non-string tags go through Baileys' generic code (same TypeErrors)
  checkEncode({ tag: 12345, attrs: {} })
  checkEncode({ tag: ['1', '2'], attrs: {} })
  checkEncode({ tag: [1, 2], attrs: {} })
  checkEncode(null)
  checkEncode({ tag: { toString: () => { encodeNode({ tag: 'ack', attrs: { id: 'x' } }); return 'iq' } }, attrs: { id: 'y' } }) // re-entrant
  checkEncode({ tag: 'x', attrs: {}, content: [{ tag: 'y', attrs: {} }, 'text'] })
  await checkDecode(new Uint8Array([0, 0xf8, 1, 0x13]))
})

test('length classes at their boundaries: BINARY_8/20/32, LIST_8/16, PACKED_MAX', async () => {
  for (const len of [255, 256, (1 << 20) - 1, 1 << 20]) {
    const buf = checkEncode({ tag: 'enc', attrs: { v: '2' }, content: Buffer.alloc(len, len & 0xff) })
    const at = encodeNode({ tag: 'enc', attrs: { v: '2' }, content: '' }).length - 2 // where the length tag goes
    assert.equal(buf[at], len < 256 ? 0xfc : len < 1 << 20 ? 0xfd : 0xfe, `length ${len}`)
    await checkDecode(buf)
  }
  const big = checkEncode({ tag: 'iq', attrs: {}, content: 'é'.repeat(1 << 19) }) // 1 << 20 utf-8 bytes
  assert.equal(big[4], 0xfe)
  assert.equal((await checkDecode(big)).value.content.length, 1 << 20) // string content comes back as bytes
  for (const n of [255, 256, 65535]) {
    const buf = checkEncode({ tag: 'list', attrs: {}, content: Array.from({ length: n }, () => ({ tag: 'item', attrs: {} })) })
    assert.equal(buf[4], n < 256 ? 0xf8 : 0xf9)
    assert.equal((await checkDecode(buf)).value.content.length, n)
  }
  for (const s of ['1'.repeat(127), '1'.repeat(128), 'A'.repeat(127), 'A'.repeat(128), '-.', '.', 'F']) {
    await checkDecode(checkEncode({ tag: 'x', attrs: { a: s }, content: s }))
  }
})
