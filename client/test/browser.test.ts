// RelayClient in a real browser (headless Chromium): the browser's own WebSocket, and the
// auth_token cookie instead of a token parameter. Skipped when no Chromium is installed
// (CHROMIUM_PATH, default /usr/bin/chromium).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { build } from 'esbuild'
import { chromium } from 'playwright-core'

import { Relay } from './harness.ts'

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const skip = fs.existsSync(chromiumPath) ? false : `no Chromium at ${chromiumPath}`

test('in a browser: default WebSocket, auth_token cookie, push relayed to another client', { skip, timeout: 60_000 }, async () => {
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('../src/relay-client.ts', import.meta.url))],
    bundle: true,
    write: false,
    platform: 'browser',
    format: 'esm',
    logLevel: 'silent',
  })
  const page = `<!doctype html><script type="module">
    import { RelayClient } from '/client.js'
    window.RelayClient = RelayClient
    window.loaded = true
  </script>`
  const server = http.createServer((request, response) => {
    if (request.url === '/client.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle.outputFiles[0]!.text)
    } else {
      response.writeHead(200, { 'content-type': 'text/html' }).end(page)
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const relay = await Relay.start({ extraArgs: ['--allowed-origins', origin] })
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] })
  try {
    const context = await browser.newContext()
    // Cookies belong to the host, whatever the port: the relay's upgrade gets this one.
    await context.addCookies([{ name: 'auth_token', value: relay.token('browser-user'), domain: '127.0.0.1', path: '/' }])
    const tab = await context.newPage()
    await tab.goto(origin)
    await tab.waitForFunction(() => (window as unknown as { loaded?: boolean }).loaded === true)
    const result = await tab.evaluate(async (url) => {
      type Client = import('../src/relay-client.ts').RelayClient
      const Ctor = (window as unknown as { RelayClient: typeof import('../src/relay-client.ts').RelayClient }).RelayClient
      // No token and no WebSocket given: the browser's WebSocket and its cookie.
      const a: Client = new Ctor({ url, clientId: 'tab-a', sessionId: 'main' })
      const b: Client = new Ctor({ url, clientId: 'tab-b', sessionId: 'main' })
      const received = new Promise<unknown>((resolve) => b.onPush((message) => resolve(message.payload.events[0]?.data)))
      a.start()
      b.start()
      await Promise.all([a.whenReady(), b.whenReady()])
      await b.pull()
      const response = await a.pull()
      const ack = await a.push([
        { eventName: 'note', eventNumber: 1, clientId: 'tab-a', sessionId: 'main', timestamp: 1, data: { hello: 'browser' } },
      ])
      const data = await received
      a.close()
      b.close()
      return { peers: response.onlinePeers, receivedCount: ack.receivedCount, data }
    }, relay.url)
    assert.deepEqual(result, { peers: ['tab-b'], receivedCount: 1, data: { hello: 'browser' } })
  } finally {
    await browser.close()
    await relay.stop()
    server.close()
  }
})
