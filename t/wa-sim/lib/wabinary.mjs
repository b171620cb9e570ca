// WhatsApp binary node codec: a port of Baileys 7.0.0-rc14's WABinary codec
// (node_modules/baileys/lib/WABinary/encode.js and decode.js) without the per-call closures.
// Baileys' encoder pushes every byte into a JS Array and re-creates ~15 closures per node; its decoder
// creates ~25 closures per node (recursively) and is async. Here the same logic is written as hoisted
// module-level functions over module-level state: the encoder writes into one reusable scratch Buffer and
// returns an exact-size copy, the decoder is synchronous. Function by function it mirrors Baileys,
// quirks included (see test/wabinary.test.mjs, which proves byte-for-byte / deep equality with Baileys on
// random, corrupted, compressed and real stanzas, and checks the error messages):
//  - the attribute count includes every attr that is not undefined/null, but only string attrs are written;
//  - TOKEN_MAP is Baileys' plain object, so 'constructor', '__proto__', 'toString'... hit Object.prototype
//    members and are written as token byte 0 (which decodes to '');
//  - JIDs are split with Baileys' own jidDecode (agents, NaN devices, servers containing '@', AD jids
//    losing their server) and AD jids rebuilt with its jidEncode;
//  - readInt is `val |= byte << shift` (signed 32-bit): a BINARY_32 length with the top bit set is negative
//    and moves the read index backwards; reads at a negative index yield undefined, exactly as in Baileys;
//  - readInteropJid's try/catch restores the index; readPacked8 drops the last char for odd lengths.
// Not reproduced: the exact nesting depth at which a stack overflow (RangeError) occurs.
import { inflateSync } from 'node:zlib'
import * as constants from 'baileys/lib/WABinary/constants.js'
// the very functions 'baileys' re-exports (asserted by the test); imported from the leaf module so that
// this codec does not load all of Baileys
import { jidDecode, jidEncode, WAJIDDomains } from 'baileys/lib/WABinary/jid-utils.js'

const { TAGS, TOKEN_MAP, SINGLE_BYTE_TOKENS, DOUBLE_BYTE_TOKENS } = constants
const LIST_EMPTY = TAGS.LIST_EMPTY
const LIST_8 = TAGS.LIST_8
const LIST_16 = TAGS.LIST_16
const BINARY_8 = TAGS.BINARY_8
const BINARY_20 = TAGS.BINARY_20
const BINARY_32 = TAGS.BINARY_32
const DICTIONARY_0 = TAGS.DICTIONARY_0
const NIBBLE_8 = TAGS.NIBBLE_8
const HEX_8 = TAGS.HEX_8
const PACKED_MAX = TAGS.PACKED_MAX
const DICTIONARY_1 = TAGS.DICTIONARY_1
const DICTIONARY_2 = TAGS.DICTIONARY_2
const DICTIONARY_3 = TAGS.DICTIONARY_3
const JID_PAIR = TAGS.JID_PAIR
const AD_JID = TAGS.AD_JID
const FB_JID = TAGS.FB_JID
const INTEROP_JID = TAGS.INTEROP_JID
const SINGLE_LEN = SINGLE_BYTE_TOKENS.length

// ---------------------------------------------------------------------------------------------------
// Encoder (encode.js)

const SCRATCH_SIZE = 16 * 1024
const SCRATCH_KEEP = 1024 * 1024 // a scratch grown beyond this (huge media) is dropped after the call
let out = Buffer.allocUnsafeSlow(SCRATCH_SIZE)
let pos = 0
let busy = false

function grow (n) {
  let size = out.length * 2
  while (size < pos + n) size *= 2
  const next = Buffer.allocUnsafeSlow(size)
  out.copy(next, 0, 0, pos)
  out = next
}

function pushByte (value) {
  if (pos >= out.length) grow(1)
  out[pos++] = value & 0xff
}

function pushInt (value, n) { // big endian
  if (pos + n > out.length) grow(n)
  for (let i = 0; i < n; i++) out[pos++] = (value >> ((n - 1 - i) * 8)) & 0xff
}

function pushInt16 (value) {
  if (pos + 2 > out.length) grow(2)
  out[pos++] = (value >> 8) & 0xff
  out[pos++] = value & 0xff
}

