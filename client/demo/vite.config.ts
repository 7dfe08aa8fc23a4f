import { fileURLToPath } from 'node:url'

import { createLogger, defineConfig } from 'vite'

// Where the relay listens; the server below forwards the sync channel and the dev token to it,
// so the page, its workers and the relay share one origin (and one URL to open).
const relay = process.env.RELAY_HTTP ?? 'http://127.0.0.1:8080'
const proxy = {
  '/api/v1/livestore/sync': { target: relay, ws: true },
  '/dev/token': { target: relay },
}

// A browser that goes away resets its forwarded socket; that is no error worth a stack trace.
const logger = createLogger()
const logError = logger.error
logger.error = (message, options) => {
  if (/ws proxy/.test(message) && /ECONNRESET|EPIPE/.test(`${message} ${options?.error?.message ?? ''}`)) return
  logError(message, options)
}

export default defineConfig({
  customLogger: logger,
  resolve: {
    // The client package is bundled from its source in this repository.
    alias: { '@livestore-relay/client': fileURLToPath(new URL('../src/index.ts', import.meta.url)) },
    // ...and its imports resolve to this app's copies: one LiveStore, one Effect in the bundle.
    dedupe: ['@livestore/common', '@livestore/utils', 'effect'],
  },
  worker: { format: 'es' },
  optimizeDeps: { exclude: ['@livestore/wa-sqlite'] },
  // The workers carry SQLite and LiveStore: large chunks are expected.
  build: { target: 'es2022', chunkSizeWarningLimit: 1500 },
  server: { host: '127.0.0.1', port: 5173, strictPort: true, proxy },
  preview: { host: '127.0.0.1', port: 5173, strictPort: true, proxy },
})
