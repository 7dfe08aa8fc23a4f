// The leader worker: owns the OPFS databases and syncs the store through the relay.
import { makeWorker } from '@livestore/adapter-web/worker'
import { makeRelaySync } from '@livestore-relay/client'

import { fetchToken, forkChannel, OnlineWebSocket, syncUrl } from './relay.ts'
import { SyncPayload, schema } from './schema.ts'

makeWorker({
  schema,
  syncPayloadSchema: SyncPayload,
  sync: {
    backend: makeRelaySync({
      url: syncUrl(),
      // Called before every connection attempt, so an expired token is replaced.
      token: ({ payload }) => fetchToken((payload as typeof SyncPayload.Type).user),
      WebSocket: OnlineWebSocket,
      // A demo wants a quick comeback after a network change more than gentle backoff.
      reconnect: { initialMs: 200, maxMs: 2_000 },
      // Syncing of the store stops; the page offers to reset this device (src/main.ts).
      onFork: (fork) => new BroadcastChannel(forkChannel(fork.storeId)).postMessage(fork),
    }),
  },
})