function pushInt20 (value) {
  if (pos + 3 > out.length) grow(3)
  out[pos++] = (value >> 16) & 0x0f
  out[pos++] = (value >> 8) & 0xff
  out[pos++] = value & 0xff
}

function pushBytes (bytes) { // a Buffer / Uint8Array
  const n = bytes.length
  if (pos + n > out.length) grow(n)
  out.set(bytes, pos)
  pos += n
}

function writeByteLength (length) {
  if (length >= 4294967296) {
    throw new Error('string too large to encode: ' + length)
  }
  if (length >= 1 << 20) {
    pushByte(BINARY_32)
    pushInt(length, 4)
  } else if (length >= 256) {
    pushByte(BINARY_20)
    pushInt20(length)
  } else {
    pushByte(BINARY_8)
    pushByte(length)
  }
}

function writeStringRaw (str) { // str is a string (Buffer.from(str, 'utf-8') without the copy)
  const n = Buffer.byteLength(str, 'utf8')
  writeByteLength(n)
  if (pos + n > out.length) grow(n)
  if (n) pos += out.write(str, pos, n, 'utf8')
}

function writeJid ({ domainType, device, user, server }) {
  if (typeof device !== 'undefined') {
    pushByte(AD_JID)
    pushByte(domainType || 0)
    pushByte(device || 0)
    writeString(user)
  } else {
    pushByte(JID_PAIR)
    if (user.length) {
      writeString(user)
    } else {
      pushByte(LIST_EMPTY)
    }
    writeString(server)
  }
}

// nibble: '0'-'9' -> 0-9, '-' -> 10, '.' -> 11, '\0' -> 15; hex: '0'-'9', 'A'-'F' (isHex admits no other)
function nibbleOf (c) { return c >= 48 ? c - 48 : c === 45 ? 10 : 11 }
function hexOf (c) { return c <= 57 ? c - 48 : c - 55 }

function writePacked (str, nibble) { // str passed isNibble (nibble) or isHex: ASCII, 1..PACKED_MAX chars
  const len = str.length
  if (pos + 2 + (len >> 1) + 1 > out.length) grow(2 + (len >> 1) + 1)
  out[pos++] = nibble ? NIBBLE_8 : HEX_8
  out[pos++] = (len + 1) >> 1 | (len % 2 !== 0 ? 128 : 0)
  const half = len >> 1
  for (let i = 0; i < half; i++) {
    const a = str.charCodeAt(2 * i)
    const b = str.charCodeAt(2 * i + 1)
    out[pos++] = nibble ? (nibbleOf(a) << 4) | nibbleOf(b) : (hexOf(a) << 4) | hexOf(b)
  }
  if (len % 2 !== 0) {
    const a = str.charCodeAt(len - 1)
    out[pos++] = ((nibble ? nibbleOf(a) : hexOf(a)) << 4) | 15
  }
}

function writeString (str) {
  if (typeof str !== 'string') {
    writeStringGeneric(str)
    return
  }
  if (str === '') {
    pushByte(BINARY_8)
    pushByte(0)
    return
  }
  const tokenIndex = TOKEN_MAP[str]
  if (tokenIndex) {
    writeToken(tokenIndex)
    return
  }
  // isNibble / isHex in one pass (both require 1..PACKED_MAX chars)
  const len = str.length
  if (len <= PACKED_MAX) {
    let nib = true
    let hex = true
    for (let i = 0; i < len; i++) {
      const c = str.charCodeAt(i)
      if (c >= 48 && c <= 57) continue
      if (c === 45 || c === 46) {
        hex = false
        if (!nib) break
      } else if (c >= 65 && c <= 70) {
        nib = false
        if (!hex) break
      } else {
        nib = false
        hex = false
        break
      }
    }
    if (nib) {
      writePacked(str, true)
      return
    }
    if (hex) {
      writePacked(str, false)
      return
    }
  }
  const decodedJid = jidDecode(str)
  if (decodedJid) {
    writeJid(decodedJid)
  } else {
    writeStringRaw(str)
  }
}

// A token: one byte, or a dictionary byte and one (TOKEN_MAP's entries, or an Object.prototype member, whose
// undefined index is written as 0 as in Baileys).
function writeToken (tokenIndex) {
  if (typeof tokenIndex.dict === 'number') {
    pushByte(DICTIONARY_0 + tokenIndex.dict)
  }
  pushByte(tokenIndex.index)
}

