// A Node iii-sdk worker with channel functions, driven by tests/channels/test_channel_interop_node.py.
//
//   cd tests/interop/node && node ../../channels/node/channel_peer.mjs ENGINE_URL WORKER_NAME
//
// The SDK is loaded from the current directory's node_modules (tests/interop/node), so run it
// from there. Registers:
//   nodechan::produce({out: writer ref, size, seed}) -> writes a text message, `size` bytes
//     through the writer's Writable stream, another text message, ends the stream; returns
//     {size, sha256}
//   nodechan::consume({in: reader ref}) -> reads everything; returns {size, sha256, messages}
// Exits when stdin closes.
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { join } from 'node:path'

const require = createRequire(join(process.cwd(), 'package.json'))
const { registerWorker } = require('iii-sdk')

console.debug = (...args) => console.error(...args)
console.log = (...args) => console.error(...args)

const [url, workerName] = process.argv.slice(2)

function bytesFor(size, seed) {
  // A cheap deterministic pattern (xorshift), so Python can regenerate it if it wants to.
  const out = Buffer.alloc(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

const iii = registerWorker(url, {
  workerName,
  otel: { enabled: false },
  enableMetricsReporting: false,
  invocationTimeoutMs: 15000,
})

iii.registerFunction('nodechan::produce', async (data) => {
  const writer = data.out
  const payload = bytesFor(data.size, data.seed)
  writer.sendMessage(JSON.stringify({ phase: 'start' }))
  await new Promise((resolve, reject) => {
    writer.stream.on('error', reject)
    writer.stream.write(payload, (err) => {
      if (err) return reject(err)
      writer.sendMessage(JSON.stringify({ phase: 'end' }))
      writer.stream.end(resolve)
    })
  })
  return { size: payload.length, sha256: createHash('sha256').update(payload).digest('hex') }
})

iii.registerFunction('nodechan::consume', async (data) => {
  const reader = data.in
  const messages = []
  reader.onMessage((msg) => messages.push(msg))
  const content = await reader.readAll()
  return { size: content.length, sha256: createHash('sha256').update(content).digest('hex'), messages }
})

process.stdin.on('data', () => {})
process.stdin.on('end', () => process.exit(0))
