#!/usr/bin/env node
// Cross-check of our media crypto (src/core/media, streamed through t/media/media_tool.cpp) against Baileys',
// both directions (make mediatest):
//  A. We encrypt (document and image keys, sizes around the block size and 2 MB) → Baileys'
//     downloadContentFromMessage fetches the body from a local HTTP server and decrypts it to the same bytes;
//     the MAC and fileEncSha256 are checked with Baileys' getMediaKeys and node's crypto.
//  B. Baileys' encryptedStream → we decrypt to the same bytes and the same fileSha256, checking the MAC and
//     Baileys' fileEncSha256; a flipped byte, a cut body and the wrong media type are refused.
// Prints "N passed, M failed" last and exits non-zero on any failure.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import http from 'node:http';
import crypto from 'node:crypto';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const simDir = path.join(root, 't/wa-sim');
const req = createRequire(path.join(simDir, 'package.json'));
const B = await import(pathToFileURL(req.resolve('baileys')).href);
const { downloadContentFromMessage, encryptedStream, getMediaKeys } = B;

let passed = 0, failed = 0;
const check = (name, ok, detail = '') => {
    if (ok) { passed++; console.log('ok   ' + name); } else { failed++; console.log('FAIL ' + name + (detail ? ': ' + detail : '')); }
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-media-'));
let server;
const finish = (code) => {
    try { fs.rmSync(tmp, { recursive: true, force: true }); } catch { }
    server?.close();
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(code ?? (failed ? 1 : 0));
};
const watchdog = setTimeout(() => { failed++; console.log('FAIL watchdog: crosscheck took more than 60 s'); finish(1); }, 60000);
watchdog.unref();

// ---- build the tool from the core object (make knows when it is stale) -----------------------------------------
execFileSync('make', ['-s', '--no-print-directory', 'build/libwaproto.a', 'build/core/media/crypto.o', 'build/core/noise.o', 'build/core/pbcheck.o'],
    { cwd: root, stdio: 'inherit', timeout: 600000 });
const toolPath = path.join(root, 'build/media/media_tool');
fs.mkdirSync(path.dirname(toolPath), { recursive: true });
const inputs = ['t/media/media_tool.cpp', 'build/core/media/crypto.o', 'build/core/noise.o', 'build/core/pbcheck.o'].map(f => path.join(root, f));
const mtime = f => fs.statSync(f).mtimeMs;
if (!fs.existsSync(toolPath) || inputs.some(f => mtime(f) > mtime(toolPath))) {
    execFileSync(process.env.CXX || 'g++', ['-std=c++17', '-O2', '-Wall', '-Wextra', '-Werror', '-Iinclude', '-Isrc',
        't/media/media_tool.cpp', 'build/core/media/crypto.o', 'build/core/noise.o', 'build/core/pbcheck.o', '-o', toolPath, 'build/libwaproto.a',
        '-lprotobuf-lite', '-lssl', '-lcrypto'],
    { cwd: root, stdio: 'inherit', timeout: 120000 });
}
const tool = (...args) => {
    try { return execFileSync(toolPath, args, { encoding: 'utf8' }).trim(); } catch (e) { return (e.stdout || '').trim() || 'exit ' + e.status; }
};
const sha256 = b => crypto.createHash('sha256').update(b).digest('hex');

// A local HTTP server that serves the files in tmp (Baileys' download fetches a URL).
server = http.createServer((rq, rs) => {
    const f = path.join(tmp, path.basename(rq.url.split('?')[0]));
    if (!fs.existsSync(f)) { rs.writeHead(404); return rs.end(); }
    rs.writeHead(200, { 'content-type': 'application/octet-stream' });
    fs.createReadStream(f).pipe(rs);
});
await new Promise(res => server.listen(0, '127.0.0.1', res));
const base = `http://127.0.0.1:${server.address().port}/`;
const collect = async (stream) => { const parts = []; for await (const c of stream) parts.push(c); return Buffer.concat(parts); };

const sizes = [0, 1, 15, 16, 17, 65535, 65536, 65537, 2 * 1024 * 1024 + 3];
// ---- A: ours → Baileys -------------------------------------------------------------------------------------------
for (const type of ['document', 'image']) {
    for (const size of sizes) {
        const name = `A ${type} ${size} bytes`;
        const plain = crypto.randomBytes(size);
        const mediaKey = crypto.randomBytes(32);
        const pf = path.join(tmp, `a-${type}-${size}.plain`), ef = path.join(tmp, `a-${type}-${size}.enc`);
        fs.writeFileSync(pf, plain);
        const line = tool('enc', type, mediaKey.toString('hex'), pf, ef).split(' ');
        if (line[0] !== 'ok') { check(name, false, line.join(' ')); continue; }
        const body = fs.readFileSync(ef);
        const { iv, macKey } = await getMediaKeys(mediaKey, type);
        const mac = crypto.createHmac('sha256', macKey).update(iv).update(body.subarray(0, body.length - 10)).digest().subarray(0, 10);
        const got = await collect(await downloadContentFromMessage({ mediaKey, directPath: null, url: base + path.basename(ef) }, type));
        check(name, got.equals(plain) && line[1] === sha256(plain) && line[2] === sha256(body) && Number(line[3]) === size &&
            mac.equals(body.subarray(body.length - 10)) && body.length === (Math.floor(size / 16) + 1) * 16 + 10,
        `baileys got ${got.length} bytes, line ${line.join(' ')}`);
    }
}

// ---- B: Baileys → ours -------------------------------------------------------------------------------------------
for (const type of ['document', 'image']) {
    for (const size of sizes) {
        const name = `B ${type} ${size} bytes`;
        const plain = crypto.randomBytes(size);
        const r = await encryptedStream(plain, type);
        const out = path.join(tmp, `b-${type}-${size}.plain`);
        const line = tool('dec', type, r.mediaKey.toString('hex'), r.encFilePath, out, r.fileEncSha256.toString('hex')).split(' ');
        const got = fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0);
        check(name, line[0] === 'ok' && line[1] === r.fileSha256.toString('hex') && Number(line[2]) === size && got.equals(plain),
            line.join(' '));
        if (size === 65537 && type === 'document') {
            const enc = fs.readFileSync(r.encFilePath);
            const bad = Buffer.from(enc); bad[1000] ^= 0x40;
            const bf = path.join(tmp, 'bad.enc'); fs.writeFileSync(bf, bad);
            check('B flipped byte → bad_mac', tool('dec', type, r.mediaKey.toString('hex'), bf, out) === 'error bad_mac');
            fs.writeFileSync(bf, enc.subarray(0, enc.length - 16));
            check('B body cut by a block → bad_mac', tool('dec', type, r.mediaKey.toString('hex'), bf, out) === 'error bad_mac');
            fs.writeFileSync(bf, enc.subarray(0, enc.length - 3));
            check('B body cut mid-block → too_short', tool('dec', type, r.mediaKey.toString('hex'), bf, out) === 'error too_short');
            check('B image keys on a document → bad_mac', tool('dec', 'image', r.mediaKey.toString('hex'), r.encFilePath, out) === 'error bad_mac');
            check('B wrong fileEncSha256 → bad_enc_sha256',
                tool('dec', type, r.mediaKey.toString('hex'), r.encFilePath, out, sha256(plain)) === 'error bad_enc_sha256');
        }
        fs.rmSync(r.encFilePath, { force: true });
    }
}
finish();
