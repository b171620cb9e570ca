#!/usr/bin/env node
// Writes proto/WAProto.proto: the part of Baileys' WAProto.proto this gateway uses, as proto2 for
// protoc 3.21's lite runtime, with exactly Baileys' wire format.
//   node proto/trim.mjs [path/to/WAProto.proto] [out.proto]      (or: make proto-update)
// Defaults: t/wa-sim/node_modules/baileys/WAProto/WAProto.proto -> proto/WAProto.proto.
// No npm dependencies: a small parser for the subset of the proto language Baileys' file uses
// (message, enum, oneof, map<,>, optional/repeated/implicit fields, [packed=true]).
//
// Conversion (proto3 -> proto2), chosen so that both sides write and read the same bytes:
//  - every field outside a oneof gets an explicit label: `optional` (proto3 `optional` and implicit
//    presence alike) or `repeated`; oneof members stay unlabelled;
//  - repeated scalar and enum fields get [packed=true]: proto3 packs them by default (protobufjs writes
//    Baileys' `repeated int32 shards = 14` as one length-delimited field), proto2 does not;
//  - enums are copied as they are: proto2 allows a non-zero first value (proto3 does not, which is
//    why protoc refuses Baileys' file).
//  - package `waproto` (C++ namespace waproto::), optimize_for = LITE_RUNTIME (libprotobuf-lite).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// ================================ what is kept ====================================================
// WHOLE: top-level messages kept with every field and nested type, and everything those refer to.
const WHOLE = [
    'HandshakeMessage',             // Noise handshake: ClientHello / ServerHello / ClientFinish
    'CertChain',                    // server certificate chain (NoiseCertificate, NoiseCertificate.Details)
    'ClientPayload',                // login / registration payload (UserAgent, WebInfo, DevicePairingRegistrationData, ...)
    'DeviceProps',                  // companion properties sent at registration (HistorySyncConfig, AppVersion)
    'ClientPairingProps',
    'ADVSignedDeviceIdentityHMAC',  // pair-success device identity, its HMAC and signatures
    'ADVSignedDeviceIdentity',
    'ADVDeviceIdentity',
    'ADVSignedKeyIndexList',
    'ADVKeyIndexList',
    'ADVEncryptionType',            // enum
];

// TRIMMED: messages kept in part. Every scalar, string, bytes and enum field of these is kept; of their
// message-typed fields only the ones listed (`only` restricts all fields, scalars included). A message
// type reached through a kept field must itself be in WHOLE or in this table (the script refuses to
// guess), so this table is the complete list of what the Message tree contains.
const TRIMMED = {
    Message: { only: ['conversation', 'extendedTextMessage', 'imageMessage', 'documentMessage', 'audioMessage',
        'videoMessage', 'stickerMessage', 'contactMessage', 'locationMessage', 'reactionMessage', 'protocolMessage',
        'senderKeyDistributionMessage', 'deviceSentMessage', 'messageContextInfo'] },
    'Message.ExtendedTextMessage': ['contextInfo'],
    'Message.ImageMessage': ['contextInfo'],
    'Message.DocumentMessage': ['contextInfo'],
    'Message.AudioMessage': ['contextInfo'],
    'Message.VideoMessage': ['contextInfo'],
    'Message.StickerMessage': ['contextInfo'],
    'Message.ContactMessage': ['contextInfo'],
    'Message.LocationMessage': ['contextInfo'],
    'Message.ReactionMessage': ['key'],
    'Message.ProtocolMessage': ['key', 'editedMessage', 'disappearingMode'],  // revoke, edit, ephemeral setting
    'Message.SenderKeyDistributionMessage': [],
    'Message.DeviceSentMessage': ['message'],
    MessageContextInfo: ['deviceListMetadata'],
    DeviceListMetadata: [],
    MessageKey: [],
    // ContextInfo keeps its scalars (stanzaId, participant, remoteJid, mentionedJid, isForwarded, expiration,
    // ...) and the quoted message; not ads, bots, newsletters, business or status attribution trees.
    ContextInfo: ['quotedMessage', 'placeholderKey', 'disappearingMode'],
    DisappearingMode: [],
};
// =================================================================================================

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const input = process.argv[2] || path.join(root, 't/wa-sim/node_modules/baileys/WAProto/WAProto.proto');
const output = process.argv[3] || path.join(here, 'WAProto.proto');
const fail = (msg) => { console.error('trim.mjs: ' + msg); process.exit(1); };

