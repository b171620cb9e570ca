#!/usr/bin/env node
// Cross-check of our Noise client (src/core/link/noise.cpp) against Baileys' initiator and the simulator's
// responder (t/wa-sim), byte for byte. Run from anywhere:   node t/noise/crosscheck.mjs
// Builds build/noise/noise_tool with g++ and drives it over stdin/stdout (hex lines).
//  A. Deterministic: with the same fixed client ephemeral + noise key and the same server hello,
//     our ClientHello and ClientFinish frames equal Baileys' makeNoiseHandler output; the simulator's
//     NoiseResponder accepts our ClientFinish; transport frames equal Baileys' in both directions.
//     The certificate chain's XEdDSA signatures are verified in C++ by wa::xeddsa_verify (libsignal-protocol-c),
//     and each verdict is cross-checked here with libsignal's JS curve.
//  B. Live: a handshake with the simulator over WebSocket (wa-sim spawned on port 0), registration
//     ClientPayload from Baileys' generateRegistrationNode, then the first encrypted node must be
//     <iq><pair-device> with 6 refs (decoded by Baileys' decodeBinaryNode); a ping iq gets its answer.
//  C. Rejections: wrong root, a flipped bit in either chain signature (rejected by wa::xeddsa_verify), tampered
//     server hello, expired certificates.
// Prints "N passed, M failed" last and exits non-zero on any failure; never runs more than ~25 s.
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createHash, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import readline from 'node:readline';
import path from 'node:path';
import fs from 'node:fs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const simDir = path.join(root, 't/wa-sim');
const req = createRequire(path.join(simDir, 'package.json'));
const B = await import(pathToFileURL(req.resolve('baileys')).href); // same instance as wa-sim's lib
const libsignalCurve = req('libsignal/src/curve.js');
const WebSocket = req('ws');
const N = await import(pathToFileURL(path.join(simDir, 'lib/noise.mjs')).href);
const { startSim } = await import(pathToFileURL(path.join(simDir, 'lib/testkit.mjs')).href);

let passed = 0, failed = 0;
const check = (name, ok, detail = '') => {
    if (ok) { passed++; console.log('ok   ' + name); } else { failed++; console.log('FAIL ' + name + (detail ? ': ' + detail : '')); }
};
const finish = (code) => { console.log(`${passed} passed, ${failed} failed`); process.exit(code ?? (failed ? 1 : 0)); };
const watchdog = setTimeout(() => { failed++; console.log('FAIL watchdog: crosscheck took more than 28 s'); cleanup(); finish(1); }, 28000);
watchdog.unref();
const cleanups = [];
const cleanup = () => { for (const f of cleanups.splice(0)) { try { f(); } catch { } } };

// ---- build the C++ driver -----------------------------------------------------------------------
const toolPath = path.join(root, 'build/noise/noise_tool');
fs.mkdirSync(path.dirname(toolPath), { recursive: true });
execFileSync(process.env.CXX || 'g++', ['-std=c++17', '-O2', '-Wall', '-Wextra', '-Werror', '-Iinclude',
    '-Ibuild/gen', 't/noise/noise_tool.cpp', 'src/core/link/noise.cpp', 'src/core/codec/pbcheck.cpp', 'src/core/crypto/xeddsa.cpp', '-o', toolPath,
    'build/libwaproto.a', '-lprotobuf-lite', '-lsignal-protocol-c', '-lssl', '-lcrypto'],
    { cwd: root, stdio: 'inherit', timeout: 20000 });

const hex = b => Buffer.from(b).toString('hex');
const unhex = s => Buffer.from(s, 'hex');
const withTimeout = (p, ms, what) => {
    let t;
    return Promise.race([p.finally(() => clearTimeout(t)),
        new Promise((_, rej) => { t = setTimeout(() => rej(new Error('timeout: ' + what)), ms); })]);
};

