#!/usr/bin/env node
// Cross-check of our protobuf messages (proto/WAProto.proto -> protoc -> build/libwaproto.a) against
// Baileys' own encoder and decoder (t/wa-sim/node_modules/baileys, protobufjs), in both directions.
// Run from anywhere, after `make build/libwaproto.a` (`make prototest` does both):
//     node t/proto/crosscheck.mjs
// Builds build/proto/proto_tool with g++ and drives it over stdin/stdout (see proto_tool.cpp).
//  A. Fixed cases, written twice with the same values (CASES here, the same names in proto_tool.cpp):
//     our encoding == Baileys' encoding, byte for byte; Baileys decodes ours to the same field values;
//     we decode Baileys' bytes to the same message and re-encode them unchanged.
//  B. Messages made by Baileys' own code (registration and login ClientPayload, DeviceProps, message
//     contents, a simulator certificate chain and pair-success device identity): our decode and
//     re-encode gives back Baileys' bytes, and Baileys reads our bytes to the same values. One of them
//     carries a field the trimmed Message does not keep (a poll): it must survive as an unknown field.
// Prints "N passed, M failed" last and exits non-zero on any failure.
import { spawnSync, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const simDir = path.join(root, 't/wa-sim');
const req = createRequire(path.join(simDir, 'package.json'));
const B = await import(pathToFileURL(req.resolve('baileys')).href);
const N = await import(pathToFileURL(path.join(simDir, 'lib/noise.mjs')).href);
const { proto } = B;

let passed = 0, failed = 0;
const check = (name, ok, detail = '') => {
    if (ok) { passed++; console.log('ok   ' + name); } else { failed++; console.log('FAIL ' + name + (detail ? ': ' + detail : '')); }
};

// ---- build the C++ driver -----------------------------------------------------------------------
const lib = path.join(root, 'build/libwaproto.a');
if (!fs.existsSync(lib)) { console.log('FAIL build/libwaproto.a missing: run make prototest\n0 passed, 1 failed'); process.exit(1); }
const tool = path.join(root, 'build/proto/proto_tool');
fs.mkdirSync(path.dirname(tool), { recursive: true });
execFileSync(process.env.CXX || 'g++', ['-std=c++17', '-O1', '-Wall', '-Wextra', '-Werror', '-Ibuild/gen',
    't/proto/proto_tool.cpp', '-o', tool, lib, '-lprotobuf-lite'], { cwd: root, stdio: 'inherit', timeout: 20000 });

// ---- helpers --------------------------------------------------------------------------------------
const hex = b => Buffer.from(b).toString('hex');
const unhex = s => Buffer.from(s, 'hex');
// n deterministic bytes (proto_tool.cpp has the same function)
const pat = (n, k) => Buffer.from(Array.from({ length: n }, (_, i) => (k + i * 7) & 0xff));
const typeOf = name => name.split('.').reduce((t, n) => t[n], proto);
// field values as plain data: 64-bit integers as strings, enums by name, bytes as base64, keys sorted
const values = (T, msg) => canon(T.toObject(msg, { longs: String, enums: String, bytes: String }));
const canon = v => Array.isArray(v) ? v.map(canon)
    : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map(k => [k, canon(v[k])])) : v;
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function runTool (lines) {
    const r = spawnSync(tool, { input: lines.join('\n') + '\n', encoding: 'utf-8', maxBuffer: 1 << 26, timeout: 10000 });
    if (r.status !== 0) throw new Error('proto_tool failed: ' + (r.stderr || r.error));
    const out = r.stdout.split('\n');
    out.pop();
    if (out.length !== lines.length) throw new Error(`proto_tool answered ${out.length} of ${lines.length} lines`);
    return out;
}

