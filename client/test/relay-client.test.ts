// RelayClient against the real relay: paged answers under the size and count limits, pacing
// under the rate limit, tokens refreshed after 4001, no return after 4002, errors matched to the
// message they answer.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import WebSocket from 'ws'

import { type CloseInfo, type PeerPullPage, RelayClient, type RelayClientOptions, RelayError, type RelayEvent } from '../src/index.ts'
import { Relay, mintToken, waitFor } from './harness.ts'

describe('RelayClient', () => {
  let relay: Relay
  const clients: RelayClient[] = []
  before(async () => {
    relay = await Relay.start()
  })
  after(async () => {
    for (const client of clients) client.close()
    await relay.stop()
  })

  const connect = async (
    clientId: string,
    options: Partial<RelayClientOptions> = {},
    user = 'carol',
  ): Promise<RelayClient> => {
    const client = new RelayClient({
      url: relay.url,
      clientId,
      sessionId: 'main',
      token: () => relay.token(user),
      WebSocket,
      reconnect: { initialMs: 50, maxMs: 200 },
      ...options,
    })
    clients.push(client)
    client.start()
    await client.whenReady()
    await client.pull() // binds the connection
    return client
  }

  test('answers a peer_pull in pages under the size and count limits, ending with hasMore:false', async () => {
    const text = 'x'.repeat(1000)
    const events: RelayEvent[] = Array.from({ length: 2500 }, (_, i) => ({
      eventName: 'note',
      eventNumber: i + 1,
      clientId: 'responder',
      sessionId: 'main',
      timestamp: i,
      data: { text },
    }))
    const responder = await connect('responder', { maxAnswerBytes: 16 * 1024 * 1024 })
    responder.setPeerPullHandler(() => ({ events }))
    const requester = await connect('requester')
    const pages: PeerPullPage[] = []
    for await (const page of requester.peerPull({ sinceTimestamp: 0, targetClientId: 'responder' })) {
      pages.push(page)
      if (!page.hasMore) break
    }
    // 2,500 events of about 1 KiB do not fit one 1 MiB message: several pages, the last one final.
    assert.ok(pages.length >= 3, `pages: ${pages.length}`)
    assert.deepEqual(
      pages.map((p) => p.hasMore),
      [...pages.slice(1).map(() => true), false],
    )
    for (const page of pages) {
      assert.ok(page.events.length <= 1000)
      assert.equal(page.fromClientId, 'responder')
    }
    assert.deepEqual(
      pages.flatMap((p) => p.events.map((e) => e.eventNumber)),
      events.map((e) => e.eventNumber),
    )
  })

  test('one answer stops at maxAnswerBytes, still ending with hasMore:false', async () => {
    const events: RelayEvent[] = Array.from({ length: 3000 }, (_, i) => ({
      eventName: 'note',
      eventNumber: i + 1,
      clientId: 'capped',
      sessionId: 'main',
      timestamp: i,
      data: 'y'.repeat(1000),
    }))
    const responder = await connect('capped', { maxAnswerBytes: 1024 * 1024 })
    responder.setPeerPullHandler(() => ({ events }))
    const requester = await connect('asker')
    const received: number[] = []
    let last: PeerPullPage | undefined
    for await (const page of requester.peerPull({ sinceTimestamp: 0, targetClientId: 'capped' })) {
      received.push(...page.events.map((e) => e.eventNumber))
      last = page
      if (!page.hasMore) break
    }
    assert.equal(last?.hasMore, false)
    assert.ok(received.length > 500 && received.length < 1100, `received ${received.length}`)
    assert.deepEqual(received, events.slice(0, received.length).map((e) => e.eventNumber))
  })

  test('a burst of pushes above the relay rate is paced, none dropped', async () => {
    const sender = await connect('burst', {}, 'dave')
    const rejected: string[] = []
    sender.onError((error) => rejected.push(error.code))
    const acks = await Promise.all(
      Array.from({ length: 450 }, (_, i) =>
        sender.push([{ eventName: 'n', eventNumber: i + 1, clientId: 'burst', sessionId: 'main', timestamp: i, data: i }]),
      ),
    )
    assert.equal(acks.length, 450)
    assert.ok(acks.every((ack) => ack.receivedCount === 1))
    assert.deepEqual(rejected, [])
  })

  test('errors reject the message they answer', async () => {
    const client = await connect('errs', {}, 'erin')
    const good = { eventName: 'n', eventNumber: 1, clientId: 'errs', sessionId: 'main', timestamp: 1, data: 1 }
    const results = await Promise.allSettled([
      client.push([good]),
      // A sequenced push on a store this connection has not joined.
      client.push([{ ...good, parentEventNumber: 0 }], { storeId: 'not-joined' }),
      client.push([good]),
    ])
    assert.equal(results[0].status, 'fulfilled')
    assert.equal(results[1].status, 'rejected')
    assert.ok((results[1] as PromiseRejectedResult).reason instanceof RelayError)
    assert.equal(((results[1] as PromiseRejectedResult).reason as RelayError).code, 'invalid_message')
    assert.equal(results[2].status, 'fulfilled')
  })

  test('a 4001 close is followed by a fresh token and a new connection', async () => {
    let issued = 0
    const closes: CloseInfo[] = []
    const client = new RelayClient({
      url: relay.url,
      clientId: 'expiring',
      sessionId: 'main',
      // The first token expires in 2 s; the relay closes the connection then.
      token: () => mintToken(relay.secret, 'frank', ++issued === 1 ? 2 : 3600),
      WebSocket,
      reconnect: { initialMs: 5000, maxMs: 5000 },
    })
    clients.push(client)
    client.onClose((info) => closes.push(info))
    client.start()
    await client.whenReady()
    await client.pull()
    await waitFor('closed with 4001', () => closes.some((c) => c.code === 4001), 10_000)
    // Reconnected at once (the backoff here is 5 s), with a new token.
    await waitFor('reconnected', () => client.isReady && issued === 2, 2000)
    const response = await client.pull()
    assert.equal(response.type, 'pull_response')
  })

  test('a 4002 close (same client and session elsewhere) ends the client instead of fighting back', async () => {
    const first = await connect('twin', {}, 'gina')
    const closes: CloseInfo[] = []
    first.onClose((info) => closes.push(info))
    await connect('twin', {}, 'gina')
    await waitFor('first closed with 4002', () => closes.some((c) => c.code === 4002))
    assert.equal(first.status, 'closed')
    await assert.rejects(first.pull(), { name: 'RelayClosedError' })
  })
})
