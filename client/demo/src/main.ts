// The page: opens the user's store (its leader worker syncs it through the relay), shows the
// todos, the connection, whether everything is synced, and the user's other devices online.
import { makePersistedAdapter } from '@livestore/adapter-web'
import LiveStoreSharedWorker from '@livestore/adapter-web/shared-worker?sharedworker'
import { createStorePromise, queryDb, Schema, StoreInternalsSymbol, type Store } from '@livestore/livestore'
import { Effect, Stream, type Subscribable } from '@livestore/utils/effect'
import { RelayClient } from '@livestore-relay/client'

import LiveStoreWorker from './livestore.worker.ts?worker'
import { fetchToken, forkChannel, OnlineWebSocket, syncUrl } from './relay.ts'
import { events, schema, todos } from './schema.ts'

const $ = <T extends HTMLElement>(testId: string): T => document.querySelector(`[data-testid="${testId}"]`) as T

/** `?user=bob` picks another user: another token, another store, nothing shared with alice. */
const user = (() => {
  const asked = new URLSearchParams(location.search).get('user') ?? 'alice'
  return /^[A-Za-z0-9_-]{1,32}$/.test(asked) ? asked : 'alice'
})()
const storeId = `todos-${user}`

/**
 * One id per browser profile: a private window or another profile is another device (and has
 * its own OPFS); tabs of one profile are one device and share its leader.
 */
const persistedId = (storage: Storage, key: string, prefix: string): string => {
  let id = storage.getItem(key)
  if (id === null) {
    id = `${prefix}-${Math.random().toString(36).slice(2, 8)}`
    storage.setItem(key, id)
  }
  return id
}
const clientId = persistedId(localStorage, 'livestore-relay-demo:device', 'device')
const tabId = persistedId(sessionStorage, 'livestore-relay-demo:tab', 'tab')

/** Set by "Reset this device" after a fork: the next start deletes this device's copy. */
const resetKey = `livestore-relay-demo:reset:${storeId}`
const resetPersistence = sessionStorage.getItem(resetKey) !== null
sessionStorage.removeItem(resetKey)

$('user').textContent = user
$('device').textContent = clientId
document.title = `Todos of ${user} · ${clientId}`

const adapter = makePersistedAdapter({
  storage: { type: 'opfs' },
  worker: LiveStoreWorker,
  sharedWorker: LiveStoreSharedWorker,
  clientId,
  resetPersistence,
})

// --- what the status line shows ---
const state = { connected: false, sessionPending: 0, leaderPending: 0, forked: false, peers: [] as string[] }

const setPill = (testId: string, text: string, tone: 'good' | 'busy' | 'bad') => {
  const el = $(testId)
  el.textContent = text
  el.className = `pill ${tone}`
}

const renderStatus = () => {
  setPill('connection', state.connected ? 'connected' : 'offline', state.connected ? 'good' : 'bad')
  const pending = Math.max(state.sessionPending, state.leaderPending)
  if (state.forked) setPill('sync-state', 'forked', 'bad')
  else if (!state.connected) setPill('sync-state', pending > 0 ? `offline, ${pending} pending` : 'offline', 'bad')
  else if (pending > 0) setPill('sync-state', `syncing, ${pending} pending`, 'busy')
  // Connected, and every change made here is confirmed by the relay.
  else setPill('sync-state', 'synced', 'good')
  $('peers').textContent = state.peers.length === 0 ? 'none' : state.peers.join(', ')
  $('fork').hidden = !state.forked
}

const follow = <A>(subscribable: Subscribable.Subscribable<A>, onValue: (value: A) => void) =>
  Effect.runFork(
    Stream.runForEach(Stream.concat(Stream.fromEffect(subscribable.get), subscribable.changes), (value) =>
      Effect.sync(() => onValue(value)),
    ),
  )

// --- the other devices online: a second connection of this device that only asks the relay ---
const presence = new RelayClient({
  url: syncUrl(),
  clientId,
  // Per tab: two tabs of one device must not replace each other's connection.
  sessionId: `presence-${tabId}`,
  token: () => fetchToken(user),
  WebSocket: OnlineWebSocket,
  reconnect: { initialMs: 200, maxMs: 2_000 },
})
presence.onStatus((status) => {
  if (status !== 'open') {
    state.peers = []
    renderStatus()
  }
})
const askWhoIsOnline = async () => {
  if (presence.status !== 'open') return
  try {
    const answer = await presence.pull()
    state.peers = [...answer.onlinePeers]
    renderStatus()
  } catch {
    // Disconnected meanwhile: onStatus has cleared the list.
  }
}
presence.onOpen(() => void askWhoIsOnline())
presence.start()
setInterval(askWhoIsOnline, 1_500)

// --- the store ---
const store: Store<typeof schema> = await createStorePromise({ schema, adapter, storeId, syncPayload: { user } })

follow(store.networkStatus, (status) => {
  state.connected = status.isConnected
  renderStatus()
})
// The leader's sync state: its pending events are those the relay has not confirmed yet.
follow(store[StoreInternalsSymbol].clientSession.leaderThread.syncState, (syncState) => {
  state.leaderPending = syncState.pending.length
  renderStatus()
})
store.subscribeSyncStatus((status) => {
  state.sessionPending = status.pendingCount
  renderStatus()
})
new BroadcastChannel(forkChannel(storeId)).onmessage = () => {
  state.forked = true
  renderStatus()
}
$('reset').addEventListener('click', async () => {
  sessionStorage.setItem(resetKey, '1')
  await store.shutdownPromise()
  location.reload()
})

// --- the list ---
const list = $<HTMLUListElement>('todo-list')
// In the order of the store's event log, the one order the relay keeps for every device: a row's
// rowid is the order its creation was applied in, and rebasing re-applies local events after the
// ones the relay put before them.
const visibleTodos$ = queryDb(
  {
    query: 'SELECT * FROM todos ORDER BY rowid',
    schema: Schema.Array(todos.rowSchema),
    queriedTables: new Set(['todos']),
  },
  { label: 'todos' },
)
store.subscribe(visibleTodos$, (rows) => {
  list.replaceChildren(
    ...rows.map((todo) => {
      const li = document.createElement('li')
      li.dataset.testid = 'todo-item'
      li.className = todo.completed ? 'done' : ''
      const box = document.createElement('input')
      box.type = 'checkbox'
      box.checked = todo.completed
      box.addEventListener('change', () => store.commit(events.todoToggled({ id: todo.id, completed: box.checked })))
      const text = document.createElement('span')
      text.textContent = todo.text
      const remove = document.createElement('button')
      remove.textContent = '✕'
      remove.title = 'Delete'
      remove.addEventListener('click', () => store.commit(events.todoDeleted({ id: todo.id })))
      li.append(box, text, remove)
      return li
    }),
  )
  $('todo-count').textContent = `${rows.length} ${rows.length === 1 ? 'todo' : 'todos'}`
})

const input = $<HTMLInputElement>('new-todo')
input.addEventListener('keydown', (event) => {
  if (event.key !== 'Enter' || input.value.trim() === '') return
  store.commit(events.todoCreated({ id: crypto.randomUUID(), text: input.value.trim(), createdAt: Date.now() }))
  input.value = ''
})

// For the browser test: a way to add many todos at once.
Object.assign(globalThis, {
  demo: {
    addMany: (texts: readonly string[]) =>
      store.commit(
        ...texts.map((text, i) => events.todoCreated({ id: crypto.randomUUID(), text, createdAt: Date.now() + i })),
      ),
  },
})
