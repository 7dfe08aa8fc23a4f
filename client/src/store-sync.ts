import {
  type RelayEvent,
  type StoreHead,
  RelayClosedError,
  RelayDisconnectedError,
  RelayError,
  isValidHead,
  sameHead,
} from './protocol.ts'
import type { Logger, PeerPullAnswer, RelayTransport } from './relay-client.ts'
import { type SeqEvent, Sequencer, fromWire, headOf, sameEvent, toWire } from './sequencer.ts'
import { Backoff, sleep } from './timing.ts'

/** Read access to the device's own confirmed history of one store. */
export interface LocalLog {
  /** The highest confirmed event number (0 for none). */
  confirmedHead(): number
  /** The confirmed event at a number, if this device holds it. */
  eventAt(eventNumber: number): SeqEvent | undefined
  /** Confirmed events from `from` to `to` (both included), ascending, at most `limit`. */
  readConfirmed(from: number, to: number, limit: number): readonly SeqEvent[]
}

/** History kept in memory, from what this device confirmed since it started. */
export class MemoryLog implements LocalLog {
  private readonly events = new Map<number, SeqEvent>()
  private head = 0
  /** @param keep the most events held (the oldest go first); unlimited when absent. */
  constructor(private readonly keep = Number.POSITIVE_INFINITY) {}
  confirmedHead(): number {
    return this.head
  }
  eventAt(eventNumber: number): SeqEvent | undefined {
    return this.events.get(eventNumber)
  }
  readConfirmed(from: number, to: number, limit: number): readonly SeqEvent[] {
    const out: SeqEvent[] = []
    for (let n = from; n <= to && out.length < limit; n++) {
      const event = this.events.get(n)
      if (event === undefined) break
      out.push(event)
    }
    return out
  }
  add(event: SeqEvent): void {
    this.events.set(event.seqNum, event)
    if (event.seqNum > this.head) this.head = event.seqNum
    if (this.events.size > this.keep) {
      // Maps iterate in insertion order: the first key is the oldest event.
      const oldest = this.events.keys().next().value
      if (oldest !== undefined) this.events.delete(oldest)
    }
  }
}

/** Confirmed events handed on lately, kept to answer history requests (see StoreSync.answer). */
const RECENT_KEPT = 10_000

/** Why a device stopped syncing a store: its history and the store's disagree. */
export interface ForkInfo {
  readonly storeId: string
  /**
   * `store_conflict`: the relay's head has this device's number but another writer.
   * `history_mismatch`: another device's event at this device's head differs from its own.
   */
  readonly reason: 'store_conflict' | 'history_mismatch'
  readonly localHead: StoreHead
  readonly remoteHead: StoreHead
  /** The device whose history differs (history_mismatch). */
  readonly remoteClientId?: string | undefined
}

/** What a push came to. */
export type PushOutcome =
  | { readonly _tag: 'ok' }
  | { readonly _tag: 'serverAhead'; readonly minimumExpected: number; readonly provided: number }
  | { readonly _tag: 'error'; readonly error: Error }

/**
 * A batch of confirmed events to hand to the store, and how many the relay's head is known to
 * be ahead after it (0: caught up, as far as this device knows).
 */
export interface PullItem {
  readonly events: readonly SeqEvent[]
  readonly remaining: number
}

export interface StoreSyncOptions {
  readonly client: RelayTransport
  readonly storeId: string
  readonly onFork?: ((fork: ForkInfo) => void) | undefined
  readonly logger?: Logger | undefined
  /** Delay between catch-up attempts while behind and no peer could help. Default 1 s to 30 s. */
  readonly catchUpRetry?: { readonly initialMs?: number; readonly maxMs?: number } | undefined
}

const READ_BATCH = 500

/**
 * One sequenced store over a RelayClient: joins it after every (re)connect, pushes on the relay's
 * head, turns acks, relayed pushes and catch-up pages into one ascending, gap-free stream of
 * confirmed events, answers other devices' history requests from the local log, and stops at
 * the first sign of a fork.
 */
export class StoreSync {
  readonly storeId: string
  private readonly client: RelayTransport
  private readonly log: Logger
  private readonly onForkCallback: ((fork: ForkInfo) => void) | undefined

