// Test kit: the real relay binary on 127.0.0.1, real JWTs, real LiveStore stores (adapter-node,
// file storage in temp folders), and a small TCP proxy that can take a device offline or cut a
// connection at a chosen moment.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { createHmac, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { makeAdapter } from '@livestore/adapter-node'
import type { SqliteDb, SyncBackend } from '@livestore/common'
import { LeaderThreadCtx } from '@livestore/common/leader-thread'
import { Events, Schema, State, type Store, createStorePromise, makeSchema } from '@livestore/livestore'
import { Effect, LogLevel, Option, Stream } from '@livestore/utils/effect'
import WebSocket from 'ws'

import { type ForkInfo, type Logger, RelayClient, type SeqEvent, type StoreHead, leaderLog, makeRelaySync } from '../src/index.ts'

// --- schema: a small todo app ---

export const todos = State.SQLite.table({
  name: 'todos',
  columns: {
    id: State.SQLite.text({ primaryKey: true }),
    text: State.SQLite.text({ default: '' }),
  },
})

export const events = {
  todoCreated: Events.synced({
    name: 'v1.TodoCreated',
    schema: Schema.Struct({ id: Schema.String, text: Schema.String }),
  }),
}

const materializers = State.SQLite.materializers(events, {
  'v1.TodoCreated': ({ id, text }) => todos.insert({ id, text }),
})

export const schema = makeSchema({ events, state: State.SQLite.makeState({ tables: { todos }, materializers }) })

// --- waiting ---

export const waitFor = async (
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

// --- the relay ---

const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
let builtRelay: string | undefined

/** RELAY_BIN, or the relay built from this repository (go build, cached by Go). */
export const relayBinary = (): string => {
  const fromEnv = process.env.RELAY_BIN
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  if (builtRelay !== undefined) return builtRelay
  const out = path.join(os.tmpdir(), `livestore-relay-client-test-${process.pid}`, 'relay')
  execFileSync('go', ['build', '-o', out, './cmd/relay'], { cwd: repoRoot, stdio: 'inherit' })
  builtRelay = out
  process.on('exit', () => fs.rmSync(path.dirname(out), { recursive: true, force: true }))
  return out
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address() as net.AddressInfo
      server.close(() => resolve(address.port))
    })
  })

const base64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url')

/** An HS256 JWT, as the relay's `relay token` makes. */
export const mintToken = (secret: string, sub: string, ttlSeconds = 3600): string => {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const now = Math.floor(Date.now() / 1000)
  const body = base64url(JSON.stringify({ sub, iat: now, exp: now + ttlSeconds }))
  const signature = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url')
  return `${header}.${body}.${signature}`
}

/** RELAY_LOG_LEVEL (default warn) and RELAY_LOG_FILE=/path/to/file: the relay's log, kept across restarts. */
export class Relay {
  readonly secret = randomBytes(24).toString('hex')
  private child: ChildProcess | undefined
  private output = ''

  private constructor(
    readonly port: number,
    readonly stateDir: string | undefined,
    private readonly extraArgs: readonly string[],
  ) {}

  static async start(options: { stateDir?: string; extraArgs?: readonly string[] } = {}): Promise<Relay> {
    const relay = new Relay(await freePort(), options.stateDir, options.extraArgs ?? [])
    await relay.launch()
    return relay
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/api/v1/livestore/sync`
  }

  token(sub = 'alice'): string {
    return mintToken(this.secret, sub)
  }

  get log(): string {
    return this.output
  }

  async launch(): Promise<void> {
    const args = ['--addr', `127.0.0.1:${this.port}`, '--jwt-secret', this.secret, '--log-level', process.env.RELAY_LOG_LEVEL || 'warn']
    if (this.stateDir !== undefined) args.push('--state-dir', this.stateDir)
    args.push(...this.extraArgs)
    const child = spawn(relayBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString()))
    child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()))
    const logFile = process.env.RELAY_LOG_FILE
    if (logFile) {
      child.stdout?.on('data', (chunk: Buffer) => fs.appendFileSync(logFile, chunk))
      child.stderr?.on('data', (chunk: Buffer) => fs.appendFileSync(logFile, chunk))
    }
    await waitFor('relay /healthz', async () => {
      if (child.exitCode !== null) throw new Error(`relay exited ${child.exitCode}: ${this.output}`)
      try {
        const response = await fetch(`http://127.0.0.1:${this.port}/healthz`)
        return response.status === 200
      } catch {
        return false
      }
    })
  }

  /** Stops the process: SIGTERM (drains, exits 0) or SIGKILL. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill(signal)
    await exited
    this.child = undefined
  }

  async restart(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    await this.stop(signal)
    await this.launch()
  }
}

/** The head the relay holds for a store, as a fresh connection joining with an empty head sees it. */
export const relayHead = async (relay: Relay, storeId: string): Promise<StoreHead | undefined> => {
  const client = new RelayClient({
    url: relay.url,
    clientId: 'probe',
    sessionId: 'probe',
    token: relay.token(),
    WebSocket,
  })
  client.start()
  try {
    await client.whenReady()
    const response = await client.pull({ storeId, head: { eventNumber: 0 } })
    return response.payload.head
  } finally {
    client.close()
  }
}

