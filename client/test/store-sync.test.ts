// StoreSync's decisions against a scripted relay: lost acks, head_mismatch and catch-up, page
// info, forks, relayed pushes that arrive ahead of history, and answers from the local log.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import {
  type AckPayload,
  type ForkInfo,
  MemoryLog,
  type PeerPullHandler,
  type PeerPullPage,
  type PeerPullPayload,
  type PeerPullRequest,
  type PullItem,
  type PullPayload,
  type PullResponseMessage,
  type PushMessage,
  type RelayClientStatus,
  RelayError,
  type RelayEvent,
  type RelayTransport,
  type SeqEvent,
  type StoreHead,
  StoreSync,
  toWire,
} from '../src/index.ts'

const STORE = 'store-1'
const ev = (seqNum: number, clientId = 'me', text = `e${seqNum}`): SeqEvent => ({
  name: 'v1.Thing',
  args: { text },
  seqNum,
  parentSeqNum: seqNum - 1,
  clientId,
  sessionId: 's',
})
const head = (event: SeqEvent): StoreHead => ({ eventNumber: event.seqNum, clientId: event.clientId, sessionId: 's' })

class ScriptedRelay implements RelayTransport {
  status: RelayClientStatus = 'idle'
  relayHead: StoreHead = { eventNumber: 0 }
  storePeers: string[] = []
  joinError: RelayError | undefined
  readonly pushes: RelayEvent[][] = []
  readonly peerPulls: Omit<PeerPullPayload, 'requestId'>[] = []
  pushAnswer: (events: readonly RelayEvent[]) => AckPayload | RelayError = () => {
    throw new Error('no push expected')
  }
  pages: (payload: Omit<PeerPullPayload, 'requestId'>) => PeerPullPage[] = () => []
  handler: PeerPullHandler | undefined
  private readonly hooks: Array<() => void | Promise<void>> = []
  private readonly pushListeners: Array<(message: PushMessage) => void> = []

  start(): void {
    if (this.status !== 'idle') return
    this.status = 'open'
    for (const hook of this.hooks) void hook()
  }
  onOpen(hook: () => void | Promise<void>): () => void {
    this.hooks.push(hook)
    return () => {}
  }
  onPush(listener: (message: PushMessage) => void): () => void {
    this.pushListeners.push(listener)
    return () => {}
  }
  onClose(): () => void {
    return () => {}
  }
  onStatus(): () => void {
    return () => {}
  }
  setPeerPullHandler(handler: PeerPullHandler | undefined): void {
    this.handler = handler
  }
  async pull(payload: PullPayload = {}): Promise<PullResponseMessage> {
    if (this.joinError !== undefined) throw this.joinError
    return {
      type: 'pull_response',
      clientId: 'server',
      sessionId: '',
      timestamp: 0,
      onlinePeers: this.storePeers,
      payload: {
        events: [],
        fromClientId: 'server',
        hasMore: false,
        storeId: payload.storeId,
        head: this.relayHead,
        storePeers: this.storePeers,
      },
    } as PullResponseMessage
  }
  async push(events: readonly RelayEvent[]): Promise<AckPayload> {
    this.pushes.push([...events])
    const answer = this.pushAnswer(events)
    if (answer instanceof RelayError) throw answer
    return answer
  }
  peerPull(payload: Omit<PeerPullPayload, 'requestId'>): PeerPullRequest {
    this.peerPulls.push(payload)
    const pages = this.pages(payload)
    return {
      requestId: `r${this.peerPulls.length}`,
      close: () => {},
      async *[Symbol.asyncIterator]() {
        for (const page of pages) yield page
      },
    }
  }
  relay(events: SeqEvent[], from = 'other'): void {
    const message = {
      type: 'push',
      clientId: from,
      sessionId: 's',
      timestamp: 0,
      payload: { storeId: STORE, events: events.map((e) => toWire(e, 0)) },
    } as PushMessage
    for (const listener of this.pushListeners) listener(message)
  }
}

const setup = (relay: ScriptedRelay, cursor = 0, log?: MemoryLog) => {
  const items: PullItem[] = []
  const forks: ForkInfo[] = []
  const sync = new StoreSync({ client: relay, storeId: STORE, onFork: (f) => forks.push(f), catchUpRetry: { initialMs: 10, maxMs: 20 } })
  if (log !== undefined) sync.useLog(log)
  sync.attach(cursor, (item) => items.push(item))
  return { sync, items, forks }
}
const eventually = async (what: string, condition: () => boolean): Promise<void> => {
  const deadline = Date.now() + 2000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}
const handed = (items: readonly PullItem[]): number[] => items.flatMap((item) => item.events.map((e) => e.seqNum))
const mismatch = (relayHead: StoreHead) =>
  new RelayError('head_mismatch', 'push is not on the head', { storeId: STORE, head: relayHead })