// Real XEdDSA verification (libsignal's curve; Baileys rc14's own Curve.verify accepts anything,
// see t/wa-sim/NOTES.md §1).
const xeddsaVerify = (pub, msg, sig) => {
    try { return libsignalCurve.verifySignature(Buffer.concat([Buffer.from([5]), pub]), msg, sig) === true; } catch { return false; }
};
B.Curve.verify = xeddsaVerify; // Baileys' noise handler reads Curve.verify from this object

/** The C++ tool: one process, line protocol (see noise_tool.cpp). */
function startTool () {
    const proc = spawn(toolPath, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    cleanups.push(() => proc.kill('SIGKILL'));
    const rl = readline.createInterface({ input: proc.stdout });
    const lines = []; let waiter = null;
    rl.on('line', l => { lines.push(l); if (waiter) { const w = waiter; waiter = null; w(); } });
    const nextLine = () => withTimeout(lines.length ? Promise.resolve(lines.shift())
        : new Promise(res => { waiter = () => res(lines.shift()); }), 5000, 'noise_tool answer');
    const tool = {
        // Each XEdDSA check the C++ side made: its verdict (ok, from wa::xeddsa_verify) and libsignal's JS one.
        verified: [],
        async cmd (line) {
            proc.stdin.write(line + '\n');
            for (;;) {
                const l = await nextLine();
                if (!l.startsWith('verified ')) return l;
                const [, pub, msg, sig, verdict] = l.split(' ');
                tool.verified.push({ pub, msg, sig, ok: verdict === '1', js: xeddsaVerify(unhex(pub), unhex(msg), unhex(sig)) });
            }
        },
        close () { proc.stdin.end(); }
    };
    return tool;
}

const keyFromSeed = (seed) => {
    const priv = createHash('sha256').update(seed).digest();
    const k = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), priv]), format: 'der', type: 'pkcs8' });
    return { private: priv, public: createPublicKey(k).export({ format: 'der', type: 'spki' }).subarray(12) };
};
const frameBody = (f, intro) => {
    const b = Buffer.from(f).subarray(intro ? 4 : 0);
    if (b.readUIntBE(0, 3) !== b.length - 3) throw new Error('bad frame length');
    return b.subarray(3);
};
const silentLogger = { level: 'silent', child () { return this; }, trace () {}, debug () {}, info () {}, warn () {}, error () {} };
const config = { version: B.DEFAULT_CONNECTION_CONFIG.version, browser: B.DEFAULT_CONNECTION_CONFIG.browser, countryCode: 'US', syncFullHistory: false };
const nowS = () => Math.floor(Date.now() / 1000);

