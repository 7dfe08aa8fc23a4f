import {
  EVENTLOG_META_TABLE,
  IsOfflineError,
  type PreparedBindValues,
  SYNC_STATUS_TABLE,
  ServerAheadError,
  type SqliteDb,
  SyncBackend,
  UnknownError,
} from '@livestore/common'
import { LeaderThreadCtx } from '@livestore/common/leader-thread'
import { EventSequenceNumber, type LiveStoreEvent } from '@livestore/common/schema'
import { Effect, Option, Queue, type Schema, Stream, SubscriptionRef } from '@livestore/utils/effect'

import { utf8Length } from './protocol.ts'
import { type Logger, RelayClient, type WebSocketConstructor } from './relay-client.ts'
import type { SeqEvent } from './sequencer.ts'
import { type ForkInfo, type LocalLog, type PullItem, StoreSync } from './store-sync.ts'

/** What the token function is told: the store being synced and LiveStore's sync payload. */
export interface TokenContext {
  readonly storeId: string
  readonly clientId: string
  readonly payload: Schema.JsonValue | undefined
}

export interface RelaySyncOptions {
  /** The relay's sync URL, `wss://host/api/v1/livestore/sync` (`ws://` for local use). */
  readonly url: string
  /**
   * The JWT, or a function that returns one (called before every connection attempt, so it can
   * refresh an expired token). Absent: no token parameter; browsers then send the `auth_token` cookie.
   */
  readonly token?: string | ((context: TokenContext) => string | Promise<string>) | undefined
  /** WebSocket constructor. Default: globalThis.WebSocket (on Node 20 pass the `ws` package's). */
  readonly WebSocket?: WebSocketConstructor | undefined
  /**
   * Called once when this device's history of a store and the store's history disagree. Syncing
   * of that store stops (nothing more is pushed or pulled); local data stays as it is.
   */
  readonly onFork?: ((fork: ForkInfo) => void) | undefined
  /** Reconnect delays, exponential and jittered. Default 250 ms to 15 s. */
  readonly reconnect?: { readonly initialMs?: number; readonly maxMs?: number } | undefined
  /** Retry delays while the relay's head is ahead and no online device holds the events. Default 1 s to 30 s. */
  readonly catchUpRetry?: { readonly initialMs?: number; readonly maxMs?: number } | undefined
  /** Outgoing messages per second; keep under the relay's `--rate` (default 200). Default 150. */
  readonly messagesPerSecond?: number | undefined
  /** Diagnostic log; never receives tokens or event data. */
  readonly logger?: Logger | undefined
}

/**
 * The relay session of a store's leader: one connection per store and device. Derived from the
 * store id so that two stores of one device do not replace each other's connection (4002).
 */