  private localLog: LocalLog
  /** Without a local log, the whole history of this session; with one, the latest events handed on. */
  private memoryLog = new MemoryLog()
  private sequencer = new Sequencer(0, undefined)
  private sink: ((item: PullItem) => void) | undefined
  private attached = false
  private disposed = false

  private joined = false
  private joining: Promise<void> | undefined
  private relayHead: StoreHead = { eventNumber: 0 }
  private storePeers: readonly string[] = []
  /** Set at every join: ask a peer whether its history at this device's head is the same. */
  private verifyPending = false
  private catchingUp = false
  private catchUpAgain = false
  private readonly catchUpBackoff: Backoff
  private catchUpTimer: ReturnType<typeof setTimeout> | undefined
  /** The last item handed on ended a page sequence (NoMore), or nothing was handed on yet. */
  private lastItemEnded = true
  private itemsHandedOn = 0

  private fork: ForkInfo | undefined
  private pushChain: Promise<unknown> = Promise.resolve()
  private readonly waiters = new Set<() => void>()
  private readonly connectedListeners = new Set<(connected: boolean) => void>()
  private readonly unsubscribe: Array<() => void> = []

  constructor(options: StoreSyncOptions) {
    this.storeId = options.storeId
    this.client = options.client
    this.log = options.logger ?? (() => {})
    this.onForkCallback = options.onFork
    this.localLog = this.memoryLog
    this.catchUpBackoff = new Backoff(options.catchUpRetry?.initialMs ?? 1000, options.catchUpRetry?.maxMs ?? 30_000)
    this.unsubscribe.push(
      this.client.onPush((message) => {
        if (message.payload.storeId === this.storeId) this.onRelayedPush(message.payload.events)
      }),
      this.client.onClose(() => this.setJoined(false)),
      this.client.onStatus((status) => {
        if (status === 'closed') this.wake()
      }),
    )
  }

  get isConnected(): boolean {
    return this.joined
  }

  get forked(): ForkInfo | undefined {
    return this.fork
  }

  /** The last event handed on (confirmed as far as this device knows). */
  get head(): StoreHead {
    return this.sequencer.storeHead
  }

  onConnected(listener: (connected: boolean) => void): () => void {
    this.connectedListeners.add(listener)
    return () => this.connectedListeners.delete(listener)
  }

  /** Uses the device's own log (LiveStore's event log) to answer history requests. */
  useLog(log: LocalLog): void {
    if (this.localLog === this.memoryLog) this.memoryLog = new MemoryLog(RECENT_KEPT)
    this.localLog = log
  }

  /**
   * Starts handing confirmed events above `cursor` to `sink`; joins the store (now and after
   * every reconnect). A later call replaces the sink and restarts from its cursor.
   */
  attach(cursor: number, sink: (item: PullItem) => void): () => void {
    const headEvent = cursor === 0 ? undefined : this.localLog.eventAt(cursor)
    this.sequencer.reset(cursor, headEvent)
    this.sink = sink
    this.lastItemEnded = true
    this.itemsHandedOn = 0
    if (!this.attached) {
      this.attached = true
      this.client.setPeerPullHandler((request) => this.answer(request.payload))
      this.unsubscribe.push(this.client.onOpen(() => this.join()))
      this.client.start()
    } else if (this.client.status === 'open') {
      void this.join()
    }
    return () => {
      if (this.sink === sink) this.sink = undefined
    }
  }

  /** Stops: leaves the client to its owner. */
  dispose(): void {
    this.disposed = true
    for (const stop of this.unsubscribe.splice(0)) stop()
    if (this.catchUpTimer !== undefined) clearTimeout(this.catchUpTimer)
    this.client.setPeerPullHandler(undefined)
    this.sink = undefined
    this.wake()
  }

  // --- joining ---

  private setJoined(joined: boolean): void {
    if (this.joined === joined) return
    this.joined = joined
    for (const listener of this.connectedListeners) listener(joined)
    this.wake()
  }

  private join(): Promise<void> {
    if (this.joining !== undefined) return this.joining
    this.joining = this.doJoin().finally(() => {
      this.joining = undefined
    })
    return this.joining
  }

