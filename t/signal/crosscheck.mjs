#!/usr/bin/env node
// Cross-check of our Signal layer (src/core/signal, libsignal-protocol-c on wa::store's SQLite) against the
// node `libsignal` package that Baileys uses, driven as the simulator's contacts drive it
// (t/wa-sim/lib/signal-device.mjs). Run from anywhere:   node t/signal/crosscheck.mjs   (make signaltest)
// Builds the core objects it needs with make, links build/signal/signal_tool (t/signal/signal_tool.cpp)
// with g++ and drives it over stdin/stdout (hex lines).
//  A. We build sessions from a node device's bundle served as a <iq><list><user> node (Baileys' encoder,
//     beside a <user> with a per-user <error> that must only skip that user), encrypt padded Messages
//     (conversation with emoji, accents, newlines) → node decrypts, checks whatsmeow's padding (1..15 copies
//     of p), decodes the same text; node replies (msg) → we decrypt; several each way; a deviceSentMessage;
//     then a fresh tool process on the same SQLite file carries on (session persistence).
//  B. A node device builds from OUR bundle (identity, signed prekey, one-time prekey 3) → pkmsg → we decrypt
//     and prekey 3 is gone from the store; the conversation continues both ways.
//  C. A tampered msg gives bad_mac (and the original still decrypts), a replay gives duplicate (msg and
//     pkmsg), a msg from an unknown device no_session, a pkmsg naming a consumed prekey invalid_prekey_id.
// Prints "N passed, M failed" last and exits non-zero on any failure.
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import readline from 'node:readline';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const simDir = path.join(root, 't/wa-sim');
const req = createRequire(path.join(simDir, 'package.json'));
const B = await import(pathToFileURL(req.resolve('baileys')).href);
const libsignal = req('libsignal');
const libsignalCurve = req('libsignal/src/curve.js');
const { SignalDevice, peerAddress } = await import(pathToFileURL(path.join(simDir, 'lib/signal-device.mjs')).href);
const { proto, encodeBinaryNode, encodeBigEndian } = B;
const { SessionCipher } = libsignal;

let passed = 0, failed = 0;
const check = (name, ok, detail = '') => {
    if (ok) { passed++; console.log('ok   ' + name); } else { failed++; console.log('FAIL ' + name + (detail ? ': ' + detail : '')); }
};
const cleanups = [];
const cleanup = () => { for (const f of cleanups.splice(0)) { try { f(); } catch { } } };
const finish = (code) => { cleanup(); console.log(`${passed} passed, ${failed} failed`); process.exit(code ?? (failed ? 1 : 0)); };
const watchdog = setTimeout(() => { failed++; console.log('FAIL watchdog: crosscheck took more than 60 s'); finish(1); }, 60000);
watchdog.unref();

// ---- build: the core objects (make knows when they are stale), then the tool ----------------------------
const coreSrcs = ['src/core', ...fs.readdirSync(path.join(root, 'src/core'), { withFileTypes: true })
    .filter(d => d.isDirectory()).map(d => 'src/core/' + d.name)]
    .flatMap(dir => fs.readdirSync(path.join(root, dir)).filter(f => f.endsWith('.cpp')).map(f => dir + '/' + f));
const objs = coreSrcs.map(s => 'build/core/' + s.slice('src/core/'.length).replace(/\.cpp$/, '.o'));
execFileSync('make', ['-s', '--no-print-directory', 'build/libwaproto.a', ...objs], { cwd: root, stdio: 'inherit', timeout: 600000 });
const toolPath = path.join(root, 'build/signal/signal_tool');
fs.mkdirSync(path.dirname(toolPath), { recursive: true });
const inputs = ['t/signal/signal_tool.cpp', 'build/libwaproto.a', ...objs].map(f => path.join(root, f));
const mtime = f => fs.statSync(f).mtimeMs;
if (!fs.existsSync(toolPath) || inputs.some(f => mtime(f) > mtime(toolPath))) {
    // The Makefile's flags and CORE_LIBS.
    execFileSync(process.env.CXX || 'g++', ['-std=c++17', '-O2', '-Wall', '-Wextra', '-Werror', '-Iinclude', '-Isrc',
        '-Ibuild/gen', 't/signal/signal_tool.cpp', ...objs, '-o', toolPath, 'build/libwaproto.a', '-lprotobuf-lite',
        '-ljansson', '-lqrencode', '-lphonenumber', '-lsignal-protocol-c', '-lsqlite3', '-lz', '-ljpeg', '-lssl', '-lcrypto'],
    { cwd: root, stdio: 'inherit', timeout: 120000 });
}

