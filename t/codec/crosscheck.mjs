#!/usr/bin/env node
// Cross-check of our binary node codec (src/core/codec/binary.cpp) against Baileys' (t/wa-sim/node_modules/baileys),
// in both directions. Run from anywhere:   node t/codec/crosscheck.mjs
// Builds build/codec/codec_tool with g++, generates a seeded corpus of nodes, and for each node checks
//   (c) our encoding == Baileys' encoding, byte for byte;
//   (a) our decode -> re-encode of Baileys' bytes reproduces them exactly, and our decoded node == the node;
//   (b) Baileys decodes our encoding to the same node.
// Plus: zlib-compressed frames, frames only other encoders write (decoded by both sides alike), and the
// strings where we deliberately differ from Baileys' encoder because Baileys would alter them, and that
// src/core/codec/tokens.cpp matches the installed Baileys' tables.
// Prints "N passed, M failed" and exits non-zero on any failure.
import { spawnSync, execFileSync } from 'node:child_process';
import { deflateSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const B = await import(path.join(root, 't/wa-sim/node_modules/baileys/lib/WABinary/index.js'));
const { encodeBinaryNode, decodeBinaryNode } = B;
const C = await import(path.join(root, 't/wa-sim/node_modules/baileys/lib/WABinary/constants.js'));

// ---- build the C++ driver -----------------------------------------------------------------------
const tool = path.join(root, 'build/codec/codec_tool');
fs.mkdirSync(path.dirname(tool), { recursive: true });
const build = ['-std=c++17', '-O2', '-Wall', '-Wextra', '-Werror', '-Iinclude', 't/codec/codec_tool.cpp',
    'src/core/codec/binary.cpp', 'src/core/codec/jid.cpp', 'src/core/codec/tokens.cpp', '-o', tool, '-ljansson', '-lz'];
execFileSync(process.env.CXX || 'g++', build, { cwd: root, stdio: 'inherit' });

// ---- helpers --------------------------------------------------------------------------------------
const hex = b => Buffer.from(b).toString('hex');
const utf8hex = s => Buffer.from(s, 'utf-8').toString('hex');
const toJson = n => ({
    tag: utf8hex(n.tag),
    attrs: Object.entries(n.attrs || {}).map(([k, v]) => [utf8hex(k), utf8hex(v)]),
    content: n.content === undefined ? null
        : Array.isArray(n.content) ? n.content.map(toJson)
        : typeof n.content === 'string' ? { s: utf8hex(n.content) } : { b: hex(n.content) },
});
// canonical form for comparisons: string and binary content both become bytes
const canonJson = j => ({
    tag: j.tag, attrs: j.attrs,
    content: j.content === null ? null : Array.isArray(j.content) ? j.content.map(canonJson) : { x: j.content.s ?? j.content.b },
});
const canon = n => canonJson(toJson(n));
const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);

function runTool(lines) {
    const r = spawnSync(tool, { input: lines.join('\n') + '\n', maxBuffer: 1 << 30, encoding: 'utf-8' });
    if (r.status !== 0) throw new Error('codec_tool failed: ' + r.stderr);
    const out = r.stdout.split('\n');
    out.pop();
    if (out.length !== lines.length) throw new Error(`codec_tool answered ${out.length} of ${lines.length} lines`);
    return out;
}