// Baileys' writeString verbatim (same names, so the same TypeErrors), for non-string values: only a
// node's tag can be one (e.g. a number, an array of digit strings).
function writeStringGeneric (str) {
  if (str === undefined || str === null) {
    pushByte(LIST_EMPTY)
    return
  }
  const tokenIndex = TOKEN_MAP[str]
  if (tokenIndex) {
    writeToken(tokenIndex)
  } else if (genericIsNibble(str)) {
    genericWritePackedBytes(str, 'nibble')
  } else if (genericIsHex(str)) {
    genericWritePackedBytes(str, 'hex')
  } else {
    const decodedJid = jidDecode(str)
    if (decodedJid) {
      writeJid(decodedJid)
    } else {
      const bytes = Buffer.from(str, 'utf-8')
      writeByteLength(bytes.length)
      pushBytes(bytes)
    }
  }
}

function genericPackNibble (char) {
  switch (char) {
    case '-':
      return 10
    case '.':
      return 11
    case '\0':
      return 15
    default:
      if (char >= '0' && char <= '9') {
        return char.charCodeAt(0) - '0'.charCodeAt(0)
      }
      throw new Error(`invalid byte for nibble "${char}"`)
  }
}

function genericPackHex (char) {
  if (char >= '0' && char <= '9') {
    return char.charCodeAt(0) - '0'.charCodeAt(0)
  }
  if (char >= 'A' && char <= 'F') {
    return 10 + char.charCodeAt(0) - 'A'.charCodeAt(0)
  }
  if (char >= 'a' && char <= 'f') {
    return 10 + char.charCodeAt(0) - 'a'.charCodeAt(0)
  }
  if (char === '\0') {
    return 15
  }
  throw new Error(`Invalid hex char "${char}"`)
}

function genericWritePackedBytes (str, type) {
  if (str.length > PACKED_MAX) {
    throw new Error('Too many bytes to pack')
  }
  pushByte(type === 'nibble' ? NIBBLE_8 : HEX_8)
  let roundedLength = Math.ceil(str.length / 2.0)
  if (str.length % 2 !== 0) {
    roundedLength |= 128
  }
  pushByte(roundedLength)
  const packFunction = type === 'nibble' ? genericPackNibble : genericPackHex
  const strLengthHalf = Math.floor(str.length / 2)
  for (let i = 0; i < strLengthHalf; i++) {
    pushByte((packFunction(str[2 * i]) << 4) | packFunction(str[2 * i + 1]))
  }
  if (str.length % 2 !== 0) {
    pushByte((packFunction(str[str.length - 1]) << 4) | packFunction('\x00'))
  }
}

function genericIsNibble (str) {
  if (!str || str.length > PACKED_MAX) {
    return false
  }
  for (const char of str) {
    const isInNibbleRange = char >= '0' && char <= '9'
    if (!isInNibbleRange && char !== '-' && char !== '.') {
      return false
    }
  }
  return true
}

function genericIsHex (str) {
  if (!str || str.length > PACKED_MAX) {
    return false
  }
  for (const char of str) {
    const isInNibbleRange = char >= '0' && char <= '9'
    if (!isInNibbleRange && !(char >= 'A' && char <= 'F')) {
      return false
    }
  }
  return true
}

function writeListStart (listSize) {
  if (listSize === 0) {
    pushByte(LIST_EMPTY)
  } else if (listSize < 256) {
    pushByte(LIST_8)
    pushByte(listSize)
  } else {
    pushByte(LIST_16)
    pushInt16(listSize)
  }
}

function isValidChild (item) {
  return item && (item.tag || Buffer.isBuffer(item) || item instanceof Uint8Array || typeof item === 'string')
}

