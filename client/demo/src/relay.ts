// How the demo reaches the relay; shared by the page and the leader worker.

/** The relay's sync endpoint on this page's own origin (the dev server forwards it to the relay). */
export const syncUrl = (): string => {
  const url = new URL('/api/v1/livestore/sync', self.location.href)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  return url.toString()
}

/**
 * A token for `user`. The demo asks the relay's development-only endpoint; a real app asks its
 * own backend, which signs a JWT for the signed-in user (docs/LIVESTORE.md).
 */
export const fetchToken = async (user: string): Promise<string> => {
  const response = await fetch(`/dev/token?user=${encodeURIComponent(user)}`)
  if (!response.ok) throw new Error(`GET /dev/token: ${response.status} (is the relay running with --dev?)`)
  return (await response.text()).trim()
}

/**
 * Whether the browser is online, as this page or worker knows it. A page tells the others of its
 * profile (other tabs, the leader worker) what it sees: a worker does not always get the
 * `online`/`offline` events (DevTools' and Playwright's offline switches reach only pages).
 */
let online = self.navigator.onLine
const sockets = new Set<WebSocket>()
const network = new BroadcastChannel('livestore-relay-demo:network')
const setOnline = (value: boolean) => {
  online = value
  if (!online) for (const socket of sockets) socket.close(4000, 'browser offline')
}
network.onmessage = (event: MessageEvent<boolean>) => setOnline(event.data)
for (const [name, value] of [
  ['online', true],
  ['offline', false],
] as const) {
  self.addEventListener(name, () => {
    setOnline(value)
    network.postMessage(value)
  })
}

/**
 * The browser's WebSocket, except that it does not pretend to be connected while the browser is
 * offline: browsers keep an open socket through a network change until TCP gives up, which can
 * take minutes. Offline, a new socket fails at once and an open one closes, so the app shows
 * "offline" straight away and reconnects when the network is back.
 */
export class OnlineWebSocket extends WebSocket {
  constructor(url: string) {
    if (!online) throw new Error('the browser is offline')
    super(url)
    sockets.add(this)
    this.addEventListener('close', () => sockets.delete(this))
  }
}

/** Where the leader worker tells the pages of a store that its history forked. */
export const forkChannel = (storeId: string): string => `livestore-relay-demo:fork:${storeId}`