  private async doJoin(): Promise<void> {
    if (this.disposed || (this.fork !== undefined && this.fork.reason === 'store_conflict')) return
    const announced = this.sequencer.storeHead
    try {
      const response = await this.client.pull({ storeId: this.storeId, head: announced }, { urgent: true })
      const payload = response.payload
      this.relayHead = isValidHead(payload.head) ? payload.head : announced
      this.storePeers = Array.isArray(payload.storePeers) ? payload.storePeers : []
      this.verifyPending = this.storePeers.length > 0
      this.log('debug', 'joined store', {
        storeId: this.storeId,
        head: announced.eventNumber,
        relayHead: this.relayHead.eventNumber,
        peers: this.storePeers.length,
      })
      this.setJoined(true)
      // A push waiting for a catch-up learns whether the relay's head is still ahead.
      this.wake()
      this.scheduleCatchUp(0)
    } catch (error) {
      if (error instanceof RelayError && error.code === 'store_conflict') {
        const remote = error.payload?.head
        this.declareFork({
          storeId: this.storeId,
          reason: 'store_conflict',
          localHead: announced,
          remoteHead: isValidHead(remote) ? remote : { eventNumber: announced.eventNumber },
        })
        return
      }
      if (error instanceof RelayDisconnectedError || error instanceof RelayClosedError) return
      // limit_exceeded and the like: try again later on this connection.
      this.log('warn', 'joining the store failed', { storeId: this.storeId, error: String(error) })
      const delay = this.catchUpBackoff.next()
      setTimeout(() => {
        if (!this.disposed && this.client.status === 'open' && !this.joined) void this.join()
      }, delay)
    }
  }

  // --- handing on ---

  private handOn(events: readonly SeqEvent[]): void {
    if (this.fork !== undefined) return
    for (const event of events) this.memoryLog.add(event)
    const remaining = Math.max(0, this.relayHead.eventNumber - this.sequencer.head)
    if (events.length === 0 && this.lastItemEnded && this.itemsHandedOn > 0) return
    this.lastItemEnded = remaining === 0
    this.itemsHandedOn++
    this.sink?.({ events, remaining })
    this.wake()
  }

  /** Ends any page sequence (and the initial sync) with an empty item that says "no more". */
  private endPages(): void {
    if (this.fork !== undefined) return
    if (this.lastItemEnded && this.itemsHandedOn > 0) return
    this.lastItemEnded = true
    this.itemsHandedOn++
    this.sink?.({ events: [], remaining: 0 })
  }

  private noteRelayHead(head: StoreHead): void {
    if (head.eventNumber > this.relayHead.eventNumber) this.relayHead = head
  }

  private onRelayedPush(wire: readonly RelayEvent[]): void {
    if (this.fork !== undefined || !Array.isArray(wire)) return
    const events = wire.map(fromWire)
    if (events.some((event) => event === undefined) || events.length === 0) {
      this.log('warn', 'a relayed push with malformed events was ignored', { storeId: this.storeId })
      return
    }
    const valid = events as SeqEvent[]
    const last = valid[valid.length - 1]!
    this.noteRelayHead(headOf(last, last.seqNum))
    // A batch above the head is kept until the history before it has arrived.
    const result = this.sequencer.offer(valid)
    if (result.accepted.length > 0) this.handOn(result.accepted)
    if (result.gap) this.scheduleCatchUp(0)
  }

  // --- catching up ---

  private scheduleCatchUp(delayMs: number): void {
    if (this.fork !== undefined) return
    if (this.catchingUp) {
      this.catchUpAgain = true
      return
    }
    if (this.catchUpTimer !== undefined) {
      if (delayMs > 0) return
      clearTimeout(this.catchUpTimer)
    }
    this.catchUpTimer = setTimeout(() => {
      this.catchUpTimer = undefined
      void this.catchUp()
    }, delayMs)
  }

  private get behind(): boolean {
    return this.relayHead.eventNumber > this.sequencer.head
  }