const SCALARS = new Set(['double', 'float', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32',
    'fixed64', 'sfixed32', 'sfixed64', 'bool', 'string', 'bytes']);
const NOT_PACKABLE = new Set(['string', 'bytes']);

// ---- parser ---------------------------------------------------------------------------------------
function tokenize(text) {
    const toks = [];
    const re = /\s+|\/\/[^\n]*|\/\*[\s\S]*?\*\/|("(?:[^"\\]|\\.)*")|([A-Za-z_.][A-Za-z0-9_.]*)|(-?\d+)|([{}[\]<>;=,()])/y;
    let m;
    while (re.lastIndex < text.length) {
        const at = re.lastIndex;
        if (!(m = re.exec(text))) fail(`cannot tokenize at offset ${at}: ${JSON.stringify(text.slice(at, at + 30))}`);
        const t = m[1] ?? m[2] ?? m[3] ?? m[4];
        if (t !== undefined) toks.push(t);
    }
    return toks;
}

class Parser {
    constructor(toks) { this.t = toks; this.i = 0; }
    peek() { return this.t[this.i]; }
    next() { if (this.i >= this.t.length) fail('unexpected end of file'); return this.t[this.i++]; }
    expect(s) { const t = this.next(); if (t !== s) fail(`expected ${s}, got ${t} (token ${this.i})`); }
    // raw text of [ ... ] field options, e.g. "[packed=true]"
    options() {
        if (this.peek() !== '[') return '';
        let s = '';
        while (this.peek() !== ']') s += this.next();
        s += this.next();
        return s.replace(/^\[|\]$/g, '').replace(/=/g, ' = ').replace(/,/g, ', ');
    }
    file() {
        const defs = [];
        while (this.i < this.t.length) {
            const k = this.next();
            if (k === 'syntax' || k === 'package' || k === 'option') { while (this.next() !== ';'); continue; }
            if (k === 'message') defs.push(this.message(null));
            else if (k === 'enum') defs.push(this.enumDef(null));
            else fail(`unexpected top-level token ${k}`);
        }
        return defs;
    }
    message(parent) {
        const name = this.next();
        const msg = { kind: 'message', name, full: parent ? parent.full + '.' + name : name, parent, items: [] };
        this.expect('{');
        while (this.peek() !== '}') {
            const k = this.peek();
            if (k === 'message') { this.next(); msg.items.push(this.message(msg)); }
            else if (k === 'enum') { this.next(); msg.items.push(this.enumDef(msg)); }
            else if (k === 'oneof') { this.next(); msg.items.push(this.oneof(msg)); }
            else if (k === ';') this.next();
            else if (k === 'reserved' || k === 'extensions' || k === 'option') fail(`${k} not supported (in ${msg.full})`);
            else msg.items.push(this.field(msg, null));
        }
        this.expect('}');
        return msg;
    }
    oneof(msg) {
        const o = { kind: 'oneof', name: this.next(), fields: [] };
        this.expect('{');
        while (this.peek() !== '}') {
            if (this.peek() === ';') { this.next(); continue; }
            o.fields.push(this.field(msg, o));
        }
        this.expect('}');
        return o;
    }
    field(msg, oneof) {
        let label = null;
        if (this.peek() === 'optional' || this.peek() === 'repeated' || this.peek() === 'required') label = this.next();
        let type = this.next(), mapKey = null;
        if (type === 'map') {
            this.expect('<'); mapKey = this.next(); this.expect(','); type = this.next(); this.expect('>');
        }
        const name = this.next();
        this.expect('=');
        const number = Number(this.next());
        const options = this.options();
        this.expect(';');
        if (oneof && label) fail(`labelled oneof member ${msg.full}.${name}`);
        return { kind: 'field', label, type, mapKey, name, number, options, oneof, owner: msg };
    }
    enumDef(parent) {
        const name = this.next();
        const e = { kind: 'enum', name, full: parent ? parent.full + '.' + name : name, parent, values: [] };
        this.expect('{');
        while (this.peek() !== '}') {
            if (this.peek() === ';') { this.next(); continue; }
            if (this.peek() === 'option') fail(`enum option not supported (in ${e.full})`);
            const vname = this.next();
            this.expect('=');
            const number = Number(this.next());
            const options = this.options();
            this.expect(';');
            e.values.push({ name: vname, number, options });
        }
        this.expect('}');
        return e;
    }
}

