// A Node iii-sdk worker driven by the Python interop tests.
//
//   node worker.mjs ENGINE_URL WORKER_NAME PREFIX
//
// Registers PREFIX::echo (returns {echoed: input, runtime: "node"}), PREFIX::fail (throws),
// PREFIX::record (void target: prints the input as an event), PREFIX::forward (calls
// data.target with data.payload and returns {forwarded: result}) and PREFIX::hang (never
// answers, prints an event when called). Reads one JSON command a line on stdin:
//
//   {"id": 1, "op": "call", "function_id": "...", "payload": ..., "void": false, "timeout_ms": 5000}
//
// ("payload" absent means undefined, i.e. no `data` on the wire) and answers on stdout with one
// JSON line: {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "code": ...,
// "message": ..., "stacktrace": ...}. Events are {"event": "...", ...}. Exits when stdin closes.
import { createInterface } from 'node:readline'
import { TriggerAction, registerWorker } from 'iii-sdk'

// stdout carries JSON lines only: the SDK's debug chatter goes to stderr.
console.debug = (...args) => console.error(...args)
console.log = (...args) => console.error(...args)

const [url, workerName, prefix] = process.argv.slice(2)
if (!url || !workerName || !prefix) {
  console.error('usage: node worker.mjs ENGINE_URL WORKER_NAME PREFIX')
  process.exit(2)
}

const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`)

const iii = registerWorker(url, {
  workerName,
  otel: { enabled: false },
  enableMetricsReporting: false,
  invocationTimeoutMs: 15000,
  reconnectionConfig: { initialDelayMs: 100, maxDelayMs: 1000 },
})

iii.registerFunction(`${prefix}::echo`, async (data) => ({ echoed: data ?? null, runtime: 'node' }), {
  description: 'Echo the input back',
})
iii.registerFunction(`${prefix}::fail`, async (data) => {
  throw new Error(`node handler refused: ${data?.reason}`)
})
iii.registerFunction(`${prefix}::record`, async (data) => {
  emit({ event: 'recorded', data: data ?? null })
  return null
})
iii.registerFunction(`${prefix}::forward`, async (data) => ({
  forwarded: await iii.trigger({ function_id: data.target, payload: data.payload }),
}))
iii.registerFunction(`${prefix}::hang`, async (data) => {
  emit({ event: 'hanging', data: data ?? null })
  return new Promise(() => {})
})

async function call(cmd) {
  const request = { function_id: cmd.function_id, payload: cmd.payload }
  if (cmd.void) request.action = TriggerAction.Void()
  if (cmd.timeout_ms) request.timeoutMs = cmd.timeout_ms
  try {
    const result = await iii.trigger(request)
    emit({ id: cmd.id, ok: true, result: result ?? null })
  } catch (err) {
    emit({
      id: cmd.id,
      ok: false,
      code: err?.code ?? null,
      message: err?.message ?? String(err),
      stacktrace: err?.stacktrace ?? null,
    })
  }
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  if (!line.trim()) return
  const cmd = JSON.parse(line)
  if (cmd.op === 'call') call(cmd)
  else emit({ id: cmd.id, ok: false, code: 'BAD_COMMAND', message: `unknown op ${cmd.op}` })
})
lines.on('close', async () => {
  await iii.shutdown()
  process.exit(0)
})

emit({ event: 'started', worker: workerName })