  private async catchUp(): Promise<void> {
    if (this.catchingUp || this.fork !== undefined) return
    this.catchingUp = true
    this.catchUpAgain = false
    let retryLater = false
    try {
      let failedAttempts = 0
      while (this.fork === undefined && this.joined && this.sink !== undefined) {
        if (!this.behind && !this.verifyPending) break
        const peers = this.storePeers
        if (peers.length === 0) {
          retryLater = this.behind
          break
        }
        const preferred = this.relayHead.clientId
        const start = preferred !== undefined && peers.includes(preferred) ? peers.indexOf(preferred) : 0
        const target = peers[(start + failedAttempts) % peers.length]!
        this.verifyPending = false
        const progressed = await this.catchUpRound(target)
        if (progressed) {
          failedAttempts = 0
          this.catchUpBackoff.reset()
          continue
        }
        failedAttempts++
        if (failedAttempts >= peers.length) {
          retryLater = this.behind
          break
        }
      }
    } catch (error) {
      retryLater = this.behind
      this.log('debug', 'catch-up interrupted', { storeId: this.storeId, error: String(error) })
    } finally {
      this.catchingUp = false
      // Relayed pushes kept meanwhile may now fit.
      const kept = this.sequencer.offer([]).accepted
      if (kept.length > 0) this.handOn(kept)
      this.endPages()
      this.wake()
    }
    if (this.fork !== undefined) return
    if (this.catchUpAgain && this.behind) {
      this.scheduleCatchUp(0)
    } else if (retryLater && this.joined) {
      // Nobody online holds what the relay's head says exists; ask again (with a fresh join,
      // which also refreshes the peers) after a while.
      const delay = this.catchUpBackoff.next()
      this.log('debug', 'behind the relay and no peer could help; retrying', { storeId: this.storeId, delay })
      this.catchUpTimer = setTimeout(() => {
        this.catchUpTimer = undefined
        if (this.joined && !this.disposed) void this.join()
      }, delay)
    }
  }

  /** One peer_pull to one peer from this device's head; true when it brought events. */
  private async catchUpRound(target: string): Promise<boolean> {
    const since = this.sequencer.head
    const expected = this.sequencer.headEvent
    const request = this.client.peerPull({
      sinceTimestamp: 0,
      storeId: this.storeId,
      sinceEventNumber: since,
      targetClientId: target,
    })
    let first = true
    let progressed = false
    try {
      for await (const page of request) {
        if (this.fork !== undefined) return false
        if (isValidHead(page.head)) this.noteRelayHead(page.head)
        const events: SeqEvent[] = []
        for (const wire of page.events) {
          const event = fromWire(wire)
          if (event === undefined) {
            this.log('warn', 'a history page with malformed events was ignored', { from: page.fromClientId })
            return progressed
          }
          events.push(event)
        }
        if (first && events.length > 0) {
          first = false
          const head = events[0]!
          if (since > 0 && head.seqNum === since && expected !== undefined && !sameEvent(head, expected)) {
            this.declareFork({
              storeId: this.storeId,
              reason: 'history_mismatch',
              localHead: headOf(expected, since),
              remoteHead: headOf(head, since),
              remoteClientId: page.fromClientId,
            })
            return false
          }
        }
        this.log('debug', 'history page', {
          storeId: this.storeId,
          from: page.fromClientId,
          events: events.length,
          hasMore: page.hasMore,
        })
        const result = this.sequencer.offer(events)
        if (result.accepted.length > 0) {
          progressed = true
          this.handOn(result.accepted)
        }
        if (!page.hasMore && (page.fromClientId === target || page.fromClientId === 'server')) break
      }
    } finally {
      request.close()
    }
    return progressed
  }

  // --- answering ---