function encodeInner ({ tag, attrs, content }) {
  if (!tag) {
    throw new Error('Invalid node: tag cannot be undefined')
  }
  const keys = Object.keys(attrs || {})
  let validAttributes = 0
  for (let i = 0; i < keys.length; i++) {
    const v = attrs[keys[i]]
    if (typeof v !== 'undefined' && v !== null) validAttributes++
  }
  writeListStart(2 * validAttributes + 1 + (typeof content !== 'undefined' ? 1 : 0))
  writeString(tag)
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]
    const v = attrs[key]
    if (typeof v === 'string') {
      writeString(key)
      writeString(v)
    }
  }
  if (typeof content === 'string') {
    writeString(content)
  } else if (Buffer.isBuffer(content) || content instanceof Uint8Array) {
    writeByteLength(content.length)
    pushBytes(content)
  } else if (Array.isArray(content)) {
    const n = content.length
    let valid = 0
    for (let i = 0; i < n; i++) {
      if (isValidChild(content[i])) valid++
    }
    writeListStart(valid)
    for (let i = 0; i < n; i++) {
      const item = content[i]
      if (isValidChild(item)) encodeInner(item)
    }
  } else if (typeof content === 'undefined') {
    // do nothing
  } else {
    throw new Error(`invalid children for header "${tag}": ${content} (${typeof content})`)
  }
}

