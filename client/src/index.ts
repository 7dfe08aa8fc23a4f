export { makeRelaySync, leaderLog, relaySessionId } from './livestore.ts'
export type { RelaySyncOptions, TokenContext } from './livestore.ts'
export { RelayClient } from './relay-client.ts'
export type {
  CloseInfo,
  IncomingPeerPull,
  LogLevel,
  Logger,
  PeerPullAnswer,
  PeerPullHandler,
  PeerPullPage,
  PeerPullRequest,
  RelayClientOptions,
  RelayClientStatus,
  RelayTransport,
  SendOptions,
  TokenSource,
  WebSocketConstructor,
  WebSocketLike,
} from './relay-client.ts'
export { MemoryLog, StoreSync } from './store-sync.ts'
export type { ForkInfo, LocalLog, PullItem, PushOutcome, StoreSyncOptions } from './store-sync.ts'
export { Sequencer, fromWire, sameEvent, toWire } from './sequencer.ts'
export type { OfferResult, SeqEvent } from './sequencer.ts'
export { RelayClosedError, RelayDisconnectedError, RelayError, parseServerMessage } from './protocol.ts'
export type * from './protocol.ts'
export { Backoff, TokenBucket } from './timing.ts'