export const relaySessionId = (storeId: string): string => {
  const id = `store:${storeId}`
  if (utf8Length(id) <= 128) return id
  let hash = 0x811c9dc5
  for (let i = 0; i < storeId.length; i++) {
    hash ^= storeId.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return `store:${storeId.slice(0, 80)}#${hash.toString(16)}`
}

interface EventlogRow {
  readonly seqNumGlobal: number
  readonly parentSeqNumGlobal: number
  readonly name: string
  readonly argsJson: string
  readonly clientId: string
  readonly sessionId: string
}

const COLUMNS = 'seqNumGlobal, parentSeqNumGlobal, name, argsJson, clientId, sessionId'

const rowToEvent = (row: EventlogRow): SeqEvent => ({
  name: row.name,
  args: JSON.parse(row.argsJson) as unknown,
  seqNum: row.seqNumGlobal,
  parentSeqNum: row.parentSeqNumGlobal,
  clientId: row.clientId,
  sessionId: row.sessionId,
})

/**
 * The leader's own event log (LiveStore 0.4.0 internals: the `eventlog` and
 * `__livestore_sync_status` tables of the leader's eventlog database). Confirmed events are the
 * global ones (seqNumClient 0) up to the backend head the leader recorded.
 */
export const leaderLog = (db: SqliteDb): LocalLog => {
  const bind = (values: readonly number[]): PreparedBindValues => values as unknown as PreparedBindValues
  const dedupe = (rows: readonly EventlogRow[]): SeqEvent[] => {
    const out: SeqEvent[] = []
    for (const row of rows) if (out[out.length - 1]?.seqNum !== row.seqNumGlobal) out.push(rowToEvent(row))
    return out
  }
  return {
    confirmedHead: () => db.select<{ head: number }>(`SELECT head FROM ${SYNC_STATUS_TABLE}`)[0]?.head ?? 0,
    eventAt: (eventNumber) =>
      dedupe(
        db.select<EventlogRow>(
          `SELECT ${COLUMNS} FROM ${EVENTLOG_META_TABLE} WHERE seqNumGlobal = ? AND seqNumClient = 0 ORDER BY seqNumRebaseGeneration DESC LIMIT 1`,
          bind([eventNumber]),
        ),
      )[0],
    readConfirmed: (from, to, limit) =>
      dedupe(
        db.select<EventlogRow>(
          `SELECT ${COLUMNS} FROM ${EVENTLOG_META_TABLE} WHERE seqNumGlobal >= ? AND seqNumGlobal <= ? AND seqNumClient = 0 ORDER BY seqNumGlobal ASC, seqNumRebaseGeneration DESC LIMIT ?`,
          bind([from, to, limit]),
        ),
      ),
  }
}

const toEncoded = (event: SeqEvent): LiveStoreEvent.Global.Encoded => ({
  name: event.name,
  args: event.args,
  seqNum: EventSequenceNumber.Global.make(event.seqNum),
  parentSeqNum: EventSequenceNumber.Global.make(event.parentSeqNum),
  clientId: event.clientId,
  sessionId: event.sessionId,
})

const toPullResItem = (item: PullItem): SyncBackend.PullResItem => ({
  batch: item.events.map((event) => ({ eventEncoded: toEncoded(event), metadata: Option.none() })),
  pageInfo: item.remaining > 0 ? SyncBackend.pageInfoMoreKnown(item.remaining) : SyncBackend.pageInfoNoMore,
})

/**
 * A LiveStore 0.4 sync backend over livestore-relay:
 * `makeAdapter({ storage, sync: { backend: makeRelaySync({ url, token }) } })`.
 */
export const makeRelaySync =
  (options: RelaySyncOptions): SyncBackend.SyncBackendConstructor =>
  ({ storeId, clientId, payload }) =>
    Effect.gen(function* () {
      const tokenOption = options.token
      const client = new RelayClient({
        url: options.url,
        clientId,
        sessionId: relaySessionId(storeId),
        token:
          typeof tokenOption === 'function' ? () => tokenOption({ storeId, clientId, payload }) : tokenOption,
        WebSocket: options.WebSocket,
        reconnect: options.reconnect,
        messagesPerSecond: options.messagesPerSecond,
        logger: options.logger,
      })
      const sync = new StoreSync({
        client,
        storeId,
        onFork: options.onFork,
        logger: options.logger,
        catchUpRetry: options.catchUpRetry,
      })
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          sync.dispose()
          client.close()
        }),
      )

      const isConnected = yield* SubscriptionRef.make(false)
      // Sets the value current when it runs, so that quick flips cannot land out of order.
      sync.onConnected(() => {
        Effect.runFork(Effect.suspend(() => SubscriptionRef.set(isConnected, sync.isConnected)))
      })

      return SyncBackend.of({
        isConnected,
        connect: Effect.sync(() => client.start()),
        pull: (cursor, pullOptions) =>
          Effect.gen(function* () {
            // Inside the leader the event log is at hand: answer other devices from it.
            const leader = yield* Effect.serviceOption(LeaderThreadCtx)
            if (Option.isSome(leader)) sync.useLog(leaderLog(leader.value.dbEventlog))
            const queue = yield* Effect.acquireRelease(Queue.unbounded<SyncBackend.PullResItem>(), Queue.shutdown)
            const start = Option.match(cursor, { onNone: () => 0, onSome: (c) => c.eventSequenceNumber as number })
            const detach = sync.attach(start, (item) => {
              Queue.unsafeOffer(queue, toPullResItem(item))
            })
            yield* Effect.addFinalizer(() => Effect.sync(detach))
            const stream = Stream.fromQueue(queue)
            return pullOptions?.live === true
              ? stream
              : stream.pipe(Stream.takeUntil((item) => item.pageInfo._tag === 'NoMore'))
          }).pipe(Stream.unwrapScoped),
        push: (batch) =>
          Effect.gen(function* () {
            if (batch.length === 0) return
            const outcome = yield* Effect.tryPromise({
              try: (signal) => sync.push(batch as readonly SeqEvent[], signal),
              catch: (cause) => new UnknownError({ cause }),
            })
            if (outcome._tag === 'serverAhead') {
              return yield* new ServerAheadError({
                minimumExpectedNum: EventSequenceNumber.Global.make(outcome.minimumExpected),
                providedNum: EventSequenceNumber.Global.make(outcome.provided),
              })
            }
            if (outcome._tag === 'error') return yield* new UnknownError({ cause: outcome.error })
          }),
        ping: Effect.suspend(() =>
          sync.isConnected ? Effect.void : Effect.fail(new IsOfflineError({ cause: 'not connected to the relay' })),
        ),
        metadata: {
          name: '@livestore-relay/client',
          description: 'LiveStore sync over livestore-relay: per-store head on the relay, history from peer devices',
          protocol: 'ws',
          url: options.url,
        },
        supports: { pullPageInfoKnown: true, pullLive: true },
      })
    })