// ---- A. the fixed cases (same values as proto_tool.cpp) -------------------------------------------
const userAgent = {
    platform: 'WEB', appVersion: { primary: 2, secondary: 3000, tertiary: 1029496320 }, releaseChannel: 'RELEASE',
    osVersion: '0.1', device: 'Desktop', osBuildNumber: '0.1', localeLanguageIso6391: 'en', mnc: '000', mcc: '000',
    localeCountryIso31661Alpha2: 'CO',
};
const basePayload = { connectType: 'WIFI_UNKNOWN', connectReason: 'USER_ACTIVATED', userAgent, webInfo: { webSubPlatform: 'WEB_BROWSER' } };
const deviceProps = {
    os: 'Ubuntu', platformType: 'CHROME', requireFullSync: false,
    historySyncConfig: { storageQuotaMb: 10240, inlineInitialPayloadInE2EeMsg: true, supportCallLogHistory: false,
        supportBotUserAgentChatHistory: true, supportMessageAssociation: true },
    version: { primary: 10, secondary: 15, tertiary: 7 },
};
const details = (serial, issuerSerial, k) => ({ serial, issuerSerial, key: pat(32, k), notBefore: 1764500000, notAfter: 1767100000 });
const Details = proto.CertChain.NoiseCertificate.Details;
const messageContextInfo = {
    messageSecret: pat(32, 21),
    deviceListMetadata: { senderKeyHash: pat(10, 22), senderTimestamp: 1764600000, senderKeyIndexes: [0, 2],
        recipientKeyHash: pat(10, 23), recipientTimestamp: 1764600001 },
};
const extendedText = {
    text: 'hola 👋 https://example.com',
    contextInfo: { stanzaId: '3EB0C0FFEE0123456789', participant: '573001234567@s.whatsapp.net',
        quotedMessage: { conversation: 'quoted' }, mentionedJid: ['573001234567@s.whatsapp.net', '12345678901234@lid'],
        forwardingScore: 2, isForwarded: true, expiration: 604800 },
};
const CASES = {
    registration: ['ClientPayload', { ...basePayload, passive: false, pull: false, devicePairingData: {
        buildHash: pat(16, 1), deviceProps: proto.DeviceProps.encode(proto.DeviceProps.fromObject(deviceProps)).finish(),
        eRegid: Buffer.from([0, 0, 0x30, 0x39]), eKeytype: Buffer.from([5]), eIdent: pat(32, 2),
        eSkeyId: Buffer.from([0, 0, 1]), eSkeyVal: pat(32, 3), eSkeySig: pat(64, 4) } }],
    login: ['ClientPayload', { ...basePayload, passive: true, pull: true, username: '573001234567', device: 3,
        lidDbMigrated: false, pushName: 'Gateway ✓', sessionId: -123456, shards: [1, 300, -1] }],
    'device-props': ['DeviceProps', deviceProps],
    'adv-hmac': ['ADVSignedDeviceIdentityHMAC', { details: pat(120, 5), hmac: pat(32, 6), accountType: 'E2EE' }],
    'adv-signed': ['ADVSignedDeviceIdentity', { details: pat(40, 7), accountSignatureKey: pat(32, 8),
        accountSignature: pat(64, 9), deviceSignature: pat(64, 10) }],
    'adv-identity': ['ADVDeviceIdentity', { rawId: 3141592653, timestamp: 1764600000, keyIndex: 7, accountType: 'E2EE', deviceType: 'HOSTED' }],
    'adv-key-index-list': ['ADVKeyIndexList', { rawId: 42, timestamp: 1764600000, currentIndex: 5,
        validIndexes: [0, 1, 5, 300, 4294967295], accountType: 'HOSTED' }],
    'client-hello': ['HandshakeMessage', { clientHello: { ephemeral: pat(32, 11) } }],
    'server-hello': ['HandshakeMessage', { serverHello: { ephemeral: pat(32, 12), static: pat(48, 13), payload: pat(300, 14) } }],
    'client-finish': ['HandshakeMessage', { clientFinish: { static: pat(48, 15), payload: pat(200, 16) } }],
    'cert-details': ['CertChain.NoiseCertificate.Details', details(1, 0, 17)],
    'cert-chain': ['CertChain', {
        leaf: { details: Details.encode(Details.fromObject(details(2, 1, 18))).finish(), signature: pat(64, 19) },
        intermediate: { details: Details.encode(Details.fromObject(details(1, 0, 17))).finish(), signature: pat(64, 20) } }],
    text: ['Message', { extendedTextMessage: extendedText, messageContextInfo }],
    'device-sent': ['Message', { deviceSentMessage: { destinationJid: '573009876543@s.whatsapp.net',
        message: { extendedTextMessage: extendedText }, phash: '2:qZ0p' }, messageContextInfo }],
    conversation: ['Message', { conversation: 'hi' }],
    document: ['Message', { documentMessage: { url: 'https://mmg.whatsapp.net/v/t62.7119-24/1.enc', mimetype: 'application/pdf',
        title: 'invoice', fileSha256: pat(32, 24), fileLength: '5000000000', pageCount: 3, mediaKey: pat(32, 25),
        fileName: 'invoice.pdf', fileEncSha256: pat(32, 26), directPath: '/v/t62.7119-24/1.enc', mediaKeyTimestamp: 1764600000 } }],
    image: ['Message', { imageMessage: { mimetype: 'image/jpeg', caption: 'a picture', fileSha256: pat(32, 27), fileLength: 123456,
        height: 1280, width: 960, mediaKey: pat(32, 28), jpegThumbnail: pat(200, 29), scansSidecar: pat(40, 30),
        scanLengths: [4096, 11000, 70000] } }],
    location: ['Message', { locationMessage: { degreesLatitude: 4.6097, degreesLongitude: -74.0817, name: 'Bogotá', address: 'Cra. 7 #11-10' } }],
    reaction: ['Message', { reactionMessage: { key: { remoteJid: '573001234567@s.whatsapp.net', fromMe: true, id: '3EB0C0FFEE0123456789' },
        text: '👍', senderTimestampMs: '1764600000123' } }],
    revoke: ['Message', { protocolMessage: { key: { remoteJid: '120363000000000000@g.us', fromMe: false, id: 'ABCDEF',
        participant: '573001234567@s.whatsapp.net' }, type: 'REVOKE' } }],
    'sender-key': ['Message', { conversation: 'group hello', senderKeyDistributionMessage: {
        groupId: '120363000000000000@g.us', axolotlSenderKeyDistributionMessage: pat(80, 31) } }],
};