// ---- corpus -----------------------------------------------------------------------------------------
let seed = 0xC0DEC0DE;
const rnd = () => { seed |= 0; seed = (seed + 0x6D2B79F5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const int = (a, b) => a + Math.floor(rnd() * (b - a + 1));
const pick = a => a[Math.floor(rnd() * a.length)];
const digits = n => Array.from({ length: n }, () => int(0, 9)).join('');
const bytes = n => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = int(0, 255); return b; };
const SINGLE = C.SINGLE_BYTE_TOKENS.slice(1), DOUBLE = C.DOUBLE_BYTE_TOKENS.flat();
const pn = () => '1' + digits(int(9, 13));
const lid = () => '1' + digits(14);
const jid = () => pick([
    () => pn() + '@s.whatsapp.net', () => `${pn()}:${int(1, 99)}@s.whatsapp.net`, () => `${pn()}:${int(100, 255)}@s.whatsapp.net`,
    () => lid() + '@lid', () => `${lid()}:${int(1, 40)}@lid`, () => `${pn()}:99@hosted`, () => `${lid()}:99@hosted.lid`,
    () => '1203630' + digits(11) + '@g.us', () => `${pn()}-${digits(10)}@g.us`, () => 'status@broadcast',
    () => digits(18) + '@newsletter', () => '@s.whatsapp.net', () => pn() + '@c.us', () => '13135550002@bot',
    () => pn() + '@msgr', () => 'user name@example.com', () => 'x@y@z', () => `${digits(6)}@broadcast`,
])();
const nibble = (n = int(1, 40)) => Array.from({ length: n }, () => pick('0123456789-.')).join('');
const hexUpper = (n = int(1, 40)) => Array.from({ length: n }, () => pick('0123456789ABCDEF')).join('');
const text = () => pick(['hello world', 'Olá 👋 ünïcödé ✓', 'a"b<c>&\'', 'with space', 'deadbeef', 'x'.repeat(300),
    'tab\there', 'pair-success', 'md', 'sid', 'ib', 'z'.repeat(70000), '3EB0abcdef', 'email:me', 'under_score']);
const str = () => pick([() => pick(SINGLE), () => pick(DOUBLE), () => nibble(), () => nibble(int(120, 140)),
    () => hexUpper(), () => hexUpper(int(120, 140)), jid, jid, text, () => ''])();
const msgId = () => '3EB0' + hexUpper(16);
const SIZES = [0, 1, 2, 255, 256, 257, 65535, 65536, (1 << 20) - 1, 1 << 20];
let bigBudget = 8; // at most this many payloads of >= 2^20 - 1 bytes
const payload = () => {
    let n = rnd() < 0.5 ? pick(SIZES) : int(0, 600);
    if (n >= (1 << 20) - 1 && bigBudget-- <= 0) n = int(0, 300);
    return bytes(n);
};
const attrsOf = entries => Object.fromEntries(entries.filter(([, v]) => v !== undefined));

function generic(depth) {
    const attrs = {};
    for (let i = int(0, 6); i > 0; i--) attrs[pick([() => pick(SINGLE), () => pick(DOUBLE), () => 'k' + digits(2), () => 'custom_key'])()] = str();
    const node = { tag: pick([() => pick(SINGLE), () => pick(DOUBLE), () => 'custom-tag', () => 'pair-success']) (), attrs };
    const r = rnd();
    if (r < 0.2) { /* no content */ }
    else if (r < 0.45) node.content = payload();
    else if (r < 0.6) node.content = str() || 'x';
    else if (r < 0.65) node.content = [];
    else node.content = depth > 4 ? [] : Array.from({ length: int(1, 4) }, () => any(depth + 1));
    return node;
}
const shapes = {
    iq: d => ({ tag: 'iq', attrs: attrsOf([['id', pick([msgId(), `${int(1, 9)}.${int(1, 999)}-${int(1, 99)}`, 'abc123'])],
        ['to', '@s.whatsapp.net'], ['type', pick(['get', 'set', 'result'])], ['xmlns', pick(['w:p', 'encrypt', 'usync', 'md', 'w:sync:app:state'])]]),
        content: pick([[{ tag: 'ping', attrs: {} }], [{ tag: 'count', attrs: {} }], undefined,
            [{ tag: 'usync', attrs: { sid: msgId(), mode: 'query', last: 'true', index: '0', context: 'message' },
                content: [{ tag: 'query', attrs: {}, content: [{ tag: 'devices', attrs: { version: '2' } }] },
                    { tag: 'list', attrs: {}, content: Array.from({ length: int(0, 5) }, () => ({ tag: 'user', attrs: { jid: jid() } })) }] }],
            [generic(d + 1)]]) }),
    message: () => ({ tag: 'message', attrs: attrsOf([['to', jid()], ['id', msgId()], ['type', pick(['text', 'media', 'reaction'])],
        ['t', String(int(1600000000, 1800000000))], ['participant', rnd() < 0.3 ? jid() : undefined]]),
        content: [{ tag: 'participants', attrs: {}, content: Array.from({ length: int(0, 3) }, () => ({ tag: 'to', attrs: { jid: jid() },
            content: [{ tag: 'enc', attrs: { v: '2', type: pick(['pkmsg', 'msg']) }, content: payload() }] })) },
            { tag: 'enc', attrs: { v: '2', type: 'skmsg' }, content: payload() },
            { tag: 'device-identity', attrs: {}, content: bytes(int(0, 200)) }] }),
    receipt: () => ({ tag: 'receipt', attrs: attrsOf([['id', msgId()], ['to', jid()], ['type', pick(['read', 'read-self', 'retry', undefined])],
        ['participant', rnd() < 0.4 ? jid() : undefined], ['t', String(int(1600000000, 1800000000))]]),
        content: rnd() < 0.5 ? undefined : [{ tag: 'list', attrs: {}, content: Array.from({ length: int(0, 4) }, () => ({ tag: 'item', attrs: { id: msgId() } })) }] }),
    ack: () => ({ tag: 'ack', attrs: attrsOf([['class', pick(['receipt', 'message', 'notification'])], ['id', msgId()], ['to', jid()],
        ['participant', rnd() < 0.5 ? jid() : undefined], ['type', rnd() < 0.5 ? pick(['read', 'delivery']) : undefined]]) }),
    notification: d => ({ tag: 'notification', attrs: attrsOf([['from', jid()], ['type', pick(['w:gp2', 'encrypt', 'devices', 'server_sync'])],
        ['id', String(int(1, 99999))], ['participant', jid()], ['t', String(int(1600000000, 1800000000))]]),
        content: [{ tag: pick(['add', 'remove', 'count', 'devices']), attrs: { reason: 'invite' },
            content: Array.from({ length: int(0, 3) }, () => ({ tag: 'participant', attrs: { jid: jid(), lid: jid() } })) }, generic(d + 1)] }),
};
const any = d => rnd() < 0.5 ? generic(d) : pick(Object.values(shapes))(d);

const corpus = [];
for (const shape of Object.values(shapes)) for (let i = 0; i < 30; i++) corpus.push(shape(0));
for (let i = 0; i < 80; i++) corpus.push(generic(0));
for (const n of SIZES) corpus.push({ tag: 'enc', attrs: { v: '2', type: 'msg' }, content: bytes(n) });
for (const n of [0, 1, 255, 256, 300]) corpus.push({ tag: 'list', attrs: {}, content: Array.from({ length: n }, (_, i) => ({ tag: 'item', attrs: { i: String(i) } })) });
corpus.push({ tag: 'many', attrs: Object.fromEntries(Array.from({ length: 127 }, (_, i) => ['k' + i, 'v'])) });
corpus.push({ tag: 'many', attrs: Object.fromEntries(Array.from({ length: 127 }, (_, i) => ['k' + i, 'v'])), content: [] });
corpus.push({ tag: 'many', attrs: Object.fromEntries(Array.from({ length: 200 }, (_, i) => ['k' + i, jid()])), content: 'text' });
corpus.push({ tag: 'iq', attrs: { id: '1.2-3', to: '@s.whatsapp.net', type: 'get', xmlns: 'w:p' }, content: [{ tag: 'ping', attrs: {} }] });
corpus.push({ tag: 'receipt', attrs: { id: '3EB0AB', to: '15550001111:5@s.whatsapp.net', t: '1700000000' } });
corpus.push({ tag: 'xmlstreamend', attrs: {} });
for (const s of ['', '0', 'read-self', '123', '12-3.', 'ABC', 'abc', '2@abc', '111111111111111@lid', 'status@broadcast',
    '1:5@s.whatsapp.net', 'n'.repeat(127), '7'.repeat(127), '7'.repeat(128), 'F'.repeat(127), 'F'.repeat(128)])
    corpus.push({ tag: 'ref', attrs: { s }, content: s });
let deep = { tag: 'leaf', attrs: {} };
for (let i = 1; i < 64; i++) deep = { tag: 'n', attrs: {}, content: [deep] };
corpus.push(deep);

// ---- run --------------------------------------------------------------------------------------------
let passed = 0, failed = 0;
const report = (what, detail) => console.log('FAIL', what, detail ?? '');
const fail = (what, detail) => { failed++; report(what, detail); };  // one failed case
const short = s => (s.length > 300 ? s.slice(0, 300) + `...(${s.length})` : s);

const theirs = corpus.map(n => encodeBinaryNode(n));
const zipped = theirs.map((b, i) => (i % 5 === 0 ? Buffer.concat([Buffer.from([2]), deflateSync(b.subarray(1))]) : null));
const lines = [];
corpus.forEach((n, i) => { lines.push('E ' + JSON.stringify(toJson(n))); lines.push('D ' + hex(theirs[i])); if (zipped[i]) lines.push('D ' + hex(zipped[i])); });
const answers = runTool(lines);
let k = 0;
for (let i = 0; i < corpus.length; i++) {
    const n = corpus[i], want = hex(theirs[i]), label = `corpus[${i}] <${n.tag}>`;
    const enc = answers[k++], dec = answers[k++], zdec = zipped[i] ? answers[k++] : null;
    let ok = true;
    const check = (cond, what, detail) => { if (!cond) { ok = false; report(`${label} ${what}`, detail); } };
    // (c) our encoding == Baileys'
    const ours = enc.startsWith('OK ') ? enc.slice(3) : null;
    check(ours === want, '(c) encode differs', ours ? `\n  ours   ${short(ours)}\n  theirs ${short(want)}` : enc);
    // (a) decode Baileys' bytes, re-encode == Baileys' bytes, decoded node == node
    const m = /^OK ([0-9a-f]*) (.*)$/.exec(dec);
    check(m && m[1] === want, '(a) decode->encode differs', m ? `\n  ours   ${short(m[1])}\n  theirs ${short(want)}` : dec);
    if (m) check(same(canonJson(JSON.parse(m[2])), canon(n)), '(a) decoded node differs', short(m[2]));
    if (zdec) check(zdec.startsWith('OK ' + want + ' '), '(a) zlib frame', short(zdec));
    // (b) Baileys decodes our encoding to the node
    if (ours !== null) {
        try {
            const back = await decodeBinaryNode(Buffer.from(ours, 'hex'));
            check(same(canon(back), canon(n)), '(b) Baileys decodes our bytes differently', short(JSON.stringify(canon(back))));
        } catch (e) { check(false, '(b) Baileys cannot decode our bytes', e.message); }
    }
    if (ok) passed++; else failed++;
}

// Frames other encoders (whatsmeow, the server) write and Baileys' encoder never does: both decoders agree.
const foreign = [
    ['empty nibble FF 00', '00f8031908ff00'], ['LIST_EMPTY as a string', '00f803190800'],
    ['FB_JID', '00f8031908f6ff019800 07cc'], ['INTEROP_JID', '00f8031908f5ff01980007000 9fc07696e7465726f70'],
    ['AD_JID hosted device 0', '00f8031908f7800055'], ['BINARY_20 short', '00f8031908fd00000141'],
    ['BINARY_32 short', '00f8031908fe0000000141'], ['LIST_16 node', '00f90001 19'], ['LIST_16 children', '00f80219f90001f8011a'],
    ['hex odd', '00f8031908fb81af'], ['dictionary 3', '00f8031908efff'], ['string content token', '00f8021908'],
].map(([name, h]) => [name, h.replace(/ /g, '')]);
const fAnswers = runTool(foreign.map(([, h]) => 'D ' + h));
for (let i = 0; i < foreign.length; i++) {
    const [name, h] = foreign[i];
    const m = /^OK ([0-9a-f]*) (.*)$/.exec(fAnswers[i]);
    let theirsNode;
    try { theirsNode = await decodeBinaryNode(Buffer.from(h, 'hex')); } catch (e) { theirsNode = 'ERR ' + e.message; }
    const oursC = m ? canonJson(JSON.parse(m[2])) : fAnswers[i];
    const theirsC = typeof theirsNode === 'string' ? theirsNode : canon(theirsNode);
    // our AD_JID keeps ':0' (Baileys drops it); compare with that one difference applied
    const fix = JSON.stringify(oursC).replace(utf8hex(':0@'), utf8hex('@'));
    if (m && fix === JSON.stringify(theirsC)) passed++;
    else fail(`foreign frame "${name}"`, `\n  ours   ${JSON.stringify(oursC)}\n  theirs ${JSON.stringify(theirsC)}`);
}

// Strings Baileys' encoder alters (lossy JID parsing, Object-prototype names in TOKEN_MAP). We write them in a
// form that decodes back to the string: Baileys must decode our bytes to the original, and its own encoding not.
const divergent = ['a_b@x', '1:02@s.whatsapp.net', 'u:1@g.us', 'a:@x', 'foo@', '1_1:2@s.whatsapp.net', '1:2:3@s.whatsapp.net',
    '98:7@msgr', '9-98:7@interop', 'constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf'];
const dNodes = divergent.map(s => ({ tag: 'iq', attrs: { v: s }, content: s }));
const dAnswers = runTool(dNodes.map(n => 'E ' + JSON.stringify(toJson(n))));
for (let i = 0; i < dNodes.length; i++) {
    const s = divergent[i];
    const ours = dAnswers[i].startsWith('OK ') ? dAnswers[i].slice(3) : null;
    let oursBack = null, theirsBack = null;
    try { oursBack = ours && await decodeBinaryNode(Buffer.from(ours, 'hex')); } catch (e) { oursBack = null; }
    try { theirsBack = await decodeBinaryNode(encodeBinaryNode(dNodes[i])); } catch (e) { theirsBack = null; }
    const okOurs = oursBack && oursBack.attrs.v === s && Buffer.from(oursBack.content).toString('utf-8') === s;
    const lossyTheirs = !theirsBack || theirsBack.attrs.v !== s;
    if (okOurs && lossyTheirs) passed++;
    else fail(`divergent string ${JSON.stringify(s)}`, `ours ${JSON.stringify(oursBack?.attrs)} theirs ${JSON.stringify(theirsBack?.attrs)}`);
}

// Strings where Baileys' decoder (not its encoder) loses information: identical bytes, and our decoder keeps it.
const lossyDecode = ['15550001111:0@s.whatsapp.net', '15550001111_7:2@s.whatsapp.net', '1:0@lid'];
const lNodes = lossyDecode.map(s => ({ tag: 'iq', attrs: { v: s } }));
const lTheirs = lNodes.map(n => encodeBinaryNode(n));
const lAnswers = runTool(lNodes.flatMap((n, i) => ['E ' + JSON.stringify(toJson(n)), 'D ' + hex(lTheirs[i])]));
for (let i = 0; i < lNodes.length; i++) {
    const e = lAnswers[2 * i], d = /^OK ([0-9a-f]*) (.*)$/.exec(lAnswers[2 * i + 1]);
    if (e === 'OK ' + hex(lTheirs[i]) && d && d[1] === hex(lTheirs[i]) && same(canonJson(JSON.parse(d[2])), canon(lNodes[i]))) passed++;
    else fail(`lossy-decode string ${JSON.stringify(lossyDecode[i])}`, `${e}\n  ${lAnswers[2 * i + 1]}`);
}

// src/core/codec/tokens.cpp is what t/codec/gen-tokens.mjs makes of the installed Baileys' constants.js.
const generated = execFileSync(process.execPath, [path.join(here, 'gen-tokens.mjs')], { encoding: 'utf-8' });
if (generated === fs.readFileSync(path.join(root, 'src/core/codec/tokens.cpp'), 'utf-8')) passed++;
else fail('src/core/codec/tokens.cpp is stale', '(regenerate: node t/codec/gen-tokens.mjs > src/core/codec/tokens.cpp)');

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