  /**
   * Answers from the events this device handed on lately, and from the local log below them.
   * The local log alone is not enough: LiveStore records a new confirmed head before it rolls
   * back the pending events it rebases, so for a moment the log holds this device's own
   * unconfirmed events at confirmed numbers, and another device comparing its head event with
   * one of them would see a fork that is not there.
   */
  private answer(payload: { readonly storeId?: string; readonly sinceEventNumber?: number }): PeerPullAnswer {
    if (payload.storeId !== this.storeId) return { events: [] }
    const log = this.localLog
    const recent = this.memoryLog
    const head = Math.max(recent.confirmedHead(), log.confirmedHead())
    const eventAt = (n: number): SeqEvent | undefined => recent.eventAt(n) ?? log.eventAt(n)
    const since = typeof payload.sinceEventNumber === 'number' ? payload.sinceEventNumber : 0
    const headEvent = head === 0 ? undefined : eventAt(head)
    const heldAtSince = recent.eventAt(since)
    const loggedAtSince = heldAtSince === undefined || log === recent ? undefined : log.eventAt(since)
    if (heldAtSince !== undefined && loggedAtSince !== undefined && !sameEvent(heldAtSince, loggedAtSince)) {
      this.log('debug', 'the local log holds another event at a confirmed number (a rebase under way)', {
        storeId: this.storeId,
        eventNumber: since,
      })
    }
    async function* events(): AsyncGenerator<RelayEvent> {
      let from = since > 0 ? since : 1
      const timestamp = Date.now()
      while (from <= head) {
        const held = recent.eventAt(from)
        if (held !== undefined) {
          yield toWire(held, timestamp)
          from++
          continue
        }
        // Below the recent events: the local log, up to the first recent one.
        const batch = log.readConfirmed(from, head, READ_BATCH)
        const cut = batch.findIndex((event) => recent.eventAt(event.seqNum) !== undefined)
        const below = cut < 0 ? batch : batch.slice(0, cut)
        if (below.length === 0) return
        for (const event of below) yield toWire(event, timestamp)
        from = below[below.length - 1]!.seqNum + 1
      }
    }
    return { head: headOf(headEvent, headEvent === undefined ? 0 : head), events: events() }
  }

  // --- pushing ---

  /**
   * Pushes LiveStore's batch on the relay's head. Own events come back to the sink once acked.
   * Never settles once a fork was found: pushing stops there. `signal` aborts the wait (the
   * leader restarts its push); a push already sent still has its ack handled.
   */
  push(batch: readonly SeqEvent[], signal?: AbortSignal): Promise<PushOutcome> {
    const run = this.pushChain.then(() => this.pushNow(batch, signal))
    this.pushChain = run.catch(() => {})
    return run
  }

  private async pushNow(batch: readonly SeqEvent[], signal: AbortSignal | undefined): Promise<PushOutcome> {
    signal?.addEventListener('abort', () => this.wake(), { once: true })
    let rest = batch
    while (true) {
      if (this.fork !== undefined) return new Promise<never>(() => {})
      if (rest.length === 0) return { _tag: 'ok' }
      await this.waitUntil(() => this.fork !== undefined || (this.joined && !this.catchingUp) || signal?.aborted === true)
      if (signal?.aborted === true) return { _tag: 'error', error: new Error('push aborted') }
      if (this.fork !== undefined) continue
      const first = rest[0]!
      const head = this.sequencer.head
      if (first.parentSeqNum < head) {
        // Confirmed events above its parent are on their way to the store, which rebases or
        // confirms this batch and pushes again.
        return { _tag: 'serverAhead', minimumExpected: head, provided: first.parentSeqNum }
      }
      if (first.parentSeqNum > head) {
        return { _tag: 'error', error: new Error(`push starts after ${first.parentSeqNum}, confirmed head is ${head}`) }
      }
      if (this.behind) {
        // The relay's head may be this batch's own event: pushed and acked before, the ack or
        // its record lost (a cut connection, a restart before the store saved it).
        const confirmed = this.confirmedByHead(rest, this.relayHead)
        if (confirmed > 0) {
          rest = rest.slice(confirmed)
          continue
        }
        if (!(await this.caughtUpFrom(head, signal))) return new Promise<never>(() => {})
        continue
      }
      try {
        const timestamp = Date.now()
        const ack = await this.client.push(
          rest.map((event) => toWire(event, timestamp)),
          { storeId: this.storeId },
        )
        const last = rest[rest.length - 1]!
        this.relayHead = isValidHead(ack.head) ? ack.head : headOf(last, last.seqNum)
        this.confirmOwn(rest)
        return { _tag: 'ok' }
      } catch (error) {
        if (error instanceof RelayClosedError) return new Promise<never>(() => {})
        if (error instanceof RelayDisconnectedError) {
          // Sent or not, acked or not: the head the relay reports at the next join says.
          await this.waitUntil(() => this.joined || this.fork !== undefined || this.client.status === 'closed')
          rest = rest.slice(this.confirmedByHead(rest, this.relayHead))
          continue
        }
        if (error instanceof RelayError) {
          if (error.code === 'head_mismatch') {
            const relayHead = error.payload?.head
            if (!isValidHead(relayHead)) return { _tag: 'error', error }
            this.relayHead = relayHead
            const confirmed = this.confirmedByHead(rest, relayHead)
            if (confirmed > 0) {
              // The head is this device's own event: an earlier attempt was acked, the ack lost.
              rest = rest.slice(confirmed)
              continue
            }
            if (relayHead.eventNumber === this.sequencer.head && !sameHead(relayHead, this.sequencer.storeHead)) {
              // The relay's head is another event at this device's head number.
              this.declareFork({
                storeId: this.storeId,
                reason: 'store_conflict',
                localHead: this.sequencer.storeHead,
                remoteHead: relayHead,
              })
              continue
            }
            if (relayHead.eventNumber < this.sequencer.head) {
              // The relay is behind this device (it lost its state): announce the head again.
              this.setJoined(false)
              await this.join()
              continue
            }
            if (!(await this.caughtUpFrom(head, signal))) return new Promise<never>(() => {})
            continue
          }
          if (error.code === 'rate_limited') {
            await sleep(250)
            continue
          }
          if (error.code === 'invalid_message' && !this.joined) continue
        }
        return { _tag: 'error', error: error instanceof Error ? error : new Error(String(error)) }
      }
    }
  }