// ---- model ----------------------------------------------------------------------------------------
const text = fs.readFileSync(input, 'utf-8');
const pkg = (text.match(/^\s*package\s+([\w.]+)\s*;/m) || [])[1];
const waVersion = (text.match(/^\/\/\/\s*WhatsApp Version:\s*(\S+)/m) || [])[1] || 'unknown';
const defs = new Parser(tokenize(text)).file();

const byName = new Map();
const index = (d) => {
    byName.set(d.full, d);
    if (d.kind === 'message') for (const it of d.items) if (it.kind === 'message' || it.kind === 'enum') index(it);
};
defs.forEach(index);

const fieldsOf = (msg) => msg.items.flatMap(it => it.kind === 'field' ? [it] : it.kind === 'oneof' ? it.fields : []);

// protobuf scoping: a reference is looked up from the innermost enclosing scope outwards.
function resolve(ref, scope) {
    if (SCALARS.has(ref)) return null;
    let r = ref;
    if (r.startsWith('.')) {
        r = r.slice(1);
        if (pkg && r.startsWith(pkg + '.')) r = r.slice(pkg.length + 1);
        return byName.get(r) || fail(`unknown type ${ref}`);
    }
    const [first, ...rest] = r.split('.');
    for (let s = scope; ; s = s.parent) {
        const base = s ? s.full + '.' + first : first;
        if (byName.has(base)) {
            const full = [base, ...rest].join('.');
            return byName.get(full) || fail(`unknown type ${ref} (in ${scope?.full})`);
        }
        if (!s) break;
    }
    if (pkg && first === pkg) return resolve('.' + r, null);
    fail(`unknown type ${ref} (in ${scope?.full})`);
}
for (const d of byName.values()) {
    if (d.kind !== 'message') continue;
    for (const f of fieldsOf(d)) f.target = resolve(f.type, d);
}

// ---- selection ------------------------------------------------------------------------------------
const keptTypes = new Set();      // full names of kept messages and enums
const keptFields = new Map();     // message full name -> Set of kept fields
const trimmedUsed = new Set();
const reason = new Map();         // full name -> how it was reached (for error messages)

function keepFieldsOf(msg, mode) {
    const rule = TRIMMED[msg.full];
    const all = fieldsOf(msg);
    if (mode === 'whole') {
        if (rule) fail(`${msg.full} is in TRIMMED but is also needed whole (via ${reason.get(msg.full)})`);
        return all;
    }
    if (!rule) fail(`${msg.full} is reached through the trimmed Message tree (via ${reason.get(msg.full)}): ` +
        'add it to TRIMMED (or to WHOLE)');
    trimmedUsed.add(msg.full);
    const names = new Set(all.map(f => f.name));
    const listed = Array.isArray(rule) ? rule : rule.only;
    for (const n of listed) if (!names.has(n)) fail(`TRIMMED ${msg.full}: no field ${n}`);
    if (rule.only) return all.filter(f => rule.only.includes(f.name));
    return all.filter(f => !(f.target?.kind === 'message') || rule.includes(f.name));
}

function keep(d, mode, via) {
    // a nested type needs its enclosing messages (as scopes, possibly with no fields of their own)
    for (let p = d.parent; p; p = p.parent) if (!keptTypes.has(p.full) && !keptFields.has(p.full)) {
        keptFields.set(p.full, new Set());
        reason.set(p.full, 'scope of ' + d.full);
    }
    if (keptTypes.has(d.full)) return;
    keptTypes.add(d.full);
    if (!reason.has(d.full)) reason.set(d.full, via);
    if (d.kind === 'enum') return;
    const fields = keepFieldsOf(d, mode);
    const set = keptFields.get(d.full) || new Set();
    keptFields.set(d.full, set);
    for (const f of fields) {
        set.add(f);
        if (f.target) keep(f.target, mode, d.full + '.' + f.name);
    }
    // a whole message brings all its nested types, used by a field or not (CertChain.NoiseCertificate.Details
    // is only ever carried as bytes)
    if (mode === 'whole') for (const it of d.items) if (it.kind === 'message' || it.kind === 'enum') keep(it, mode, d.full);
}

for (const n of WHOLE) keep(byName.get(n) || fail(`WHOLE: no top-level type ${n}`), 'whole', 'WHOLE');
keep(byName.get('Message'), 'trimmed', 'TRIMMED');
for (const n of Object.keys(TRIMMED)) if (!trimmedUsed.has(n)) fail(`TRIMMED ${n} is never reached: remove it`);