const page = (from: string, events: SeqEvent[], hasMore: boolean, h?: StoreHead): PeerPullPage => ({
  fromClientId: from,
  events: events.map((e) => toWire(e, 0)),
  hasMore,
  storeId: STORE,
  head: h,
})

describe('StoreSync', () => {
  test('an ack hands the own events on as confirmed', async () => {
    const relay = new ScriptedRelay()
    const { sync, items } = setup(relay)
    await eventually('joined', () => sync.isConnected)
    relay.pushAnswer = () => ({ receivedCount: 2, lastTimestamp: 0, storeId: STORE, head: head(ev(2)) })
    assert.deepEqual(await sync.push([ev(1), ev(2)]), { _tag: 'ok' })
    assert.deepEqual(handed(items), [1, 2])
    assert.equal(items.at(-1)!.remaining, 0)
  })

  test('head_mismatch naming the own last event is the lost ack', async () => {
    const relay = new ScriptedRelay()
    const { sync, items } = setup(relay)
    await eventually('joined', () => sync.isConnected)
    relay.pushAnswer = () => mismatch(head(ev(2)))
    assert.deepEqual(await sync.push([ev(1), ev(2)]), { _tag: 'ok' })
    assert.equal(relay.pushes.length, 1, 'not pushed again')
    assert.deepEqual(handed(items), [1, 2])
  })

  test('head_mismatch naming an own event inside the batch confirms up to it and pushes the rest', async () => {
    const relay = new ScriptedRelay()
    const { sync, items } = setup(relay)
    await eventually('joined', () => sync.isConnected)
    let call = 0
    relay.pushAnswer = () =>
      ++call === 1 ? mismatch(head(ev(2))) : { receivedCount: 1, lastTimestamp: 0, storeId: STORE, head: head(ev(3)) }
    assert.deepEqual(await sync.push([ev(1), ev(2), ev(3)]), { _tag: 'ok' })
    assert.deepEqual(
      relay.pushes.map((p) => p.map((e) => e.eventNumber)),
      [
        [1, 2, 3],
        [3],
      ],
    )
    assert.deepEqual(handed(items), [1, 2, 3])
  })

  test('a relay head naming the own event at the join confirms it without pushing (ack lost before a restart)', async () => {
    const relay = new ScriptedRelay()
    relay.relayHead = head(ev(2))
    const { sync, items } = setup(relay)
    await eventually('joined', () => sync.isConnected)
    assert.deepEqual(await sync.push([ev(1), ev(2)]), { _tag: 'ok' })
    assert.equal(relay.pushes.length, 0)
    assert.deepEqual(handed(items), [1, 2])
  })

  test("head_mismatch on another device's head: ServerAhead, then a catch-up in pages ending with no-more", async () => {
    const relay = new ScriptedRelay()
    relay.storePeers = ['other', 'third']
    const { sync, items } = setup(relay)
    await eventually('joined', () => sync.isConnected)
    await eventually('first item', () => items.length > 0)
    const other = [ev(1, 'other'), ev(2, 'other'), ev(3, 'other')]
    relay.pushAnswer = () => mismatch(head(other[2]!))
    relay.pages = () => [page('other', other.slice(0, 2), true, head(other[2]!)), page('other', other.slice(2), false, head(other[2]!))]
    const outcome = await sync.push([ev(1)])
    assert.deepEqual(outcome, { _tag: 'serverAhead', minimumExpected: 3, provided: 0 })
    await eventually('caught up', () => handed(items).length === 3)
    // Asked the device that wrote the head, from this device's head.
    assert.deepEqual(relay.peerPulls.at(-1), { sinceTimestamp: 0, storeId: STORE, sinceEventNumber: 0, targetClientId: 'other' })
    const withEvents = items.filter((item) => item.events.length > 0)
    assert.deepEqual(
      withEvents.map((item) => item.remaining),
      [1, 0],
    )
    assert.equal(items.at(-1)!.remaining, 0)
  })

  test('a head_mismatch head that is gone after a relay restart: the batch is pushed again, not left waiting', async () => {
    const relay = new ScriptedRelay()
    const { sync, items } = setup(relay)
    await eventually('joined', () => sync.isConnected)
    const gone = head(ev(1, 'other'))
    relay.pushAnswer = () => {
      // The relay restarts without its state; this device's re-announced head is all it knows.
      relay.relayHead = { eventNumber: 0 }
      relay.pushAnswer = () => ({ receivedCount: 1, lastTimestamp: 0, storeId: STORE, head: head(ev(1)) })
      return mismatch(gone)
    }
    // ServerAhead would make LiveStore wait for events that no device holds.
    assert.deepEqual(await sync.push([ev(1)]), { _tag: 'ok' })
    assert.equal(relay.pushes.length, 2)
    assert.deepEqual(handed(items), [1])
  })

  test('the first catch-up event differing from the own head event is a fork: onFork, pushing stops', async () => {
    const log = new MemoryLog()
    log.add(ev(1, 'me'))
    const relay = new ScriptedRelay()
    relay.storePeers = ['other']
    relay.relayHead = head(ev(2, 'other'))
    relay.pages = () => [page('other', [ev(1, 'other'), ev(2, 'other')], false)]
    const { sync, items, forks } = setup(relay, 1, log)
    await eventually('fork', () => forks.length === 1)
    assert.equal(forks[0]!.reason, 'history_mismatch')
    assert.deepEqual(forks[0]!.localHead, head(ev(1, 'me')))
    assert.deepEqual(forks[0]!.remoteHead, head(ev(1, 'other')))
    assert.equal(forks[0]!.remoteClientId, 'other')
    assert.deepEqual(handed(items), [])
    // The page sequence is closed, so LiveStore goes on storing local commits.
    assert.equal(items.at(-1)?.remaining, 0)
    const settled = await Promise.race([
      sync.push([ev(2, 'me')]).then(() => 'settled'),
      new Promise((resolve) => setTimeout(() => resolve('pending'), 50)),
    ])
    assert.equal(settled, 'pending')
    assert.equal(relay.pushes.length, 0)
  })

  test('store_conflict at the join is a fork', async () => {
    const relay = new ScriptedRelay()
    relay.joinError = new RelayError('store_conflict', 'other head', { storeId: STORE, head: head(ev(1, 'other')) })
    const log = new MemoryLog()
    log.add(ev(1, 'me'))
    const { sync, forks } = setup(relay, 1, log)
    await eventually('fork', () => forks.length === 1)
    assert.equal(forks[0]!.reason, 'store_conflict')
    assert.equal(forks[0]!.remoteHead.clientId, 'other')
    assert.equal(sync.isConnected, false)
  })

  test('a relayed push ahead of the head waits for the history before it', async () => {
    const relay = new ScriptedRelay()
    relay.storePeers = ['other']
    const { sync, items } = setup(relay)
    await eventually('joined', () => sync.isConnected)
    relay.pages = () => [page('other', [ev(1, 'other'), ev(2, 'other')], false)]
    relay.relay([ev(3, 'other'), ev(4, 'other')])
    await eventually('all four', () => handed(items).length === 4)
    assert.deepEqual(handed(items), [1, 2, 3, 4])
    assert.equal(relay.peerPulls.at(-1)!.sinceEventNumber, 0)
    relay.relay([ev(5, 'other')])
    assert.deepEqual(handed(items), [1, 2, 3, 4, 5])
    relay.relay([ev(5, 'other')])
    assert.deepEqual(handed(items), [1, 2, 3, 4, 5], 'duplicates are dropped')
  })

  test('answers with the confirmed events handed on, not with own pending events the local log still holds at their numbers', async () => {
    const log = new MemoryLog()
    log.add(ev(1, 'other'))
    const relay = new ScriptedRelay()
    const { sync, items } = setup(relay, 1, log)
    await eventually('joined', () => sync.isConnected)
    relay.relay([ev(2, 'other'), ev(3, 'other')])
    await eventually('handed on', () => handed(items).includes(3))
    // LiveStore has recorded the new head but not yet rolled back this device's pending event 2.
    log.add(ev(2, 'me', 'pending'))
    log.add(ev(3, 'me', 'pending too'))
    const answer = await relay.handler!({ fromClientId: 'x', payload: { requestId: 'r', sinceTimestamp: 0, storeId: STORE, sinceEventNumber: 1 } })
    const events: RelayEvent[] = []
    for await (const event of answer.events) events.push(event)
    assert.deepEqual(
      events.map((e) => [e.eventNumber, e.clientId]),
      [
        [1, 'other'],
        [2, 'other'],
        [3, 'other'],
      ],
    )
    assert.deepEqual(answer.head, head(ev(3, 'other')))
  })

  test('answers history from the local log: the event at sinceEventNumber first, with the head', async () => {
    const log = new MemoryLog()
    for (let i = 1; i <= 1200; i++) log.add(ev(i, i % 2 === 0 ? 'me' : 'other'))
    const relay = new ScriptedRelay()
    setup(relay, 1200, log)
    const answer = await relay.handler!({ fromClientId: 'x', payload: { requestId: 'r', sinceTimestamp: 0, storeId: STORE, sinceEventNumber: 7 } })
    const events: RelayEvent[] = []
    for await (const event of answer.events) events.push(event)
    assert.equal(events.length, 1194)
    assert.equal(events[0]!.eventNumber, 7)
    assert.equal(events.at(-1)!.eventNumber, 1200)
    assert.deepEqual(answer.head, head(ev(1200, 'me')))
    const other = await relay.handler!({ fromClientId: 'x', payload: { requestId: 'r', sinceTimestamp: 0, storeId: 'another' } })
    assert.deepEqual([...(other.events as Iterable<RelayEvent>)], [])
  })
})