// ---- B. messages made by Baileys' own code ---------------------------------------------------------
async function baileysMade () {
    const config = { version: B.DEFAULT_CONNECTION_CONFIG.version, browser: B.DEFAULT_CONNECTION_CONFIG.browser, countryCode: 'CO', syncFullHistory: false };
    const enc = (type, obj) => typeOf(type).encode(obj).finish();
    const reg = B.generateRegistrationNode(B.initAuthCreds(), config);
    const out = [
        ['registration ClientPayload (generateRegistrationNode)', 'ClientPayload', enc('ClientPayload', reg)],
        ['its DeviceProps', 'DeviceProps', reg.devicePairingData.deviceProps],
        ['login ClientPayload (generateLoginNode)', 'ClientPayload', enc('ClientPayload', B.generateLoginNode('573001234567:12@s.whatsapp.net', config))],
    ];
    const keys = N.genKeys();
    const chain = N.makeCertChain({ root: keys.root, intermediate: keys.intermediate, serverStatic: keys.serverStatic });
    out.push(['simulator CertChain (makeCertChain, real signatures)', 'CertChain', chain]);
    out.push(['its leaf Details', 'CertChain.NoiseCertificate.Details', proto.CertChain.decode(chain).leaf.details]);
    // pair-success device identity, built like t/wa-sim/lib/sim.mjs completePairing
    const ident = enc('ADVDeviceIdentity', { rawId: 1 + randomBytes(3).readUIntBE(0, 3), timestamp: Math.floor(Date.now() / 1000),
        keyIndex: 1, accountType: proto.ADVEncryptionType.E2EE, deviceType: proto.ADVEncryptionType.E2EE });
    const signed = enc('ADVSignedDeviceIdentity', { details: ident, accountSignatureKey: randomBytes(32), accountSignature: randomBytes(64) });
    out.push(['ADVDeviceIdentity (as the simulator builds it)', 'ADVDeviceIdentity', ident]);
    out.push(['ADVSignedDeviceIdentity', 'ADVSignedDeviceIdentity', signed]);
    out.push(['ADVSignedDeviceIdentityHMAC', 'ADVSignedDeviceIdentityHMAC', enc('ADVSignedDeviceIdentityHMAC',
        { details: signed, hmac: createHmac('sha256', randomBytes(32)).update(signed).digest(), accountType: proto.ADVEncryptionType.E2EE })]);
    const to = '573009876543@s.whatsapp.net';
    const content = async (what, c) => {
        const m = B.generateWAMessageFromContent(to, await B.generateWAMessageContent(c, {}), { userJid: '573001234567:3@s.whatsapp.net' });
        out.push([what, 'Message', enc('Message', m.message)]);
    };
    await content('text with a mention (generateWAMessageContent)', { text: 'hi @573001234567', mentions: ['573001234567@s.whatsapp.net'] });
    await content('reaction', { react: { text: '❤️', key: { remoteJid: to, fromMe: true, id: '3EB0AA' } } });
    await content('delete for everyone (protocolMessage REVOKE)', { delete: { remoteJid: to, fromMe: true, id: '3EB0AA' } });
    await content('location', { location: { degreesLatitude: 4.6097, degreesLongitude: -74.0817 } });
    await content('contact card', { contacts: { displayName: 'Ana', contacts: [{ vcard: 'BEGIN:VCARD\nVERSION:3.0\nFN:Ana\nEND:VCARD' }] } });
    await content('poll: a field the trimmed Message does not keep, carried as unknown', { poll: { name: 'q?', values: ['a', 'b'], selectableCount: 1 } });
    const dsm = enc('Message', { deviceSentMessage: { destinationJid: to, message: { conversation: 'sent from my phone' } },
        messageContextInfo: { messageSecret: randomBytes(32) } });
    out.push(['deviceSentMessage', 'Message', dsm]);
    return out;
}