const hex = b => Buffer.from(b).toString('hex');
const unhex = s => s === '-' ? Buffer.alloc(0) : Buffer.from(s, 'hex');
const withTimeout = (p, ms, what) => {
    let t;
    return Promise.race([p.finally(() => clearTimeout(t)),
        new Promise((_, rej) => { t = setTimeout(() => rej(new Error('timeout: ' + what)), ms); })]);
};

/** One signal_tool process (a "helper" with its SQLite file). */
function startTool () {
    const proc = spawn(toolPath, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    cleanups.push(() => proc.kill('SIGKILL'));
    const rl = readline.createInterface({ input: proc.stdout });
    const lines = []; let waiter = null;
    rl.on('line', l => { lines.push(l); if (waiter) { const w = waiter; waiter = null; w(); } });
    const nextLine = () => withTimeout(lines.length ? Promise.resolve(lines.shift())
        : new Promise(res => { waiter = () => res(lines.shift()); }), 10000, 'signal_tool answer');
    return {
        async cmd (line) { proc.stdin.write(line + '\n'); return nextLine(); },
        async stop () { proc.stdin.end(); await new Promise(res => proc.once('exit', res)); },
    };
}

// ---- node side helpers -----------------------------------------------------------------------------------
const node = (tag, attrs = {}, content) => ({ tag, attrs, content });
const bundleUser = (jid, b) => node('user', { jid }, [
    node('registration', {}, encodeBigEndian(b.registrationId, 4)),
    node('type', {}, Buffer.from([5])),
    node('identity', {}, b.identity),
    node('skey', {}, [node('id', {}, encodeBigEndian(b.skey.id, 3)), node('value', {}, b.skey.value), node('signature', {}, b.skey.signature)]),
    ...(b.key ? [node('key', {}, [node('id', {}, encodeBigEndian(b.key.id, 3)), node('value', {}, b.key.value)])] : []),
]);

// whatsmeow's padding, checked strictly: p in 1..15, p copies of p.
function strictUnpad (plain) {
    const p = plain[plain.length - 1];
    if (p < 1 || p > 15) throw new Error(`pad ${p} outside 1..15`);
    for (let i = plain.length - p; i < plain.length; i++) if (plain[i] !== p) throw new Error('pad bytes differ');
    return { p, body: plain.subarray(0, plain.length - p) };
}
const padsSeen = new Set();

/** Node decrypts what our tool produced ("enc TYPE HEX"), checks the padding, decodes the Message. */
async function nodeDecrypt (dev, addr, encLine) {
    const [, type, ct] = encLine.split(' ');
    const cipher = new SessionCipher(dev.storage, addr);
    const plain = type === 'pkmsg' ? await cipher.decryptPreKeyWhisperMessage(unhex(ct)) : await cipher.decryptWhisperMessage(unhex(ct));
    const { p, body } = strictUnpad(Buffer.from(plain));
    padsSeen.add(p);
    return { type, msg: proto.Message.decode(body) };
}

const textHex = s => hex(Buffer.from(s, 'utf8'));
const parseText = line => { const f = line.split(' '); return { text: unhex(f[1]).toString('utf8'), deviceSent: f[2] === '1', dest: f[3], prekeyUsed: Number(f[4]), identityChanged: f[5] === '1' }; };

const TEXTS = [
    'Hola, ¿cómo está? Su cita es mañana 🗓️ a las 10:00 ✅',
    'líneas\nvarias\r\ncon tildes: áéíóú ÁÉÍÓÚ ñÑ üÜ ç',
    'emoji: 👋🏽 👨‍👩‍👧‍👦 🇨🇴 ❤️‍🔥',
    'x'.repeat(300) + ' fin',
    '',
];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa_signal_xc_'));
cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
const ORG = '42';
const OUR_NAME = '573001111111'; // how the node devices name us (device 4 of that number)
const ourAddr = peerAddress(OUR_NAME, 4);

try {
    // ============ A. we build from a node device's bundle ============
    let tool = startTool();
    let r = await tool.cmd(`open ${dir} ${ORG}`);
    check('A open store, credentials made', r.startsWith('ok '), r);

    const contact = SignalDevice.create({ preKeys: 5 });
    const contactJid = '123456789012345:2@lid';
    check('A address of a LID device', (await tool.cmd(`address ${contactJid}`)) === 'addr 123456789012345_1.2');
    const forged = SignalDevice.create({ preKeys: 1 }).takeBundle();
    forged.skey.signature = Buffer.from(forged.skey.signature);
    forged.skey.signature[10] ^= 0x04;
    const iq = node('iq', { type: 'result', id: '1.2-3', from: 's.whatsapp.net' }, [node('list', {}, [
        bundleUser(contactJid, contact.takeBundle()),
        node('user', { jid: '999:1@lid' }, [node('error', { code: '404', text: 'item-not-found' })]),
        bundleUser('888:3@lid', forged),
    ])]);
    r = await tool.cmd(`bundlenode ${hex(encodeBinaryNode(iq))}`);
    check('A bundle node from Baileys\' encoder: the device is built, the <error> user alone skipped',
        r.startsWith(`users ${contactJid}=ok,999:1@lid=err:error_404_item-not-found,`), r);
    check('A a node-made bundle with a broken signed-prekey signature → invalid_bundle (we verify XEdDSA)',
        r.endsWith(',888:3@lid=err:invalid_bundle'), r);
    check('A session exists', (await tool.cmd(`hassession ${contactJid}`)) === '1');
    check('A no session for the failed user', (await tool.cmd('hassession 999:1@lid')) === '0');

    // Our messages until the contact answers: pkmsg.
    for (const [i, t] of TEXTS.entries()) {
        const enc = await tool.cmd(`encrypt ${contactJid} ${textHex(t)}`);
        let got;
        try { got = await nodeDecrypt(contact, ourAddr, enc); } catch (e) { got = { err: e.message }; }
        check(`A ours→node #${i} pkmsg decrypts, whatsmeow padding, same conversation text`,
            enc.startsWith('enc pkmsg ') && got.msg?.conversation === t && !got.msg?.extendedTextMessage, got.err || enc.slice(0, 40));
    }
    // Node answers: msg, both conversation and extendedTextMessage.
    const replies = ['respuesta ✓ 1', 'respuesta 2\ncon línea', 'ext: 👍 ok'];
    for (const [i, t] of replies.entries()) {
        const m = i === 2 ? { extendedTextMessage: { text: t } } : { conversation: t };
        const { type, ciphertext } = await contact.encrypt(ourAddr, m);
        r = await tool.cmd(`decrypt ${contactJid} ${type} ${hex(ciphertext)}`);
        const got = r.startsWith('text ') ? parseText(r) : {};
        check(`A node→ours #${i} (${type}, Baileys' padding 1..16) decrypts to the same text`, type === 'msg' && got.text === t, r.slice(0, 60));
    }
    // Now ours are msg.
    for (let i = 0; i < 3; i++) {
        const t = `después de la respuesta ${i} 🎉`;
        const enc = await tool.cmd(`encrypt ${contactJid} ${textHex(t)}`);
        let got;
        try { got = await nodeDecrypt(contact, ourAddr, enc); } catch (e) { got = { err: e.message }; }
        check(`A ours→node msg #${i}`, enc.startsWith('enc msg ') && got.msg?.conversation === t, got.err || enc.slice(0, 40));
    }
    // deviceSentMessage, as for our own other devices.
    {
        const enc = await tool.cmd(`encrypt ${contactJid} ${textHex('copia 📱')} 573009876543@s.whatsapp.net`);
        let got;
        try { got = await nodeDecrypt(contact, ourAddr, enc); } catch (e) { got = { err: e.message }; }
        const dsm = got.msg?.deviceSentMessage;
        check('A deviceSentMessage decodes in Baileys: destinationJid and inner conversation',
            dsm?.destinationJid === '573009876543@s.whatsapp.net' && dsm?.message?.conversation === 'copia 📱' && !got.msg.conversation,
            got.err || JSON.stringify(got.msg));
        // and node sends one to us: unwrapped
        const { type, ciphertext } = await contact.encrypt(ourAddr, { deviceSentMessage: { destinationJid: '573005555555@s.whatsapp.net', message: { conversation: 'desde otro dispositivo' } } });
        r = await tool.cmd(`decrypt ${contactJid} ${type} ${hex(ciphertext)}`);
        const p = r.startsWith('text ') ? parseText(r) : {};
        check('A a deviceSentMessage from node is unwrapped', p.text === 'desde otro dispositivo' && p.deviceSent && p.dest === '573005555555@s.whatsapp.net', r);
    }
    r = await tool.cmd('stats');
    check('A session records come from the cache (2 store reads: the contact, the failed user)', /^stats \d+ 2 \d+$/.test(r), r);

    // Restart: a fresh process on the same SQLite file.
    await tool.cmd('close');
    await tool.stop();
    tool = startTool();
    r = await tool.cmd(`open ${dir} ${ORG}`);
    check('A reopen the same store in a new process', r.startsWith('ok '), r);
    for (let i = 0; i < 3; i++) {
        const t = `tras reiniciar ${i} ♻️`;
        const enc = await tool.cmd(`encrypt ${contactJid} ${textHex(t)}`);
        let got;
        try { got = await nodeDecrypt(contact, ourAddr, enc); } catch (e) { got = { err: e.message }; }
        check(`A after restart ours→node msg #${i}`, enc.startsWith('enc msg ') && got.msg?.conversation === t, got.err || enc.slice(0, 40));
        const back = `eco ${i} después de reiniciar`;
        const { type, ciphertext } = await contact.encrypt(ourAddr, { conversation: back });
        r = await tool.cmd(`decrypt ${contactJid} ${type} ${hex(ciphertext)}`);
        check(`A after restart node→ours #${i}`, r.startsWith('text ') && parseText(r).text === back, r.slice(0, 60));
    }

    // ============ B. node builds from OUR bundle ============
    r = await tool.cmd('bundle 3');
    const f = r.split(' ');
    check('B our bundle with one-time prekey 3', f[0] === 'bundle' && f[6] === '3', r);
    const ourBundle = { registrationId: Number(f[1]), identity: unhex(f[2]), skey: { id: Number(f[3]), value: unhex(f[4]), signature: unhex(f[5]) }, key: { id: Number(f[6]), value: unhex(f[7]) } };
    const phone = SignalDevice.create({ preKeys: 2 });
    const phoneJid = '573002222222:0@s.whatsapp.net';
    // libsignal-node's initOutgoing skips the signature check (verifySignature(..., isInit = true)): check it here.
    check('B our signed-prekey signature verifies with libsignal-node\'s curve (XEdDSA over 05 ‖ key)',
        libsignalCurve.verifySignature(Buffer.concat([Buffer.from([5]), ourBundle.identity]),
            Buffer.concat([Buffer.from([5]), ourBundle.skey.value]), ourBundle.skey.signature) === true);
    let ok = true;
    try { await phone.initSession(ourAddr, ourBundle); } catch (e) { ok = false; console.log(e); }
    check('B node builds a session from our bundle', ok);
    check('B prekey 3 in the store before', (await tool.cmd('hasprekey 3')) === '1');
    const pk1 = await phone.encrypt(ourAddr, { conversation: 'primer mensaje 📨 ñ' });
    const pk2 = await phone.encrypt(ourAddr, { conversation: 'segundo, aún pkmsg' });
    check('B node sends pkmsg', pk1.type === 'pkmsg' && pk2.type === 'pkmsg');
    r = await tool.cmd(`decrypt ${phoneJid} pkmsg ${hex(pk1.ciphertext)}`);
    let p = r.startsWith('text ') ? parseText(r) : {};
    check('B we decrypt the pkmsg, prekey 3 consumed', p.text === 'primer mensaje 📨 ñ' && p.prekeyUsed === 3, r);
    check('B prekey 3 removed from the store', (await tool.cmd('hasprekey 3')) === '0');
    check('B other prekeys kept', (await tool.cmd('hasprekey 2')) === '1');
    r = await tool.cmd(`decrypt ${phoneJid} pkmsg ${hex(pk2.ciphertext)}`);
    p = r.startsWith('text ') ? parseText(r) : {};
    check('B second pkmsg of the same session', p.text === 'segundo, aún pkmsg' && p.prekeyUsed === 0, r);
    for (let i = 0; i < 3; i++) {
        const t = `respuesta nuestra ${i} ✔️`;
        const enc = await tool.cmd(`encrypt ${phoneJid} ${textHex(t)}`);
        let got;
        try { got = await nodeDecrypt(phone, ourAddr, enc); } catch (e) { got = { err: e.message }; }
        check(`B ours→node msg #${i}`, enc.startsWith('enc msg ') && got.msg?.conversation === t, got.err || enc.slice(0, 40));
        const back = `y la de node ${i}`;
        const { type, ciphertext } = await phone.encrypt(ourAddr, { conversation: back });
        r = await tool.cmd(`decrypt ${phoneJid} ${type} ${hex(ciphertext)}`);
        check(`B node→ours ${type} #${i}`, type === 'msg' && r.startsWith('text ') && parseText(r).text === back, r.slice(0, 60));
    }

    // ============ C. tampering, replays, unknown senders, consumed prekeys ============
    {
        const m = await phone.encrypt(ourAddr, { conversation: 'auténtico' });
        const bad = Buffer.from(m.ciphertext); bad[bad.length - 1] ^= 0x01; // the MAC
        r = await tool.cmd(`decrypt ${phoneJid} ${m.type} ${hex(bad)}`);
        check('C tampered MAC → bad_mac', r.startsWith('err bad_mac'), r);
        const bad2 = Buffer.from(m.ciphertext); bad2[bad2.length - 20] ^= 0x10; // the body
        r = await tool.cmd(`decrypt ${phoneJid} ${m.type} ${hex(bad2)}`);
        check('C tampered body → bad_mac', r.startsWith('err bad_mac'), r);
        r = await tool.cmd(`decrypt ${phoneJid} ${m.type} ${hex(m.ciphertext)}`);
        check('C the original still decrypts', r.startsWith('text ') && parseText(r).text === 'auténtico', r);
        r = await tool.cmd(`decrypt ${phoneJid} ${m.type} ${hex(m.ciphertext)}`);
        check('C replayed msg → duplicate', r.startsWith('err duplicate'), r);
        r = await tool.cmd(`decrypt ${phoneJid} pkmsg ${hex(pk1.ciphertext)}`);
        check('C replayed pkmsg → duplicate', r.startsWith('err duplicate'), r);
        r = await tool.cmd(`decrypt 573004444444@s.whatsapp.net msg ${hex(m.ciphertext)}`);
        check('C msg from a device without a session → no_session', r.startsWith('err no_session'), r);
        r = await tool.cmd(`decrypt ${phoneJid} msg ${hex(Buffer.from('not a signal message'))}`);
        check('C garbage → invalid_message', r.startsWith('err invalid_message'), r);
        // A third device built from the same bundle: prekey 3 is gone.
        const late = SignalDevice.create({ preKeys: 1 });
        await late.initSession(ourAddr, ourBundle);
        const lm = await late.encrypt(ourAddr, { conversation: 'tarde' });
        r = await tool.cmd(`decrypt 573006666666@s.whatsapp.net pkmsg ${hex(lm.ciphertext)}`);
        check('C pkmsg naming a consumed prekey → invalid_prekey_id', r.startsWith('err invalid_prekey_id'), r);
        // and a bundle without a one-time prekey works
        const noOtk = SignalDevice.create({ preKeys: 1 });
        await noOtk.initSession(ourAddr, { ...ourBundle, key: undefined });
        const nm = await noOtk.encrypt(ourAddr, { conversation: 'sin prekey' });
        r = await tool.cmd(`decrypt 573007777777@s.whatsapp.net pkmsg ${hex(nm.ciphertext)}`);
        p = r.startsWith('text ') ? parseText(r) : {};
        check('C pkmsg without a one-time prekey', p.text === 'sin prekey' && p.prekeyUsed === 0, r);
    }
    check('A/B our pad lengths stay within 1..15 (seen: ' + [...padsSeen].sort((a, b) => a - b).join(',') + ')',
        [...padsSeen].every(x => x >= 1 && x <= 15) && padsSeen.size >= 3);
    await tool.cmd('close');
    await tool.stop();
} catch (e) {
    failed++;
    console.log('FAIL exception: ' + (e.stack || e));
}
finish();