// --- a TCP proxy between one device and the relay ---

export class Proxy {
  readonly port: number
  private readonly server: net.Server
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket }>()
  private down = false
  /** Cut the connection instead of delivering the next ack (the relay has sent it). */
  cutOnNextAck = false
  acksCut = 0

  private constructor(port: number, server: net.Server) {
    this.port = port
    this.server = server
  }

  static async start(target: number): Promise<Proxy> {
    const port = await freePort()
    let proxy: Proxy | undefined
    const server = net.createServer((client) => proxy!.accept(client, target))
    proxy = new Proxy(port, server)
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    return proxy
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/api/v1/livestore/sync`
  }

  private accept(client: net.Socket, target: number): void {
    if (this.down) {
      client.destroy()
      return
    }
    const upstream = net.connect(target, '127.0.0.1')
    const pair = { client, upstream }
    this.pairs.add(pair)
    const close = (): void => {
      client.destroy()
      upstream.destroy()
      this.pairs.delete(pair)
    }
    client.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
    client.on('data', (chunk: Buffer) => upstream.write(chunk))
    upstream.on('data', (chunk: Buffer) => {
      // Server frames are not masked: the JSON is readable in the byte stream.
      if (this.cutOnNextAck && chunk.includes('"type":"ack"')) {
        this.cutOnNextAck = false
        this.acksCut++
        close()
        return
      }
      client.write(chunk)
    })
  }

  /** Takes the device offline (cuts its connections, refuses new ones) or back online. */
  setDown(down: boolean): void {
    this.down = down
    if (down) this.cutAll()
  }

  cutAll(): void {
    for (const pair of [...this.pairs]) {
      pair.client.destroy()
      pair.upstream.destroy()
    }
    this.pairs.clear()
  }

  async close(): Promise<void> {
    this.cutAll()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

// --- devices ---

/** DEBUG_RELAY_CLIENT=/path/to/file: the client's log lines, per device. */
const debugLogger = (clientId: string): Logger | undefined => {
  const file = process.env.DEBUG_RELAY_CLIENT
  if (file === undefined || file === '') return undefined
  return (level, message, fields) =>
    fs.appendFileSync(file, `${Date.now()} ${clientId} [${level}] ${message} ${JSON.stringify(fields ?? {})}\n`)
}

/** Wraps a backend to capture the leader's event log database (to compare devices' logs). */
const captureLeader =
  (inner: SyncBackend.SyncBackendConstructor, onDb: (db: SqliteDb) => void): SyncBackend.SyncBackendConstructor =>
  (args) =>
    inner(args).pipe(
      Effect.map((backend) => ({
        ...backend,
        pull: (cursor, options) =>
          Effect.gen(function* () {
            const ctx = yield* Effect.serviceOption(LeaderThreadCtx)
            if (Option.isSome(ctx)) onDb(ctx.value.dbEventlog)
            return backend.pull(cursor, options)
          }).pipe(Stream.unwrap),
      })),
    )

export interface DeviceOptions {
  readonly clientId: string
  readonly dir: string
  readonly url: string
  readonly token: string | (() => string)
  readonly storeId: string
  readonly blockingSyncTimeoutMs?: number
  readonly logger?: Logger
}

export class Device {
  private constructor(
    readonly options: DeviceOptions,
    readonly store: Store<typeof schema>,
    private readonly dbRef: { db: SqliteDb | undefined },
    /** Forks reported through onFork. */
    readonly forks: ForkInfo[],
  ) {}

  static async open(options: DeviceOptions): Promise<Device> {
    const forks: ForkInfo[] = []
    const dbRef: { db: SqliteDb | undefined } = { db: undefined }
    const backend = captureLeader(
      makeRelaySync({
        url: options.url,
        token: options.token,
        WebSocket,
        onFork: (fork) => forks.push(fork),
        reconnect: { initialMs: 50, maxMs: 400 },
        catchUpRetry: { initialMs: 100, maxMs: 500 },
        logger: options.logger ?? debugLogger(options.clientId),
      }),
      (db) => (dbRef.db = db),
    )
    const adapter = makeAdapter({
      storage: { type: 'fs', baseDirectory: options.dir },
      clientId: options.clientId,
      sessionId: 'main',
      sync: {
        backend,
        ...(options.blockingSyncTimeoutMs === undefined
          ? {}
          : { initialSyncOptions: { _tag: 'Blocking' as const, timeout: options.blockingSyncTimeoutMs } }),
      },
    })
    const store = await createStorePromise({
      schema,
      adapter,
      storeId: options.storeId,
      disableDevtools: true,
      logLevel: process.env.DEBUG_LIVESTORE === undefined ? LogLevel.Warning : LogLevel.Debug,
    })
    return new Device(options, store, dbRef, forks)
  }

  get clientId(): string {
    return this.options.clientId
  }

  /** The confirmed event log (the leader's, from its database). */
  confirmedLog(): readonly SeqEvent[] {
    const db = this.dbRef.db
    if (db === undefined) return []
    const log = leaderLog(db)
    return log.readConfirmed(1, log.confirmedHead(), Number.MAX_SAFE_INTEGER)
  }

  confirmedHead(): number {
    const db = this.dbRef.db
    return db === undefined ? 0 : leaderLog(db).confirmedHead()
  }

  /** Events the session has not yet handed to its leader. */
  pending(): number {
    return this.store.syncStatus().pendingCount
  }

  /** Events in the leader's log above the confirmed head: not yet confirmed by the relay. */
  unconfirmed(): number {
    const db = this.dbRef.db
    if (db === undefined) return 0
    const head = leaderLog(db).confirmedHead()
    return (
      db.select<{ n: number }>(`SELECT COUNT(*) AS n FROM eventlog WHERE seqNumGlobal > ? AND seqNumClient = 0`, [
        head,
      ] as never)[0]?.n ?? 0
    )
  }

  todoIds(): string[] {
    return this.store
      .query(todos.select('id'))
      .map((id) => String(id))
      .sort()
  }

  /**
   * Commits one todo. LiveStore 0.4.0 can apply an event twice, or lose the session's state, when a
   * session commits while its leader is rebasing onto events that just arrived (it happens with
   * any backend). A rebase needs an unconfirmed local event, so, while online, a device commits
   * only once it has nothing unconfirmed, in its session or its leader. Pushes of several
   * devices still collide on the relay and rebase: that is what the tests are for.
   */
  async commit(id: string, text = id, options: { offline?: boolean } = {}): Promise<void> {
    if (options.offline !== true) {
      await waitFor(
        `${this.clientId}: nothing unconfirmed`,
        () => this.pending() === 0 && this.unconfirmed() === 0,
        60_000,
      )
    }
    this.store.commit(events.todoCreated({ id, text }))
  }

  async shutdown(): Promise<void> {
    await this.store.shutdownPromise()
  }
}

export const tempDir = (prefix: string): string => fs.mkdtempSync(path.join(os.tmpdir(), `lsr-${prefix}-`))

/**
 * Every device has the same confirmed log (names, args, writers, numbers), the same head, nothing
 * pending in session or leader, and the same todos in its session.
 */
export const converged = (devices: readonly Device[], expectedCount?: number): boolean => {
  const logs = devices.map((device) => JSON.stringify(device.confirmedLog()))
  const heads = devices.map((device) => device.confirmedHead())
  const count = devices[0]!.confirmedLog().length
  // The sessions' state too: each event creates one todo.
  const todoLists = devices.map((device) => JSON.stringify(device.todoIds()))
  return (
    todoLists.every((list) => list === todoLists[0]) &&
    devices[0]!.todoIds().length === count &&
    logs.every((log) => log === logs[0]) &&
    heads.every((head) => head === heads[0] && head === count) &&
    devices.every((device) => device.pending() === 0 && device.unconfirmed() === 0) &&
    (expectedCount === undefined || count === expectedCount)
  )
}

export const describeDevices = (devices: readonly Device[]): string =>
  devices
    .map(
      (device) =>
        `${device.clientId}: head=${device.confirmedHead()} log=${device.confirmedLog().length} pending=${device.pending()} unconfirmed=${device.unconfirmed()} todos=${device.todoIds().length}`,
    )
    .join('; ')