/** Baileys' encodeBinaryNode(node): the 0x00 flags byte followed by the encoded node, as a new Buffer. */
export function encodeNode (node) {
  const nested = busy // only if a tag's toString() re-enters: give that call its own scratch
  const savedOut = out
  const savedPos = pos
  if (nested) out = Buffer.allocUnsafeSlow(256)
  busy = true
  try {
    pos = 0
    out[pos++] = 0
    encodeInner(node)
    const result = Buffer.allocUnsafe(pos)
    out.copy(result, 0, 0, pos)
    return result
  } finally {
    if (nested) {
      out = savedOut
      pos = savedPos
    } else {
      busy = false
      if (out.length > SCRATCH_KEEP) out = Buffer.allocUnsafeSlow(SCRATCH_SIZE)
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Decoder (decode.js). `buffer` and `index` are Baileys' `buffer` and `indexRef.index`; every read keeps
// Baileys' exact arithmetic (including undefined bytes at a negative index).

let buffer = null
let index = 0
const packScratch = Buffer.allocUnsafeSlow(256)

function checkEOS (length) {
  if (index + length > buffer.length) {
    throw new Error('end of stream')
  }
}

function next () {
  const value = buffer[index]
  index += 1
  return value
}

function readByte () {
  checkEOS(1)
  return next()
}

function readBytes (n) {
  checkEOS(n)
  const value = buffer.slice(index, index + n)
  index += n
  return value
}

function readStringFromChars (length) {
  if (length >= 0 && index >= 0) { // the common case: a plain in-bounds range, decoded without a slice
    checkEOS(length)
    const start = index
    index += length
    return length === 0 ? '' : buffer.toString('utf8', start, index)
  }
  return readBytes(length).toString('utf-8')
}

function readInt (n) { // big endian, `|=` so 4 bytes give a signed 32-bit value
  checkEOS(n)
  let val = 0
  for (let i = 0; i < n; i++) {
    const shift = n - 1 - i
    val |= next() << (shift * 8)
  }
  return val
}

function readInt20 () {
  checkEOS(3)
  return ((next() & 15) << 16) + (next() << 8) + next()
}

function unpackHex (value) {
  if (value >= 0 && value < 16) {
    return value < 10 ? 48 + value : 65 + value - 10
  }
  throw new Error('invalid hex: ' + value)
}

function unpackNibble (value) {
  if (value >= 0 && value <= 9) {
    return 48 + value
  }
  switch (value) {
    case 10:
      return 45
    case 11:
      return 46
    case 15:
      return 0
    default:
      throw new Error('invalid nibble: ' + value)
  }
}

function unpackByte (tag, value) {
  if (tag === NIBBLE_8) {
    return unpackNibble(value)
  } else if (tag === HEX_8) {
    return unpackHex(value)
  } else {
    throw new Error('unknown tag: ' + tag)
  }
}

function readPacked8 (tag) {
  const startByte = readByte()
  const n = startByte & 127
  let len = 0
  for (let i = 0; i < n; i++) {
    const curByte = readByte()
    packScratch[len++] = unpackByte(tag, (curByte & 0xf0) >> 4)
    packScratch[len++] = unpackByte(tag, curByte & 0x0f)
  }
  if (startByte >> 7 !== 0 && len > 0) {
    len--
  }
  return len === 0 ? '' : packScratch.latin1Slice(0, len) // chars are ASCII
}

function isListTag (tag) {
  return tag === LIST_EMPTY || tag === LIST_8 || tag === LIST_16
}

function readListSize (tag) {
  switch (tag) {
    case LIST_EMPTY:
      return 0
    case LIST_8:
      return readByte()
    case LIST_16:
      return readInt(2)
    default:
      throw new Error('invalid tag for list size: ' + tag)
  }
}

function readJidPair () {
  const i = readString(readByte())
  const j = readString(readByte())
  if (j) {
    return (i || '') + '@' + j
  }
  throw new Error('invalid jid pair: ' + i + ', ' + j)
}

function readAdJid () {
  const rawDomainType = readByte()
  const domainType = Number(rawDomainType)
  const device = readByte()
  const user = readString(readByte())
  let server = 's.whatsapp.net'
  if (domainType === WAJIDDomains.LID) {
    server = 'lid'
  } else if (domainType === WAJIDDomains.HOSTED) {
    server = 'hosted'
  } else if (domainType === WAJIDDomains.HOSTED_LID) {
    server = 'hosted.lid'
  }
  return jidEncode(user, server, device)
}

function readFbJid () {
  const user = readString(readByte())
  const device = readInt(2)
  const server = readString(readByte())
  return `${user}:${device}@${server}`
}

function readInteropJid () {
  const user = readString(readByte())
  const device = readInt(2)
  const integrator = readInt(2)
  let server = 'interop'
  const beforeServer = index
  try {
    server = readString(readByte())
  } catch (err) {
    index = beforeServer
  }
  return `${integrator}-${user}:${device}@${server}`
}

function getTokenDouble (index1, index2) {
  const dict = DOUBLE_BYTE_TOKENS[index1]
  if (!dict) {
    throw new Error(`Invalid double token dict (${index1})`)
  }
  const value = dict[index2]
  if (typeof value === 'undefined') {
    throw new Error(`Invalid double token (${index2})`)
  }
  return value
}

function readString (tag) {
  if (tag >= 1 && tag < SINGLE_LEN) {
    return SINGLE_BYTE_TOKENS[tag] || ''
  }
  switch (tag) {
    case DICTIONARY_0:
    case DICTIONARY_1:
    case DICTIONARY_2:
    case DICTIONARY_3:
      return getTokenDouble(tag - DICTIONARY_0, readByte())
    case LIST_EMPTY:
      return ''
    case BINARY_8:
      return readStringFromChars(readByte())
    case BINARY_20:
      return readStringFromChars(readInt20())
    case BINARY_32:
      return readStringFromChars(readInt(4))
    case JID_PAIR:
      return readJidPair()
    case FB_JID:
      return readFbJid()
    case INTEROP_JID:
      return readInteropJid()
    case AD_JID:
      return readAdJid()
    case HEX_8:
    case NIBBLE_8:
      return readPacked8(tag)
    default:
      throw new Error('invalid string with tag: ' + tag)
  }
}

function readList (tag) {
  const items = []
  const size = readListSize(tag)
  for (let i = 0; i < size; i++) {
    items.push(decodeInner())
  }
  return items
}

function decodeInner () {
  const listSize = readListSize(readByte())
  const header = readString(readByte())
  if (!listSize || !header.length) {
    throw new Error('invalid node')
  }
  const attrs = {}
  let data
  const attributesLength = (listSize - 1) >> 1
  for (let i = 0; i < attributesLength; i++) {
    const key = readString(readByte())
    const value = readString(readByte())
    attrs[key] = value
  }
  if (listSize % 2 === 0) {
    const tag = readByte()
    if (isListTag(tag)) {
      data = readList(tag)
    } else {
      switch (tag) {
        case BINARY_8:
          data = readBytes(readByte())
          break
        case BINARY_20:
          data = readBytes(readInt20())
          break
        case BINARY_32:
          data = readBytes(readInt(4))
          break
        default:
          data = readString(tag)
          break
      }
    }
  }
  return {
    tag: header,
    attrs,
    content: data
  }
}

/** Baileys' `await decodeBinaryNode(buffer)`, synchronously: flags byte (bit 2 = zlib deflated), then a node. */
export function decodeNode (buffer) {
  return decodeDecompressed(2 & buffer.readUInt8() ? inflateSync(buffer.slice(1)) : buffer.slice(1))
}

function decodeDecompressed (buf) {
  buffer = buf
  index = 0
  try {
    return decodeInner()
  } finally {
    buffer = null
  }
}
