// `make demo`: the relay in development mode and the built app behind one URL. The app's server
// (vite preview) forwards the sync channel and /dev/token to the relay, so the page, its workers
// and the relay share one origin. Also used by the browser test.
//
//   node serve.mjs [--port 5173] [--relay ../../bin/relay] [--state-dir DIR] [--relay-log FILE]

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, openSync } from 'node:fs'
import { createServer } from 'node:net'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { preview } from 'vite'

const root = fileURLToPath(new URL('.', import.meta.url))

const freePort = async () => {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  return port
}

/** Runs the relay binary in development mode on `port` until `stop()`; resolves once it answers. */
const startRelay = async ({ relayBin, port, stateDir, relayLog }) => {
  const args = ['--dev', '--addr', `127.0.0.1:${port}`, '--log-format', relayLog ? 'console' : 'json']
  if (stateDir) args.push('--state-dir', stateDir)
  if (!relayLog) args.push('--log-level', 'warn')
  let logFd = 'pipe'
  if (relayLog) {
    mkdirSync(dirname(relayLog), { recursive: true })
    logFd = openSync(relayLog, 'a')
  }
  const relay = spawn(relayBin, args, { stdio: ['ignore', 'ignore', logFd] })
  let stderr = ''
  relay.stderr?.setEncoding('utf8').on('data', (chunk) => {
    stderr += chunk
  })
  const exited = once(relay, 'exit')
  // However this process ends (vite's preview server exits on SIGTERM by itself), the relay goes too.
  const killOnExit = () => relay.kill('SIGTERM')
  process.once('exit', killOnExit)
  exited.then(() => process.off('exit', killOnExit))
  const stop = async () => {
    if (relay.exitCode === null && relay.signalCode === null) relay.kill('SIGTERM')
    await exited
  }

  const deadline = Date.now() + 15_000
  for (;;) {
    if (relay.exitCode !== null) {
      throw new Error(`the relay exited with ${relay.exitCode}${relayLog ? ` (see ${relayLog})` : `:\n${stderr}`}`)
    }
    const up = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (response) => response.ok,
      () => false,
    )
    if (up) return { stop }
    if (Date.now() > deadline) {
      await stop()
      throw new Error('the relay did not answer /healthz within 15 s')
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Starts the relay binary (`--dev`, on a free loopback port) and the app's server on `port`
 * (0: any free one). Resolves once both answer; `close()` stops both, `restartRelay()` stops the
 * relay and starts it again on the same port (without `stateDir` it forgets every head).
 */
export const startDemo = async ({ relayBin, port = 0, stateDir, relayLog } = {}) => {
  const relayOptions = { relayBin, port: await freePort(), stateDir, relayLog }
  let relay = await startRelay(relayOptions)
  const relayHttp = `http://127.0.0.1:${relayOptions.port}`

  // vite.config.ts forwards to RELAY_HTTP.
  process.env.RELAY_HTTP = relayHttp
  let server
  try {
    server = await preview({
      root,
      logLevel: 'warn',
      preview: { port: port === 0 ? await freePort() : port, open: false },
    })
  } catch (error) {
    await relay.stop()
    throw error
  }
  return {
    url: server.resolvedUrls.local[0],
    relayHttp,
    close: async () => {
      await server.close()
      await relay.stop()
    },
    restartRelay: async () => {
      await relay.stop()
      relay = await startRelay(relayOptions)
    },
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '5173' },
      relay: { type: 'string', default: fileURLToPath(new URL('../../bin/relay', import.meta.url)) },
      'state-dir': { type: 'string' },
      'relay-log': { type: 'string' },
    },
  })
  const demo = await startDemo({
    relayBin: values.relay,
    port: Number(values.port),
    stateDir: values['state-dir'],
    relayLog: values['relay-log'],
  }).catch((error) => {
    const hint = /already in use/i.test(error.message) ? ' (another port: make demo DEMO_PORT=5174)' : ''
    console.error(`demo: ${error.message}${hint}`)
    process.exit(1)
  })
  console.log(`
  LiveStore todos, synced through livestore-relay. Open:

      ${demo.url}

  A second device of the same user: the same URL in a private window or another browser
  profile. Another user: add ?user=bob. ${values['relay-log'] ? `Relay log: ${values['relay-log']}. ` : ''}Ctrl-C stops.
`)
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      demo.close().then(() => process.exit(0))
    })
  }
}
