// The Node iii-sdk (tests/interop/node) as a client of the engine's state and pub/sub workers.
//
//   node node_builtins.mjs ENGINE_URL WORKER_NAME TOPIC SCOPE
//
// Subscribes `${WORKER_NAME}.sub` to TOPIC and binds `${WORKER_NAME}.state` to state changes of
// SCOPE (each delivery is printed as {"event": "message" | "state", "data": ...}); on the first
// line of stdin (sent once the engine shows both bindings) it runs the state functions on
// SCOPE (printing {"event": "result", "step": ..., "value": ...}), prints {"event": "ready"}
// and stays until stdin closes. stdout carries JSON lines only.
import { createInterface } from 'node:readline'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

console.debug = (...args) => console.error(...args)
console.log = (...args) => console.error(...args)

const here = dirname(fileURLToPath(import.meta.url))
const sdk = join(here, '..', 'interop', 'node', 'node_modules', 'iii-sdk', 'dist', 'index.mjs')
const { registerWorker } = await import(pathToFileURL(sdk).href)

const [url, workerName, topic, scope] = process.argv.slice(2)
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`)

const iii = registerWorker(url, {
  workerName,
  otel: { enabled: false },
  enableMetricsReporting: false,
  invocationTimeoutMs: 15000,
})

iii.registerFunction(`${workerName}.sub`, async (data) => {
  emit({ event: 'message', data: data ?? null })
  return {}
})
iii.registerFunction(`${workerName}.state`, async (data) => {
  emit({ event: 'state', data })
  return {}
})
iii.registerTrigger({ type: 'subscribe', function_id: `${workerName}.sub`, config: { topic } })
iii.registerTrigger({ type: 'state', function_id: `${workerName}.state`, config: { scope } })

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
await lines.next() // "go": the bindings are in place

const call = (function_id, payload) => iii.trigger({ function_id, payload })
const step = async (name, function_id, payload) => {
  emit({ event: 'result', step: name, value: (await call(function_id, payload)) ?? null })
}
try {
  await step('set', 'state::set', { scope, key: 'k', value: { count: 0, name: 'initial' } })
  await step('update', 'state::update', {
    scope,
    key: 'k',
    ops: [
      { type: 'set', path: 'count', value: 5 },
      { type: 'append', path: 'events', value: { kind: 'chunk' } },
    ],
  })
  await step('get', 'state::get', { scope, key: 'k' })
  await step('list', 'state::list', { scope })
  await step('delete', 'state::delete', { scope, key: 'k' })
  await step('missing', 'state::get', { scope, key: 'k' })
} catch (error) {
  emit({ event: 'error', message: String(error?.message ?? error) })
}
emit({ event: 'ready' })

while (!(await lines.next()).done) {
  // stay until stdin closes
}
await iii.shutdown?.()
process.exit(0)
