#!/usr/bin/env node
// Measure the simulator's own CPU per client message, with every message decrypted and in bench mode.
// A raw client (lib/testkit.mjs) sends N texts (LID-addressed, whatsmeow style) to a contact with D devices,
// plus the deviceSentMessage copy to the own phone; the simulator's CPU time is read from /proc/PID/stat.
//   node bin/measure-bench.mjs [N=1000] [D=2] [SAMPLES=1,50]
import { readFileSync } from 'node:fs'
import { startSim, rawDevice, rawUploadPreKeys, rawSessions, rawTextMessage, waitFor } from '../lib/testkit.mjs'

const N = Number(process.argv[2] || 1000)
const D = Number(process.argv[3] || 2)
const SAMPLES = (process.argv[4] || '1,50').split(',').map(Number)
const HZ = 100 // USER_HZ on Linux
const cpuMs = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 1000 / HZ }

for (const sample of SAMPLES) {
  const sim = await startSim(['--bench-sample', String(sample), '--no-read-receipts'])
  try {
    const phone = '573009990001'
    const c = (await sim.ctl('POST', '/contacts', { phone: '573009990002', devices: D })).body
    const lid = c.lid.split(':')[0].split('@')[0]
    const raw = await rawDevice(sim, { phone })
    const rc = await raw.connect()
    await rawUploadPreKeys(rc)
    const devices = [...Array(D).keys()].map(d => d ? `${lid}:${d}@lid` : `${lid}@lid`).concat(`${raw.lid}@lid`)
    await rawSessions(rc, devices)
    // build every stanza first: only the simulator's work is timed
    const msgs = []
    for (let i = 0; i < N; i++) msgs.push(await rawTextMessage(rc, { to: `${lid}@lid`, devices, text: `bench ${i}`, peerRecipientPn: '573009990002@s.whatsapp.net', chat: `${lid}@lid` }))
    const s0 = (await sim.ctl('GET', '/stats')).body
    const cpu0 = cpuMs(sim.proc.pid)
    const t0 = Date.now()
    for (const m of msgs) rc.send(m)
    await waitFor(() => rc.nodes.filter(n => n.tag === 'ack').length >= N, { timeoutMs: 600000, intervalMs: 20, what: 'acks' })
    const wall = Date.now() - t0
    const cpu = cpuMs(sim.proc.pid) - cpu0
    const s = (await sim.ctl('GET', '/stats')).body
    console.log(JSON.stringify({
      bench_sample: sample,
      contact_devices: D,
      messages: N,
      sim_cpu_ms_per_message: +(cpu / N).toFixed(3),
      wall_ms_to_last_ack: wall,
      messages_per_s: Math.round(N * 1000 / wall),
      bench_sampled: s.bench_sampled - s0.bench_sampled,
      bench_skipped: s.bench_skipped - s0.bench_skipped,
      decrypt_failures: s.decrypt_failures - s0.decrypt_failures
    }))
    rc.close()
  } finally {
    await sim.stop()
  }
}
process.exit(0)