try {
    const names = Object.keys(CASES);
    const made = await baileysMade();
    const baileysBytes = Object.fromEntries(names.map(n => {
        const T = typeOf(CASES[n][0]);
        return [n, T.encode(T.fromObject(CASES[n][1])).finish()];
    }));
    const lines = ['cases', ...names.map(n => `enc ${n}`), ...names.map(n => `dec ${n} ${hex(baileysBytes[n])}`),
        ...made.map(([, type, bytes]) => `rt ${type} ${hex(bytes)}`)];
    const ans = runTool(lines);
    const toolCases = ans[0].split(' ').sort();
    check(`the tool and this script list the same ${names.length} cases`, same(toolCases, [...names].sort()), ans[0]);

    for (const [i, n] of names.entries()) {
        const [type, obj] = CASES[n];
        const T = typeOf(type);
        const ours = ans[1 + i], theirs = hex(baileysBytes[n]);
        check(`A ${n}: our encoding == Baileys' (${theirs.length / 2} bytes)`, ours === theirs, `\n  ours    ${ours}\n  Baileys ${theirs}`);
        let decoded;
        try { decoded = T.decode(unhex(ours)); } catch (e) { decoded = e; }
        const want = values(T, T.fromObject(obj));
        check(`A ${n}: Baileys decodes ours to the same ${type} field values`, !(decoded instanceof Error) && same(values(T, decoded), want),
            decoded instanceof Error ? decoded.message : `\n  got  ${JSON.stringify(values(T, decoded))}\n  want ${JSON.stringify(want)}`);
        const [re, sameMsg] = ans[1 + names.length + i].split(' ');
        check(`A ${n}: we decode Baileys' bytes to the same message and re-encode them unchanged`, re === theirs && sameMsg === '1',
            ans[1 + names.length + i]);
    }

    for (const [j, [what, type, bytes]] of made.entries()) {
        const re = ans[1 + 2 * names.length + j];
        check(`B ${what}: decode + re-encode == Baileys' bytes (${bytes.length})`, re === hex(bytes), `\n  ours    ${re}\n  Baileys ${hex(bytes)}`);
        const T = typeOf(type);
        let back;
        try { back = T.decode(unhex(re)); } catch (e) { back = e; }
        check(`B ${what}: Baileys reads our bytes to the same values`, !(back instanceof Error) && same(values(T, back), values(T, T.decode(bytes))));
    }
    const poll = made.find(m => m[0].startsWith('poll'));
    check('B the poll really is a field proto/WAProto.proto drops (pollCreationMessageV3 = 64)',
        !!proto.Message.decode(poll[2]).pollCreationMessageV3 && !fs.readFileSync(path.join(root, 'proto/WAProto.proto'), 'utf-8').includes('pollCreationMessageV3'));
} catch (e) {
    failed++;
    console.log('FAIL exception: ' + (e?.stack || e));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
