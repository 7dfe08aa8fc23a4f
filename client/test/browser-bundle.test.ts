// What browsers load: the package bundles for the browser with no Node built-in anywhere.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { build } from 'esbuild'

test('the package bundles for the browser without Node built-ins', async () => {
  const result = await build({
    entryPoints: [fileURLToPath(new URL('../src/index.ts', import.meta.url))],
    bundle: true,
    write: false,
    platform: 'browser',
    format: 'esm',
    // LiveStore and Effect are peer dependencies, loaded by the app itself.
    external: ['@livestore/*', 'effect', 'effect/*'],
    logLevel: 'silent',
  })
  assert.deepEqual(result.errors, [])
  const code = result.outputFiles[0]!.text
  assert.doesNotMatch(code, /from ["']node:|require\(["'](node:)?(fs|net|os|path|crypto|http|https|stream)["']\)/)
  const imports = [...code.matchAll(/from ["']([^"']+)["']/g)].map((m) => m[1]!)
  assert.ok(imports.every((name) => name.startsWith('@livestore/') || name.startsWith('effect')), imports.join(', '))
})