  /**
   * Catches up while the relay's head is ahead of `head` (this device's head when it found so),
   * until events above it were handed on or the relay's head is no longer ahead; false when the
   * client closed meanwhile. LiveStore
   * answers ServerAhead by waiting for the pull to bring new events, so a push reports
   * ServerAhead only once they were handed on: a head that went away meanwhile (a relay that
   * restarted without its state and heard a lower head first) would otherwise leave the batch
   * unpushed for good.
   */
  private async caughtUpFrom(head: number, signal: AbortSignal | undefined): Promise<boolean> {
    this.scheduleCatchUp(0)
    await this.waitUntil(
      () => this.fork !== undefined || signal?.aborted === true || this.sequencer.head !== head || !this.behind,
    )
    // Closed for good: nothing will come, as for a push the closing client refused.
    if (this.client.status === 'closed') return false
    if (this.sequencer.head === head && !this.behind) {
      this.log('debug', 'the relay head this device was behind is gone; pushing again', {
        storeId: this.storeId,
        head,
        relayHead: this.relayHead.eventNumber,
      })
    }
    return true
  }

  /**
   * How many of the batch's first events the relay's head shows as accepted: the head is one of
   * them, written by this batch's writer. Those are handed on as confirmed.
   */
  private confirmedByHead(batch: readonly SeqEvent[], head: StoreHead): number {
    const first = batch[0]
    if (first === undefined || first.parentSeqNum !== this.sequencer.head) return 0
    const index = batch.findIndex(
      (event) => event.seqNum === head.eventNumber && event.clientId === head.clientId && event.sessionId === head.sessionId,
    )
    if (index < 0) return 0
    this.confirmOwn(batch.slice(0, index + 1))
    return index + 1
  }

  private confirmOwn(events: readonly SeqEvent[]): void {
    const result = this.sequencer.offer(events)
    if (result.accepted.length > 0) this.handOn(result.accepted)
  }

  // --- fork ---

  private declareFork(fork: ForkInfo): void {
    if (this.fork !== undefined) return
    // Close any page sequence first: LiveStore holds back local commits until one ends.
    this.endPages()
    this.fork = fork
    this.log('error', 'fork: this device and the store have different histories; syncing stopped', {
      storeId: fork.storeId,
      reason: fork.reason,
      localHead: fork.localHead.eventNumber,
      remoteHead: fork.remoteHead.eventNumber,
    })
    if (fork.reason === 'store_conflict') this.setJoined(false)
    this.wake()
    try {
      this.onForkCallback?.(fork)
    } catch (error) {
      this.log('error', 'onFork threw', { error: String(error) })
    }
  }

  // --- waiting ---

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter()
  }

  private waitUntil(condition: () => boolean): Promise<void> {
    if (condition() || this.client.status === 'closed') return Promise.resolve()
    return new Promise((resolve) => {
      const check = (): void => {
        if (condition() || this.client.status === 'closed') {
          this.waiters.delete(check)
          resolve()
        }
      }
      this.waiters.add(check)
    })
  }
}
