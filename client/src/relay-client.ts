import {
  type AckPayload,
  type ErrorMessage,
  type PeerPullMessage,
  type PeerPullPayload,
  type PeerPullResponseMessage,
  type PeerPullResponsePayload,
  type PullPayload,
  type PullResponseMessage,
  type PushMessage,
  type RelayEvent,
  type StoreHead,
  RelayClosedError,
  RelayDisconnectedError,
  RelayError,
  parseServerMessage,
  utf8Length,
} from './protocol.ts'
import { Backoff, TokenBucket } from './timing.ts'

/** A token, or a function that returns a fresh one before every connection attempt. */
export type TokenSource = string | (() => string | Promise<string>)

/** What this client needs of a WebSocket: the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
}

export type WebSocketConstructor = new (url: string) => WebSocketLike

/** The handlers this client sets; kept apart from WebSocketLike so both implementations' event types fit. */
interface WebSocketHandlers {
  onopen: (() => void) | null
  onmessage: ((event: { readonly data: unknown }) => void) | null
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null
  onerror: (() => void) | null
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type Logger = (level: LogLevel, message: string, fields?: Readonly<Record<string, unknown>>) => void

export interface RelayClientOptions {
  /** The sync URL: `wss://host/api/v1/livestore/sync` (ws:// for local use). */
  readonly url: string
  /** This device's id, stable across restarts (1 to 128 bytes, not "server"). */
  readonly clientId: string
  /** The session on this device; a second connection with the same pair replaces the first. */
  readonly sessionId: string
  /** Sent as the `token` query parameter; absent: the browser sends the `auth_token` cookie. */
  readonly token?: TokenSource | undefined
  /** Defaults to globalThis.WebSocket; on Node 20 pass the `ws` package's. */
  readonly WebSocket?: WebSocketConstructor | undefined
  /** Reconnect delays: exponential from `initialMs` to `maxMs`, jittered. Default 250 ms to 15 s. */
  readonly reconnect?: { readonly initialMs?: number; readonly maxMs?: number } | undefined
  /** Outgoing messages per second (the relay allows 200 by default). Default 150, burst 100. */
  readonly messagesPerSecond?: number | undefined
  readonly messageBurst?: number | undefined
  /** The relay's message size limit. Default 1 MiB. */
  readonly maxMessageBytes?: number | undefined
  /** The relay's event count limit per message. Default 1000. */
  readonly maxEventsPerMessage?: number | undefined
  /**
   * Bytes of events one answer to a peer_pull may carry before it ends (with hasMore:false);
   * keeps a requester's queue at the relay under its bound. The requester asks again from where
   * it got to. Default 2 MiB.
   */
  readonly maxAnswerBytes?: number | undefined
  /** A peer_pull that gets no page for this long ends. Default 60 s (the relay's own timeout). */
  readonly peerPullTimeoutMs?: number | undefined
  readonly logger?: Logger | undefined
}

export type RelayClientStatus = 'idle' | 'connecting' | 'open' | 'closed'

/** A page of a peer_pull answer, from one responder (`fromClientId`), or from the relay itself ("server"). */
export interface PeerPullPage {
  readonly fromClientId: string
  readonly events: readonly RelayEvent[]
  readonly hasMore: boolean
  readonly storeId?: string | undefined
  readonly head?: StoreHead | undefined
}

/** A peer_pull in flight: iterate its pages; `close()` stops waiting for more. */
export interface PeerPullRequest extends AsyncIterable<PeerPullPage> {
  readonly requestId: string
  close(): void
}

/** What a device answers to another device's peer_pull. */
export interface PeerPullAnswer {
  /** Sent with every page (sequenced stores: the responder's confirmed head). */
  readonly head?: StoreHead | undefined
  readonly events: Iterable<RelayEvent> | AsyncIterable<RelayEvent>
}

export interface IncomingPeerPull {
  readonly fromClientId: string
  readonly payload: PeerPullPayload
}

export type PeerPullHandler = (request: IncomingPeerPull) => PeerPullAnswer | Promise<PeerPullAnswer>

export interface CloseInfo {
  readonly code: number
  readonly reason: string
}

export interface SendOptions {
  /**
   * Send before messages queued while (re)connecting, and do not wait for the open hooks: for the
   * messages an open hook itself sends (a store's join).
   */
  readonly urgent?: boolean | undefined
}

type AnswerKind = 'push' | 'pull'

interface PendingAnswer {
  readonly kind: AnswerKind
  readonly resolve: (value: AckPayload | PullResponseMessage) => void
  readonly reject: (error: Error) => void
}

interface Outgoing {
  readonly text: string
  /** Connection this message belongs to (answers to its requests); undefined: any. */
  readonly connection: number | undefined
  readonly answer: PendingAnswer | undefined
  readonly onSent?: (() => void) | undefined
}

const DEFAULTS = {
  reconnectInitialMs: 250,
  reconnectMaxMs: 15_000,
  messagesPerSecond: 150,
  messageBurst: 100,
  maxMessageBytes: 1024 * 1024,
  maxEventsPerMessage: 1000,
  maxAnswerBytes: 2 * 1024 * 1024,
  peerPullTimeoutMs: 60_000,
} as const

/** Room left in each page for the envelope and payload fields around the events. */
const ENVELOPE_SLACK_BYTES = 16 * 1024
/** A connection open this long resets the reconnect backoff. */
const STABLE_CONNECTION_MS = 3_000

let requestCounter = 0
const newRequestId = (): string => {
  requestCounter = (requestCounter + 1) % Number.MAX_SAFE_INTEGER
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}-${requestCounter}`
}

class PageQueue implements PeerPullRequest {
  private readonly pages: PeerPullPage[] = []
  private waiter: (() => void) | undefined
  private ended = false
  private failure: Error | undefined
  private timer: ReturnType<typeof setTimeout> | undefined

  constructor(
    readonly requestId: string,
    private readonly idleTimeoutMs: number,
    private readonly onDone: () => void,
  ) {
    this.arm()
  }

  private arm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = setTimeout(() => this.end(), this.idleTimeoutMs)
  }

  offer(page: PeerPullPage): void {
    if (this.ended) return
    this.pages.push(page)
    this.arm()
    this.wake()
  }

  fail(error: Error): void {
    if (this.ended) return
    this.failure = error
    this.end()
  }

  end(): void {
    if (this.ended) return
    this.ended = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.onDone()
    this.wake()
  }

  close(): void {
    this.end()
  }

  private wake(): void {
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.()
  }

  async *[Symbol.asyncIterator](): AsyncIterator<PeerPullPage> {
    try {
      while (true) {
        const page = this.pages.shift()
        if (page !== undefined) {
          yield page
          continue
        }
        if (this.ended) {
          if (this.failure !== undefined) throw this.failure
          return
        }
        await new Promise<void>((resolve) => {
          this.waiter = resolve
        })
      }
    } finally {
      this.end()
    }
  }
}

/**
 * A connection to the relay that stays up: it reconnects with jittered backoff, fetches a fresh
 * token before every attempt (so a 4001 close is followed by a new token), runs the open hooks
 * (joins) before anything queued, keeps outgoing traffic under the relay's rate, matches acks and
 * errors to the messages they answer, and answers other devices' peer_pulls in pages.
 */
export class RelayClient {
  private readonly options: RelayClientOptions
  private readonly WebSocketImpl: WebSocketConstructor
  private readonly backoff: Backoff
  private readonly bucket: TokenBucket
  private readonly maxMessageBytes: number
  private readonly maxEvents: number
  private readonly maxAnswerBytes: number
  private readonly peerPullTimeoutMs: number
  private readonly log: Logger

  private socket: WebSocketLike | undefined
  private statusValue: RelayClientStatus = 'idle'
  /** Increments with every socket; messages and answers are tied to the socket they went out on. */
  private connection = 0
  /** The open hooks have run for the current connection. */
  private ready = false
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  private stableTimer: ReturnType<typeof setTimeout> | undefined
  private pumpTimer: ReturnType<typeof setTimeout> | undefined

  private readonly urgentQueue: Outgoing[] = []
  private readonly queue: Outgoing[] = []
  private readonly pending: PendingAnswer[] = []
  private readonly peerPulls = new Map<string, PageQueue>()
  /** Answers this device is sending, by requester and requestId, so an unknown_request can stop one. */
  private readonly answering = new Map<string, { aborted: boolean }>()

  private readonly openHooks = new Set<() => void | Promise<void>>()
  private readonly statusListeners = new Set<(status: RelayClientStatus) => void>()
  private readonly pushListeners = new Set<(message: PushMessage) => void>()
  private readonly errorListeners = new Set<(error: RelayError) => void>()
  private readonly closeListeners = new Set<(info: CloseInfo) => void>()
  private readonly readyWaiters: Array<{ resolve: () => void; reject: (error: Error) => void }> = []
  private peerPullHandler: PeerPullHandler | undefined

  constructor(options: RelayClientOptions) {
    this.options = options
    const impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    if (impl === undefined) {
      throw new Error('no WebSocket implementation: pass options.WebSocket (on Node 20, the `ws` package)')
    }
    this.WebSocketImpl = impl
    this.backoff = new Backoff(
      options.reconnect?.initialMs ?? DEFAULTS.reconnectInitialMs,
      options.reconnect?.maxMs ?? DEFAULTS.reconnectMaxMs,
    )
    this.bucket = new TokenBucket(
      options.messagesPerSecond ?? DEFAULTS.messagesPerSecond,
      options.messageBurst ?? DEFAULTS.messageBurst,
    )
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULTS.maxMessageBytes
    this.maxEvents = options.maxEventsPerMessage ?? DEFAULTS.maxEventsPerMessage
    this.maxAnswerBytes = options.maxAnswerBytes ?? DEFAULTS.maxAnswerBytes
    this.peerPullTimeoutMs = options.peerPullTimeoutMs ?? DEFAULTS.peerPullTimeoutMs
    this.log = options.logger ?? (() => {})
  }

  get clientId(): string {
    return this.options.clientId
  }

  get sessionId(): string {
    return this.options.sessionId
  }

  get status(): RelayClientStatus {
    return this.statusValue
  }

  /** Connected and the open hooks have run. */
  get isReady(): boolean {
    return this.statusValue === 'open' && this.ready
  }

  /** Starts connecting (idempotent). */
  start(): void {
    if (this.statusValue !== 'idle') return
    void this.connect()
  }

  /** Closes for good: pending requests fail with RelayClosedError. */
  close(): void {
    if (this.statusValue === 'closed') return
    this.shutdown(new RelayClosedError())
    try {
      this.socket?.close(1000, 'client closed')
    } catch {
      // already closing
    }
    this.socket = undefined
  }

  onStatus(listener: (status: RelayClientStatus) => void): () => void {
    this.statusListeners.add(listener)
    return () => this.statusListeners.delete(listener)
  }

  /** Runs after every (re)connect, before messages queued meanwhile are sent. */
  onOpen(hook: () => void | Promise<void>): () => void {
    this.openHooks.add(hook)
    if (this.isReady) void Promise.resolve().then(hook)
    return () => this.openHooks.delete(hook)
  }

  /** Pushes other devices sent, as relayed. */
  onPush(listener: (message: PushMessage) => void): () => void {
    this.pushListeners.add(listener)
    return () => this.pushListeners.delete(listener)
  }

  /** Errors that answer none of this client's pending requests. */
  onError(listener: (error: RelayError) => void): () => void {
    this.errorListeners.add(listener)
    return () => this.errorListeners.delete(listener)
  }

  onClose(listener: (info: CloseInfo) => void): () => void {
    this.closeListeners.add(listener)
    return () => this.closeListeners.delete(listener)
  }

  /** Answers other devices' peer_pulls; without a handler they get an empty answer. */
  setPeerPullHandler(handler: PeerPullHandler | undefined): void {
    this.peerPullHandler = handler
  }

  /** Resolves once connected and the open hooks have run. */
  whenReady(): Promise<void> {
    if (this.isReady) return Promise.resolve()
    if (this.statusValue === 'closed') return Promise.reject(new RelayClosedError())
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }))
  }

  /** Sends a push; resolves with the ack, rejects with RelayError (head_mismatch…) or RelayDisconnectedError. */
  push(events: readonly RelayEvent[], payload?: { readonly storeId?: string }, options?: SendOptions): Promise<AckPayload> {
    const body = payload?.storeId === undefined ? { events } : { events, storeId: payload.storeId }
    return this.request('push', body, options) as Promise<AckPayload>
  }

  /** Sends a pull (binds the connection; with storeId, joins that store). */
  pull(payload: PullPayload = {}, options?: SendOptions): Promise<PullResponseMessage> {
    return this.request('pull', payload, options) as Promise<PullResponseMessage>
  }

  /** Asks the other devices for history; pages arrive as they come. */
  peerPull(payload: Omit<PeerPullPayload, 'requestId'> & { readonly requestId?: string }): PeerPullRequest {
    const requestId = payload.requestId ?? newRequestId()
    const request = new PageQueue(requestId, this.peerPullTimeoutMs, () => {
      if (this.peerPulls.get(requestId) === request) this.peerPulls.delete(requestId)
    })
    if (this.statusValue === 'closed') {
      request.fail(new RelayClosedError())
      return request
    }
    if (this.statusValue !== 'open') {
      request.fail(new RelayDisconnectedError('not connected'))
      return request
    }
    this.peerPulls.set(requestId, request)
    this.enqueue({
      text: this.encode('peer_pull', { ...payload, requestId }),
      connection: this.connection,
      answer: undefined,
    })
    return request
  }

  // --- connection ---

  /** Read through a method: the status can change across an await. */
  private isClosed(): boolean {
    return this.statusValue === 'closed'
  }

  private setStatus(status: RelayClientStatus): void {
    if (this.statusValue === status) return
    this.statusValue = status
    for (const listener of this.statusListeners) listener(status)
  }

  private async connect(): Promise<void> {
    if (this.statusValue === 'closed') return
    this.setStatus('connecting')
    let url: string
    try {
      url = await this.urlWithToken()
    } catch (error) {
      this.log('warn', 'token source failed', { error: String(error) })
      this.scheduleReconnect(this.backoff.next())
      return
    }
    if (this.isClosed()) return
    let socket: WebSocketLike
    try {
      socket = new this.WebSocketImpl(url)
    } catch (error) {
      this.log('warn', 'WebSocket construction failed', { error: String(error) })
      this.scheduleReconnect(this.backoff.next())
      return
    }
    const connection = ++this.connection
    this.socket = socket
    this.ready = false
    const handlers = socket as unknown as WebSocketHandlers
    handlers.onopen = () => {
      if (connection !== this.connection) return
      this.setStatus('open')
      this.stableTimer = setTimeout(() => this.backoff.reset(), STABLE_CONNECTION_MS)
      void this.runOpenHooks(connection)
    }
    handlers.onmessage = (event) => {
      if (connection !== this.connection) return
      if (typeof event.data === 'string') this.dispatch(event.data)
    }
    handlers.onerror = () => {}
    handlers.onclose = (event) => {
      if (connection !== this.connection) return
      this.onSocketClosed({ code: event.code, reason: event.reason })
    }
  }

  private async urlWithToken(): Promise<string> {
    const source = this.options.token
    if (source === undefined) return this.options.url
    const token = typeof source === 'string' ? source : await source()
    const url = new URL(this.options.url)
    url.searchParams.set('token', token)
    return url.toString()
  }

  private async runOpenHooks(connection: number): Promise<void> {
    this.pump()
    for (const hook of [...this.openHooks]) {
      try {
        await hook()
      } catch (error) {
        this.log('warn', 'open hook failed', { error: String(error) })
      }
      if (connection !== this.connection || this.statusValue !== 'open') return
    }
    this.ready = true
    const waiters = this.readyWaiters.splice(0)
    for (const waiter of waiters) waiter.resolve()
    this.pump()
  }

  private onSocketClosed(info: CloseInfo): void {
    this.socket = undefined
    this.ready = false
    if (this.stableTimer !== undefined) clearTimeout(this.stableTimer)
    this.log(info.code === 1000 ? 'debug' : 'info', 'relay connection closed', { code: info.code, reason: info.reason })
    for (const listener of this.closeListeners) listener(info)
    if (this.statusValue === 'closed') return
    if (info.code === 4002) {
      // Another connection of this client and session took over; coming back would take it
      // back from that one, and so on for ever.
      this.shutdown(new RelayClosedError('replaced by a newer connection of the same client and session (4002)'))
      return
    }
    this.dropConnectionState(new RelayDisconnectedError())
    this.setStatus('connecting')
    // 4001: the token expired; the next attempt fetches a fresh one straight away.
    this.scheduleReconnect(info.code === 4001 ? 0 : this.backoff.next())
  }

  private scheduleReconnect(delayMs: number): void {
    if (this.statusValue === 'closed') return
    this.setStatus('connecting')
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      void this.connect()
    }, delayMs)
  }

  /** Fails what was tied to the closed socket; app messages not yet sent wait for the next one. */
  private dropConnectionState(error: Error): void {
    const pending = this.pending.splice(0)
    for (const answer of pending) answer.reject(error)
    const keep = (item: Outgoing): boolean => {
      if (item.connection !== undefined) {
        item.answer?.reject(error)
        return false
      }
      return true
    }
    this.filterInPlace(this.urgentQueue, keep)
    this.filterInPlace(this.queue, keep)
    for (const request of [...this.peerPulls.values()]) request.fail(error)
    this.peerPulls.clear()
    for (const job of this.answering.values()) job.aborted = true
    this.answering.clear()
  }

  private filterInPlace(items: Outgoing[], keep: (item: Outgoing) => boolean): void {
    let j = 0
    for (const item of items) if (keep(item)) items[j++] = item
    items.length = j
  }

  private shutdown(error: Error): void {
    this.setStatus('closed')
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer)
    if (this.stableTimer !== undefined) clearTimeout(this.stableTimer)
    if (this.pumpTimer !== undefined) clearTimeout(this.pumpTimer)
    this.dropConnectionState(error)
    for (const item of [...this.urgentQueue, ...this.queue]) item.answer?.reject(error)
    this.urgentQueue.length = 0
    this.queue.length = 0
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(error)
  }

  // --- sending ---

  private encode(type: string, payload: object): string {
    return JSON.stringify({
      type,
      clientId: this.options.clientId,
      sessionId: this.options.sessionId,
      timestamp: Date.now(),
      payload,
    })
  }

  private request(
    kind: AnswerKind,
    payload: object,
    options: SendOptions | undefined,
  ): Promise<AckPayload | PullResponseMessage> {
    if (this.statusValue === 'closed') return Promise.reject(new RelayClosedError())
    return new Promise((resolve, reject) => {
      const answer: PendingAnswer = { kind, resolve, reject }
      const text = this.encode(kind, payload)
      if (options?.urgent === true) {
        if (this.statusValue !== 'open') {
          reject(new RelayDisconnectedError('not connected'))
          return
        }
        this.urgentQueue.push({ text, connection: this.connection, answer })
      } else {
        this.queue.push({ text, connection: undefined, answer })
      }
      this.pump()
    })
  }

  private enqueue(item: Outgoing): void {
    this.urgentQueue.push(item)
    this.pump()
  }

  private pump(): void {
    if (this.pumpTimer !== undefined) return
    while (this.socket !== undefined && this.statusValue === 'open') {
      const fromUrgent = this.urgentQueue.length > 0
      if (!fromUrgent && (!this.ready || this.queue.length === 0)) return
      const wait = this.bucket.take()
      if (wait > 0) {
        this.pumpTimer = setTimeout(() => {
          this.pumpTimer = undefined
          this.pump()
        }, wait)
        return
      }
      const item = (fromUrgent ? this.urgentQueue : this.queue).shift()
      if (item === undefined) return
      if (item.connection !== undefined && item.connection !== this.connection) {
        item.answer?.reject(new RelayDisconnectedError())
        continue
      }
      try {
        this.socket.send(item.text)
      } catch (error) {
        item.answer?.reject(new RelayDisconnectedError(`send failed: ${String(error)}`))
        continue
      }
      if (item.answer !== undefined) this.pending.push(item.answer)
      item.onSent?.()
    }
  }

  // --- receiving ---

  private dispatch(text: string): void {
    const message = parseServerMessage(text)
    if (message === undefined) {
      this.log('warn', 'unreadable message from the relay')
      return
    }
    switch (message.type) {
      case 'ack':
        this.settle('push', (answer) => answer.resolve(message.payload))
        return
      case 'pull_response':
        this.settle('pull', (answer) => answer.resolve(message))
        return
      case 'error':
        this.onErrorMessage(message)
        return
      case 'push':
        for (const listener of this.pushListeners) listener(message)
        return
      case 'peer_pull':
        void this.answerPeerPull(message)
        return
      case 'peer_pull_response':
        this.onPeerPullResponse(message)
        return
    }
  }

  /** Answers come in the order of the messages they answer: the oldest pending one of that kind. */
  private settle(kind: AnswerKind | undefined, apply: (answer: PendingAnswer) => void): boolean {
    const index = kind === undefined ? 0 : this.pending.findIndex((answer) => answer.kind === kind)
    const answer = index >= 0 ? this.pending[index] : undefined
    if (answer === undefined) return false
    this.pending.splice(index, 1)
    apply(answer)
    return true
  }

  private onErrorMessage(message: ErrorMessage): void {
    const error = new RelayError(message.code, message.message, message.payload)
    const replyTo = message.payload?.replyTo
    if (replyTo !== undefined) {
      switch (replyTo.type) {
        case 'push':
        case 'pull':
          if (this.settle(replyTo.type, (answer) => answer.reject(error))) return
          break
        case 'peer_pull': {
          const request = replyTo.requestId === undefined ? undefined : this.peerPulls.get(replyTo.requestId)
          if (request !== undefined) {
            request.fail(error)
            return
          }
          break
        }
        case 'peer_pull_response':
          if (replyTo.requestId !== undefined) {
            for (const [key, job] of this.answering) if (key.endsWith(`\u0000${replyTo.requestId}`)) job.aborted = true
          }
          return
      }
      this.emitError(error)
      return
    }
    // A relay that does not say which message an error answers: errors that only a push or a
    // pull can get go to the oldest pending one of that kind, others to the oldest pending at all.
    switch (message.code) {
      case 'head_mismatch':
        if (this.settle('push', (answer) => answer.reject(error))) return
        break
      case 'store_conflict':
        if (this.settle('pull', (answer) => answer.reject(error))) return
        break
      case 'unknown_request':
        return
      default:
        if (this.settle(undefined, (answer) => answer.reject(error))) return
    }
    this.emitError(error)
  }

  private emitError(error: RelayError): void {
    this.log('warn', 'relay error', { code: error.code, message: error.message })
    for (const listener of this.errorListeners) listener(error)
  }

  private onPeerPullResponse(message: PeerPullResponseMessage): void {
    const payload = message.payload
    const request = this.peerPulls.get(payload.requestId)
    if (request === undefined) return
    const page: PeerPullPage = {
      fromClientId: message.clientId,
      events: Array.isArray(payload.events) ? payload.events : [],
      hasMore: payload.hasMore === true,
      storeId: payload.storeId,
      head: payload.head,
    }
    request.offer(page)
    // The relay answered itself: nobody else will.
    if (message.clientId === 'server') request.end()
  }

  private async answerPeerPull(message: PeerPullMessage): Promise<void> {
    const payload = message.payload
    if (typeof payload.requestId !== 'string') return
    const connection = this.connection
    const key = `${message.clientId}\u0000${payload.requestId}`
    const job = { aborted: false }
    const previous = this.answering.get(key)
    if (previous !== undefined) previous.aborted = true
    this.answering.set(key, job)
    const base = {
      requestId: payload.requestId,
      ...(payload.storeId === undefined ? {} : { storeId: payload.storeId }),
    }
    let head: StoreHead | undefined
    const sendPage = (events: RelayEvent[], hasMore: boolean): void => {
      if (job.aborted || connection !== this.connection) return
      const body: PeerPullResponsePayload = { ...base, events, hasMore, ...(head === undefined ? {} : { head }) }
      this.enqueue({ text: this.encode('peer_pull_response', body), connection, answer: undefined })
    }
    try {
      const answer =
        this.peerPullHandler === undefined
          ? { events: [] as RelayEvent[] }
          : await this.peerPullHandler({ fromClientId: message.clientId, payload })
      head = answer.head
      const budget = this.maxMessageBytes - ENVELOPE_SLACK_BYTES
      let page: RelayEvent[] = []
      let pageBytes = 0
      let answerBytes = 0
      for await (const event of answer.events) {
        if (job.aborted || connection !== this.connection) return
        const size = utf8Length(JSON.stringify(event)) + 1
        if (size > budget) {
          this.log('error', 'an event is larger than a message may be; the answer ends before it', {
            eventNumber: event.eventNumber,
          })
          break
        }
        if (answerBytes + size > this.maxAnswerBytes) break
        if (page.length >= this.maxEvents || pageBytes + size > budget) {
          sendPage(page, true)
          page = []
          pageBytes = 0
          await this.drained(connection)
        }
        page.push(event)
        pageBytes += size
        answerBytes += size
      }
      sendPage(page, false)
    } catch (error) {
      this.log('warn', 'answering a peer_pull failed', { error: String(error) })
      sendPage([], false)
    } finally {
      if (this.answering.get(key) === job) this.answering.delete(key)
    }
  }

  /** Waits until the urgent queue is short, so a long answer does not pile up in memory. */
  private async drained(connection: number): Promise<void> {
    while (this.urgentQueue.length > 4 && connection === this.connection && this.statusValue === 'open') {
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }
}

/** The part of RelayClient a sequenced store uses (a test can stand in for it). */
export type RelayTransport = Pick<
  RelayClient,
  'status' | 'start' | 'onPush' | 'onClose' | 'onStatus' | 'onOpen' | 'setPeerPullHandler' | 'pull' | 'push' | 'peerPull'
>