try {
    // ============ A. deterministic byte check against Baileys' initiator ============================
    {
        const eph = keyFromSeed('client ephemeral'), noiseKey = keyFromSeed('client noise key');
        const serverKeys = N.genKeys();
        const certChain = N.makeCertChain({ root: serverKeys.root, intermediate: serverKeys.intermediate, serverStatic: serverKeys.serverStatic });
        B.WA_CERT_DETAILS.PUBLIC_KEY = serverKeys.root.public;
        const bn = B.makeNoiseHandler({ keyPair: eph, NOISE_HEADER: B.NOISE_WA_HEADER, logger: silentLogger });
        const tool = startTool();
        check('A init', (await tool.cmd(`init ${hex(noiseKey.private)} ${hex(eph.private)} ${hex(serverKeys.root.public)} ${nowS()}`)) === 'ok');
        const keys = (await tool.cmd('keys')).split(' ');
        check('A public keys derived like Node/Baileys', keys[1] === hex(eph.public) && keys[2] === hex(noiseKey.public));

        const ours = (await tool.cmd('hello')).replace(/^out /, '');
        const theirs = bn.encodeFrame(B.proto.HandshakeMessage.encode({ clientHello: { ephemeral: eph.public } }).finish());
        check('A ClientHello frame == Baileys (43 bytes, intro + 00 00 24 12 22 0a 20 ...)', ours === hex(theirs) && ours.startsWith('5741060300002412220a20') && ours.length === 86, `${ours} vs ${hex(theirs)}`);

        const resp = new N.NoiseResponder({ serverStatic: serverKeys.serverStatic, certChain });
        resp.e = keyFromSeed('server ephemeral');
        const serverHello = resp.onClientHello(frameBody(unhex(ours), true));
        const sh = await tool.cmd('server ' + hex(serverHello));
        check('A server hello accepted, server static decrypted', sh === 'ok ' + hex(serverKeys.serverStatic.public), sh);
        const chain = B.proto.CertChain.decode(certChain);
        const v = tool.verified;
        check('A two XEdDSA checks (root->intermediate, intermediate->leaf), both passed by wa::xeddsa_verify in C++ and by libsignal JS',
            v.length === 2 && v.every(x => x.ok && x.js) &&
            v[0].pub === hex(serverKeys.root.public) && v[0].msg === hex(chain.intermediate.details) && v[0].sig === hex(chain.intermediate.signature) &&
            v[1].pub === hex(serverKeys.intermediate.public) && v[1].msg === hex(chain.leaf.details) && v[1].sig === hex(chain.leaf.signature), JSON.stringify(v));
        const flipped = Buffer.from(chain.leaf.signature); flipped[10] ^= 1;
        check('A the script\'s XEdDSA check is real (flipped signature bit rejected)', !xeddsaVerify(serverKeys.intermediate.public, chain.leaf.details, flipped));

        // Baileys on the same server hello
        const payload = B.proto.ClientPayload.encode(B.generateRegistrationNode(B.initAuthCreds(), config)).finish();
        let keyEnc;
        try { keyEnc = bn.processHandshake(B.proto.HandshakeMessage.decode(serverHello), noiseKey); } catch (e) { check('A Baileys processHandshake', false, e.message); }
        const bFinish = bn.encodeFrame(B.proto.HandshakeMessage.encode({ clientFinish: { static: keyEnc, payload: bn.encrypt(payload) } }).finish());
        const oFinish = (await tool.cmd('finish ' + hex(payload))).replace(/^out /, '');
        check('A ClientFinish frame == Baileys, byte for byte', oFinish === hex(bFinish), `${oFinish.slice(0, 80)}... vs ${hex(bFinish).slice(0, 80)}...`);
        let got;
        try { got = resp.onClientFinish(frameBody(unhex(oFinish), false)); } catch (e) { got = e; }
        check('A simulator responder decrypts our ClientFinish (static at counter 1, payload at 0)',
            Buffer.isBuffer(got) && got.equals(Buffer.from(payload)) && resp.clientStatic.equals(noiseKey.public), String(got));

        // transport
        await bn.finishInit();
        check('A split', (await tool.cmd('split')) === 'ok');
        let same = true, srvOk = true;
        for (let i = 0; i < 3; i++) {
            const msg = B.encodeBinaryNode({ tag: 'iq', attrs: { id: 'c' + i, type: 'get', xmlns: 'w:p', to: '@s.whatsapp.net' }, content: [{ tag: 'ping', attrs: {} }] });
            const o = (await tool.cmd('send ' + hex(msg))).replace(/^out /, '');
            same &&= o === hex(bn.encodeFrame(msg));
            try { srvOk &&= Buffer.from(resp.transport.decrypt(frameBody(unhex(o), false))).equals(Buffer.from(msg)); } catch { srvOk = false; }
        }
        check('A client->server transport frames == Baileys (counters 0..2, first split half)', same);
        check('A simulator transport decrypts our frames', srvOk);
        // server -> client: 3 frames, delivered in odd-sized pieces
        const nodes = [0, 1, 2].map(i => ({ tag: 'iq', attrs: { id: 's' + i, type: 'result', from: '@s.whatsapp.net' } }));
        const stream = Buffer.concat(nodes.map(n => N.encodeFrame(Buffer.from(resp.transport.encrypt(B.encodeBinaryNode(n))))));
        const pieces = [stream.subarray(0, 2), stream.subarray(2, 30), stream.subarray(30, 31), stream.subarray(31)];
        const plain = [];
        let recvErr = '';
        for (const p of pieces) {
            const r = await tool.cmd('recv ' + hex(p));
            if (!r.startsWith('frames ')) { recvErr = r; break; }
            if (r !== 'frames -') plain.push(...r.slice(7).split(','));
        }
        const bFrames = [];
        await bn.decodeFrame(stream, f => bFrames.push(f));
        const decoded = await Promise.all(plain.map(p => B.decodeBinaryNode(unhex(p))));
        check('A server->client frames reassembled and decrypted (second split half), same as Baileys',
            !recvErr && decoded.length === 3 && decoded.every((d, i) => d.tag === 'iq' && d.attrs.id === 's' + i) &&
            JSON.stringify(decoded) === JSON.stringify(bFrames), recvErr || JSON.stringify(decoded));
        const bad = Buffer.from(N.encodeFrame(Buffer.from(resp.transport.encrypt(Buffer.from([0, 1, 2]))))); bad[4] ^= 1;
        check('A tampered transport frame rejected', (await tool.cmd('recv ' + hex(bad))).startsWith('err frame decryption failed'));

        // C. rejections, same server keys
        const reject = async (name, { rootPub = serverKeys.root.public, now = nowS(), tamper = null, chain = certChain, expect }) => {
            const r2 = new N.NoiseResponder({ serverStatic: serverKeys.serverStatic, certChain: chain });
            tool.verified.length = 0;
            await tool.cmd(`init ${hex(noiseKey.private)} - ${hex(rootPub)} ${now}`);
            const h = (await tool.cmd('hello')).replace(/^out /, '');
            const s = Buffer.from(r2.onClientHello(frameBody(unhex(h), true)));
            if (tamper !== null) s[tamper < 0 ? s.length + tamper : tamper] ^= 1;
            const ans = await tool.cmd('server ' + hex(s));
            check('C ' + name, ans === 'err ' + expect, ans);
            return tool.verified.slice();
        };
        // A chain with one signature bit flipped: only the C++ verdict decides, and it must be "invalid".
        const flippedChain = (part) => {
            const c = B.proto.CertChain.decode(certChain);
            c[part].signature = Buffer.from(c[part].signature);
            c[part].signature[10] ^= 1;
            return B.proto.CertChain.encode(c).finish();
        };
        for (const part of ['intermediate', 'leaf']) {
            const v2 = await reject(`flipped bit in the ${part} signature -> rejected by wa::xeddsa_verify (C++)`,
                { chain: flippedChain(part), expect: `${part} certificate signature invalid` });
            const last = v2[v2.length - 1];
            check(`C ${part}: the C++ verdict was "invalid", and libsignal JS agrees`, !!last && !last.ok && !last.js &&
                (part === 'leaf' ? v2.length === 2 && v2[0].ok : v2.length === 1), JSON.stringify(v2));
        }
        await reject('root key not the simulator\'s -> intermediate signature invalid (real XEdDSA)',
            { rootPub: keyFromSeed('other root').public, expect: 'intermediate certificate signature invalid' });
        await reject('WhatsApp\'s real root key rejects the test chain',
            { rootPub: Buffer.from('142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b', 'hex'), expect: 'intermediate certificate signature invalid' });
        await reject('clock after notAfter', { now: nowS() + 40 * 86400, expect: 'intermediate certificate not valid now' });
        await reject('clock before notBefore', { now: nowS() - 7200, expect: 'intermediate certificate not valid now' });
        await reject('tampered encrypted static', { tamper: 40, expect: 'cannot decrypt server static' });
        await reject('tampered encrypted certificate', { tamper: -5, expect: 'cannot decrypt certificate chain' });
        tool.close();
    }

    // ============ B. live handshake with the simulator over WebSocket ==============================
    {
        const sim = await startSim([], { timeoutMs: 10000 });
        cleanups.push(() => sim.proc.kill('SIGKILL'));
        const ws = new WebSocket(sim.info.ws_url, { origin: 'https://web.whatsapp.com' });
        cleanups.push(() => ws.terminate());
        const msgs = []; let waiter = null;
        ws.on('message', d => { msgs.push(Buffer.from(d)); if (waiter) { const w = waiter; waiter = null; w(); } });
        const closed = new Promise(res => ws.once('close', res));
        const next = () => withTimeout(msgs.length ? Promise.resolve(msgs.shift())
            : Promise.race([new Promise(res => { waiter = () => res(msgs.shift()); }), closed.then(() => { throw new Error('ws closed'); })]), 8000, 'simulator message');
        await withTimeout(new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); }), 5000, 'ws open');

        const creds = B.initAuthCreds();
        const tool = startTool();
        const rootKey = Buffer.from(sim.info.root_key, 'base64');
        await tool.cmd(`init ${hex(creds.noiseKey.private)} - ${hex(rootKey)} ${nowS()}`);
        ws.send(unhex((await tool.cmd('hello')).replace(/^out /, '')));
        const shFrame = await next();
        const sh = await tool.cmd('server ' + hex(frameBody(shFrame, false)));
        check('B simulator server hello + certificate chain accepted (2 XEdDSA checks by wa::xeddsa_verify against the printed root, libsignal JS agrees)',
            sh.startsWith('ok ') && tool.verified.length === 2 && tool.verified.every(x => x.ok && x.js) && tool.verified[0].pub === hex(rootKey), sh);
        const payload = B.proto.ClientPayload.encode(B.generateRegistrationNode(creds, config)).finish();
        ws.send(unhex((await tool.cmd('finish ' + hex(payload))).replace(/^out /, '')));
        check('B split', (await tool.cmd('split')) === 'ok');
        const nodes = [];
        const readNode = async () => {
            while (!nodes.length) {
                const r = await tool.cmd('recv ' + hex(await next()));
                if (!r.startsWith('frames ')) throw new Error(r);
                if (r !== 'frames -') for (const p of r.slice(7).split(',')) nodes.push(await B.decodeBinaryNode(unhex(p)));
            }
            return nodes.shift();
        };
        const first = await readNode();
        const pd = B.getBinaryNodeChild(first, 'pair-device');
        const refs = pd ? B.getBinaryNodeChildren(pd, 'ref') : [];
        check('B first encrypted node is <iq><pair-device> with 6 refs', first.tag === 'iq' && !!pd && refs.length === 6,
            JSON.stringify({ tag: first.tag, attrs: first.attrs, children: Array.isArray(first.content) ? first.content.map(c => c.tag) : null }));
        // answer it like Baileys does, then ping: the simulator must decrypt our frames (counters 0, 1)
        const ack = B.encodeBinaryNode({ tag: 'iq', attrs: { to: '@s.whatsapp.net', type: 'result', id: first.attrs.id } });
        ws.send(unhex((await tool.cmd('send ' + hex(ack))).replace(/^out /, '')));
        const ping = B.encodeBinaryNode({ tag: 'iq', attrs: { id: 'noise-xcheck-1', to: '@s.whatsapp.net', type: 'get', xmlns: 'w:p' }, content: [{ tag: 'ping', attrs: {} }] });
        ws.send(unhex((await tool.cmd('send ' + hex(ping))).replace(/^out /, '')));
        let pong = null;
        for (let i = 0; i < 10 && !pong; i++) { const n = await readNode(); if (n.attrs?.id === 'noise-xcheck-1') pong = n; }
        check('B ping iq answered by the simulator (our client->server transport)', pong?.tag === 'iq' && pong.attrs.type === 'result', JSON.stringify(pong?.attrs));
        tool.close();
        ws.close();
        await withTimeout(sim.stop(), 8000, 'simulator stop');
    }
} catch (e) {
    failed++;
    console.log('FAIL exception: ' + (e?.stack || e));
}
cleanup();
finish();