// ---- output ---------------------------------------------------------------------------------------
const isPackable = (f) => f.label === 'repeated' && !f.mapKey &&
    (f.target ? f.target.kind === 'enum' : !NOT_PACKABLE.has(f.type));

function fieldLine(f, ind) {
    const opts = f.options ? f.options.split(/\s*,\s*/) : [];
    if (isPackable(f) && !opts.some(o => /^packed\b/.test(o))) opts.push('packed = true');
    const type = f.mapKey ? `map<${f.mapKey}, ${f.type}>` : f.type;
    const label = f.oneof || f.mapKey ? '' : (f.label === 'repeated' ? 'repeated ' : f.label === 'required' ? 'required ' : 'optional ');
    return `${ind}${label}${type} ${f.name} = ${f.number}${opts.length ? ` [${opts.join(', ')}]` : ''};`;
}

function emit(d, depth, out) {
    const ind = '    '.repeat(depth);
    if (d.kind === 'enum') {
        out.push(`${ind}enum ${d.name} {`);
        for (const v of d.values) out.push(`${ind}    ${v.name} = ${v.number}${v.options ? ` [${v.options}]` : ''};`);
        out.push(`${ind}}`);
        return;
    }
    const fields = keptFields.get(d.full);
    out.push(`${ind}message ${d.name} {`);
    for (const it of d.items) {
        if (it.kind === 'field') { if (fields.has(it)) out.push(fieldLine(it, ind + '    ')); }
        else if (it.kind === 'oneof') {
            const kept = it.fields.filter(f => fields.has(f));
            if (!kept.length) continue;
            out.push(`${ind}    oneof ${it.name} {`);
            for (const f of kept) out.push(fieldLine(f, ind + '        '));
            out.push(`${ind}    }`);
        } else if (keptTypes.has(it.full) || keptFields.has(it.full)) emit(it, depth + 1, out);
    }
    out.push(`${ind}}`);
}

const rel = (p) => path.relative(root, p) || p;
let bVersion = 'unknown';
try {
    const pj = JSON.parse(fs.readFileSync(path.join(path.dirname(input), '../package.json'), 'utf-8'));
    if (pj.name === 'baileys') bVersion = pj.version;
} catch { /* not inside a baileys package: version unknown */ }

const out = [
    '// GENERATED FILE, DO NOT EDIT.',
    `// Made by proto/trim.mjs (\`make proto-update\`, i.e. \`node proto/trim.mjs\`) from Baileys ${bVersion}'s`,
    `// ${rel(input)} (WhatsApp Version: ${waVersion}).`,
    '// Only the messages the gateway uses, converted to proto2 for protoc 3.21 (lite runtime) with the same',
    '// wire format as Baileys\' proto3 original; see the table at the top of proto/trim.mjs.',
    'syntax = "proto2";',
    'package waproto;',
    'option optimize_for = LITE_RUNTIME;',
];
const topKept = [];
for (const d of defs) {
    if (!keptTypes.has(d.full) && !keptFields.has(d.full)) continue;
    topKept.push(d.full);
    out.push('');
    emit(d, 0, out);
}
fs.writeFileSync(output, out.join('\n') + '\n');

const count = (kind) => [...keptTypes].filter(n => byName.get(n).kind === kind).length;
console.log(`trim.mjs: wrote ${rel(output)}: ${topKept.length} top-level definitions, ${count('message')} messages, ` +
    `${count('enum')} enums (of ${[...byName.values()].filter(d => d.kind === 'message').length} messages in ${rel(input)})`);
const implicit = [...keptFields.values()].flatMap(s => [...s]).filter(f => !f.label && !f.oneof && !f.mapKey);
if (implicit.length) console.log('trim.mjs: proto3 implicit-presence fields made optional: ' +
    implicit.map(f => f.owner.full + '.' + f.name).join(' '));
if (process.env.TRIM_VERBOSE) {
    console.log('top level: ' + topKept.join(' '));
    for (const n of trimmedUsed) {
        const kept = keptFields.get(n);
        const dropped = fieldsOf(byName.get(n)).filter(f => !kept.has(f)).map(f => `${f.name}:${f.type}`);
        console.log(`${n}: dropped ${dropped.join(' ') || '-'}`);
    }
}
