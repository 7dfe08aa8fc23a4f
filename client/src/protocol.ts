/**
 * Wire types of the livestore-relay protocol (README "The protocol" and the sequenced-store
 * extension). Every message is one JSON object per WebSocket text frame.
 */

/** A JSON value as it travels inside `data`. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue }

/** One event as the relay carries it. `parentEventNumber` is required in sequenced stores. */
export interface RelayEvent {
  readonly eventName: string
  readonly eventNumber: number
  readonly parentEventNumber?: number
  readonly clientId: string
  readonly sessionId: string
  readonly timestamp: number
  readonly data: unknown
}

/** The last accepted event of a sequenced store; `{eventNumber: 0}` for an empty store. */
export interface StoreHead {
  readonly eventNumber: number
  readonly clientId?: string
  readonly sessionId?: string
}

export interface Envelope<TType extends string, TPayload> {
  readonly type: TType
  readonly clientId: string
  readonly sessionId: string
  readonly timestamp: number
  readonly payload: TPayload
}

export interface PushPayload {
  readonly events: readonly RelayEvent[]
  readonly storeId?: string
}

export interface PullPayload {
  readonly sinceTimestamp?: number
  readonly storeId?: string
  readonly head?: StoreHead
}

export interface PeerPullPayload {
  readonly requestId: string
  readonly sinceTimestamp: number
  readonly retentionDays?: number
  readonly targetClientId?: string
  readonly storeId?: string
  readonly sinceEventNumber?: number
}

export interface PeerPullResponsePayload {
  readonly requestId: string
  readonly events: readonly RelayEvent[]
  readonly hasMore: boolean
  readonly storeId?: string
  readonly head?: StoreHead
}

export interface AckPayload {
  readonly receivedCount: number
  readonly lastTimestamp: number
  readonly storeId?: string
  readonly head?: StoreHead
}

export interface PullResponsePayload {
  readonly events: readonly RelayEvent[]
  readonly fromClientId: string
  readonly hasMore: boolean
  readonly storeId?: string
  readonly head?: StoreHead
  readonly storePeers?: readonly string[]
}

/** Identifies the message an error answers, when the relay says so. */
export interface ErrorReplyTo {
  readonly type: string
  readonly requestId?: string
  readonly storeId?: string
}

export interface ErrorPayload {
  readonly storeId?: string
  readonly head?: StoreHead
  readonly replyTo?: ErrorReplyTo
}

export type ErrorCode =
  | 'invalid_message'
  | 'unsupported_type'
  | 'client_mismatch'
  | 'unknown_request'
  | 'limit_exceeded'
  | 'rate_limited'
  | 'internal_error'
  | 'store_conflict'
  | 'head_mismatch'

export type PushMessage = Envelope<'push', PushPayload>
export type PullMessage = Envelope<'pull', PullPayload>
export type PeerPullMessage = Envelope<'peer_pull', PeerPullPayload>
export type PeerPullResponseMessage = Envelope<'peer_pull_response', PeerPullResponsePayload>
export type AckMessage = Envelope<'ack', AckPayload>
export type PullResponseMessage = Envelope<'pull_response', PullResponsePayload> & {
  readonly onlinePeers: readonly string[]
}
export type ErrorMessage = {
  readonly type: 'error'
  readonly code: string
  readonly message: string
  readonly payload?: ErrorPayload
}

export type ServerMessage =
  | PushMessage
  | PeerPullMessage
  | PeerPullResponseMessage
  | AckMessage
  | PullResponseMessage
  | ErrorMessage

/** An error frame the relay sent in answer to one of this client's messages. */
export class RelayError extends Error {
  readonly code: string
  readonly payload: ErrorPayload | undefined
  constructor(code: string, message: string, payload?: ErrorPayload) {
    super(`${code}: ${message}`)
    this.name = 'RelayError'
    this.code = code
    this.payload = payload
  }
}

/** The connection closed before the answer came: the message may or may not have been applied. */
export class RelayDisconnectedError extends Error {
  constructor(message = 'connection to the relay closed before the answer arrived') {
    super(message)
    this.name = 'RelayDisconnectedError'
  }
}

/** The client was closed, or replaced by a newer connection of the same client and session (4002). */
export class RelayClosedError extends Error {
  constructor(message = 'relay client closed') {
    super(message)
    this.name = 'RelayClosedError'
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/** Parses one frame from the relay; undefined for anything that is not a known server message. */
export const parseServerMessage = (text: string): ServerMessage | undefined => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!isObject(value) || typeof value.type !== 'string') return undefined
  switch (value.type) {
    case 'error':
      return typeof value.code === 'string' ? (value as unknown as ErrorMessage) : undefined
    case 'push':
    case 'peer_pull':
    case 'peer_pull_response':
    case 'ack':
    case 'pull_response':
      return isObject(value.payload) ? (value as unknown as ServerMessage) : undefined
    default:
      return undefined
  }
}

export const isValidHead = (head: unknown): head is StoreHead =>
  isObject(head) && typeof head.eventNumber === 'number' && Number.isInteger(head.eventNumber) && head.eventNumber >= 0

/** Heads name the same event: same number and, above 0, the same writer. */
export const sameHead = (a: StoreHead, b: StoreHead): boolean =>
  a.eventNumber === b.eventNumber &&
  (a.eventNumber === 0 || (a.clientId === b.clientId && a.sessionId === b.sessionId))

const utf8 = new TextEncoder()

/** Bytes of a string once UTF-8 encoded, without allocating for ASCII-only strings. */
export const utf8Length = (text: string): number => {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(text) ? text.length : utf8.encode(text).length
}
