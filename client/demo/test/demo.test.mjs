// The demo in a real browser: Debian's chromium driven by playwright-core, each browser context
// a device (its own OPFS, localStorage and so its own clientId), the relay binary in development
// mode, and the built app served by vite preview, which forwards the sync channel to the relay.
// Assertions are on what the pages show.
//
// Run by `make demo-test` (which builds the relay and the app first). Environment:
//   RELAY_BIN        the relay binary (default ../../bin/relay)
//   CHROMIUM_PATH    the browser (default /usr/bin/chromium)
//   DEMO_SCREENSHOT  where to write the side-by-side screenshot of two devices (default: none)
//
// LiveStore 0.4.0 can apply an event twice when a session commits while its own leader is
// rebasing onto events that just arrived ("UNIQUE constraint failed"; the store shuts down). So
// while online, a device here waits until its page shows `synced` before its next add; writes of
// two devices still meet on the relay (head_mismatch) and rebase, which is what is tested.

import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { after, before, describe, test } from 'node:test'

import { chromium } from 'playwright-core'

import { startDemo } from '../serve.mjs'

const relayBin = process.env.RELAY_BIN ?? fileURLToPath(new URL('../../../bin/relay', import.meta.url))
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const WAIT_MS = 30_000

/** Polls `check` until it returns a value other than undefined; fails with `what` and the last state. */
const until = async (what, check, { timeout = WAIT_MS, describe: show } = {}) => {
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}${show ? `: ${await show()}` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

let demo
let browser
let baseUrl
const users = new Map()

/** A user of its own per test, so that tests share no store (another room on the relay too). */
const newUser = (name) => {
  const n = (users.get(name) ?? 0) + 1
  users.set(name, n)
  return n === 1 ? name : `${name}${n}`
}

/** A device: one browser context (a profile) with one page on the app. */
class Device {
  constructor(context, page, name) {
    this.context = context
    this.page = page
    this.name = name
  }

  static async open(user, name) {
    const context = await browser.newContext({ viewport: { width: 620, height: 470 } })
    const device = new Device(context, await context.newPage(), name)
    await device.goto(user)
    return device
  }

  async goto(user) {
    this.user = user
    this.page.on('pageerror', (error) => console.error(`[${this.name}] ${error}`))
    await this.page.goto(`${baseUrl}/?user=${encodeURIComponent(user)}`)
    await this.page.locator('[data-testid="sync-state"]').waitFor()
  }

  /** Closes the page (and with it the leader worker) and opens the app again in the same profile. */
  async reopen(between = async () => {}) {
    await this.page.close()
    await between()
    this.page = await this.context.newPage()
    await this.goto(this.user)
  }

  text(testId) {
    return this.page.locator(`[data-testid="${testId}"]`).innerText()
  }

  todos() {
    return this.page.locator('[data-testid="todo-item"] span').allInnerTexts()
  }

  async state() {
    const all = await this.todos()
    const todos = all.length <= 12 ? all.join(', ') : `${all.length} todos`
    return `${this.name}: ${await this.text('connection')} / ${await this.text('sync-state')} / [${todos}]`
  }

  /** Waits until the element `testId` shows exactly `text`. */
  async shows(testId, text, timeout = WAIT_MS) {
    const check = async () => ((await this.text(testId)) === text ? true : undefined)
    await until(`${this.name}: ${testId} "${text}"`, check, { timeout, describe: () => this.state() })
  }

  waitSynced() {
    return this.shows('sync-state', 'synced')
  }

  /** Types a todo and presses Enter; online, first waits until everything here is synced (see the top). */
  async add(text, { offline = false } = {}) {
    if (!offline) await this.waitSynced()
    const input = this.page.locator('[data-testid="new-todo"]')
    await input.fill(text)
    await input.press('Enter')
    await until(`${this.name} shows ${text}`, async () => ((await this.todos()).includes(text) ? true : undefined))
  }

  async close() {
    await this.context.close()
  }
}

/**
 * Waits until every device is synced and shows the same list, `expected` when given. The app lists
 * todos in the order of the store's event log, so "the same list" includes the same order.
 */
const converge = async (devices, expected) => {
  const states = () => Promise.all(devices.map((device) => device.state())).then((all) => all.join('\n'))
  return until(
    'the devices to converge',
    async () => {
      const lists = await Promise.all(devices.map((device) => device.todos()))
      const syncs = await Promise.all(devices.map((device) => device.text('sync-state')))
      const first = JSON.stringify(lists[0])
      const same = lists.every((list) => JSON.stringify(list) === first) && syncs.every((s) => s === 'synced')
      if (!same) return undefined
      if (expected !== undefined && first !== JSON.stringify(expected)) return undefined
      return lists[0]
    },
    { describe: states },
  )
}

before(async () => {
  demo = await startDemo({ relayBin })
  baseUrl = demo.url.replace(/\/$/, '')
  // As root Chromium needs --no-sandbox; a container's small /dev/shm would crash its renderers.
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
})

after(async () => {
  await browser?.close()
  await demo?.close()
})

describe('two devices of one user', () => {
  test('a todo added on one device appears on the other, and each sees the other online', async () => {
    const user = newUser('alice')
    const laptop = await Device.open(user, 'laptop')
    const phone = await Device.open(user, 'phone')
    const phoneId = await phone.text('device')
    const laptopId = await laptop.text('device')
    assert.notEqual(phoneId, laptopId, 'two browser profiles are two devices')
    await until('each device to see the other online', async () =>
      (await laptop.text('peers')) === phoneId && (await phone.text('peers')) === laptopId ? true : undefined,
    )

    await laptop.add('buy milk')
    await until('the phone to show the laptop\'s todo', async () =>
      JSON.stringify(await phone.todos()) === '["buy milk"]' ? true : undefined,
    )
    await phone.add('call the plumber')
    assert.deepEqual(await converge([laptop, phone]), ['buy milk', 'call the plumber'])

    // Another user is another room and another store: bob sees none of alice's todos.
    const bob = await Device.open(newUser('bob'), 'bob')
    await bob.waitSynced()
    assert.deepEqual(await bob.todos(), [])
    assert.equal(await bob.text('peers'), 'none')

    await bob.close()

    // Ticking a todo done travels too.
    await phone.waitSynced()
    await phone.page.locator('[data-testid="todo-item"]', { hasText: 'buy milk' }).getByRole('checkbox').check()
    await until("the laptop to show the phone's tick", async () =>
      (await laptop.page.locator('[data-testid="todo-item"].done span').allInnerTexts()).join() === 'buy milk'
        ? true
        : undefined,
    )
    if (process.env.DEMO_SCREENSHOT) {
      await laptop.add('water the plants')
      await converge([laptop, phone], ['buy milk', 'call the plumber', 'water the plants'])
      await screenshotSideBySide([laptop, phone], process.env.DEMO_SCREENSHOT)
    }
    await Promise.all([laptop.close(), phone.close()])
  })

  test('both add at once and end with the same list in the same order', async () => {
    const user = newUser('alice')
    const laptop = await Device.open(user, 'laptop')
    const phone = await Device.open(user, 'phone')
    const series = (device, prefix) =>
      (async () => {
        for (let i = 1; i <= 5; i++) await device.add(`${prefix} ${i}`)
      })()
    await Promise.all([series(laptop, 'laptop'), series(phone, 'phone')])
    // The relay decides how the two series interleave; each device's own todos keep their order.
    const list = await converge([laptop, phone])
    assert.equal(list.length, 10)
    for (const prefix of ['laptop', 'phone']) {
      assert.deepEqual(
        list.filter((text) => text.startsWith(prefix)),
        [1, 2, 3, 4, 5].map((i) => `${prefix} ${i}`),
      )
    }
    await Promise.all([laptop.close(), phone.close()])
  })

  test('a device offline keeps working and converges when it comes back', async () => {
    const user = newUser('alice')
    const laptop = await Device.open(user, 'laptop')
    const phone = await Device.open(user, 'phone')
    await laptop.add('before')
    await converge([laptop, phone], ['before'])

    await phone.context.setOffline(true)
    await phone.shows('connection', 'offline')
    await laptop.shows('peers', 'none')
    await phone.add('written offline', { offline: true })
    await laptop.add('written while the phone was away')
    // The relay has the laptop's todo before the phone comes back, so the phone's goes after it.
    await laptop.shows('sync-state', 'synced')
    await phone.shows('sync-state', 'offline, 1 pending')
    assert.deepEqual(await phone.todos(), ['before', 'written offline'])

    await phone.context.setOffline(false)
    // The phone rebases its todo onto the laptop's.
    await converge([laptop, phone], ['before', 'written while the phone was away', 'written offline'])
    await Promise.all([laptop.close(), phone.close()])
  })

  test('a reload keeps the data on the device and catches up with what it missed', async () => {
    const user = newUser('alice')
    const laptop = await Device.open(user, 'laptop')
    const phone = await Device.open(user, 'phone')
    await laptop.add('one')
    await phone.add('two')
    await converge([laptop, phone], ['one', 'two'])

    // The laptop reloads while the phone is offline: what it shows comes from its own OPFS (the
    // relay keeps no events, and no other device is online).
    await phone.context.setOffline(true)
    await phone.shows('connection', 'offline')
    await phone.add('three', { offline: true })
    await laptop.page.reload()
    await until('the laptop to show its todos after the reload', async () =>
      JSON.stringify(await laptop.todos()) === '["one","two"]' ? true : undefined,
    )
    await laptop.waitSynced()
    assert.equal(await laptop.text('peers'), 'none')

    // The phone comes back: it pushes "three", and the reloaded laptop receives it.
    await phone.context.setOffline(false)
    await converge([laptop, phone], ['one', 'two', 'three'])

    // Closed while the phone adds "four", the laptop opens again and gets it from the phone.
    await laptop.reopen(() => phone.add('four'))
    await converge([laptop, phone], ['one', 'two', 'three', 'four'])
    await Promise.all([laptop.close(), phone.close()])
  })

  test('a third, fresh device joins and receives the whole list', async () => {
    const user = newUser('alice')
    const laptop = await Device.open(user, 'laptop')
    const phone = await Device.open(user, 'phone')
    for (const [device, text] of [
      [laptop, 'a'],
      [phone, 'b'],
      [laptop, 'c'],
      [phone, 'd'],
    ]) {
      await device.add(text)
    }
    // An add does not wait for the other device to have the previous one: the relay may order
    // them either way, and both devices show its order.
    const list = await converge([laptop, phone])
    assert.deepEqual([...list].sort(), ['a', 'b', 'c', 'd'])
    const tablet = await Device.open(user, 'tablet')
    assert.deepEqual(await converge([laptop, phone, tablet]), list)
    await tablet.add('from the tablet')
    await converge([laptop, phone, tablet], [...list, 'from the tablet'])
    await Promise.all([laptop.close(), phone.close(), tablet.close()])
  })
})

const seconds = (since) => ((performance.now() - since) / 1000).toFixed(2)

test('a fresh device catches up with 1,000 todos (timed, for information)', async () => {
  const user = newUser('alice')
  const laptop = await Device.open(user, 'laptop')
  await laptop.waitSynced()
  const texts = Array.from({ length: 1000 }, (_, i) => `todo ${String(i + 1).padStart(4, '0')}`)
  const committed = performance.now()
  await laptop.page.evaluate((all) => globalThis.demo.addMany(all), texts)
  await laptop.shows('todo-count', '1000 todos', 120_000)
  await laptop.shows('sync-state', 'synced', 120_000)
  console.log(`laptop: 1,000 todos committed at once, all confirmed by the relay after ${seconds(committed)} s`)

  const started = performance.now()
  const fresh = await Device.open(user, 'fresh')
  const opened = performance.now()
  await fresh.shows('todo-count', '1000 todos', 120_000)
  console.log(
    `fresh device: 1,000 todos shown ${seconds(started)} s after it started loading ` +
      `(page up after ${((opened - started) / 1000).toFixed(2)} s)`,
  )
  assert.deepEqual(await fresh.todos(), texts)
  await Promise.all([laptop.close(), fresh.close()])
})

test('a fork: the device with the other history is told, and a reset gives it the store\'s history', async () => {
  const user = newUser('carol')
  const laptop = await Device.open(user, 'laptop')
  const phone = await Device.open(user, 'phone')
  const offline = async (device, value) => {
    await device.context.setOffline(value)
    if (value) await device.shows('connection', 'offline')
  }
  await laptop.add('x')
  await converge([laptop, phone], ['x'])

  // With the phone away, the laptop's "y" becomes event 2.
  await offline(phone, true)
  await laptop.add('y (laptop)')
  await laptop.waitSynced()
  // The relay restarts without a state directory, forgetting the head, while the laptop is away.
  await offline(laptop, true)
  await demo.restartRelay()
  // The phone comes back first: the relay takes its head (event 1), and its "z" becomes event 2.
  await offline(phone, false)
  await phone.add('z (phone)')
  await phone.waitSynced()
  // Back online, the laptop has another event 2 than the store: a fork. Its data stays as it is.
  await offline(laptop, false)
  await laptop.shows('sync-state', 'forked')
  assert.equal(await laptop.page.locator('[data-testid="fork"]').isVisible(), true)
  assert.deepEqual(await laptop.todos(), ['x', 'y (laptop)'])
  assert.deepEqual(await phone.todos(), ['x', 'z (phone)'])

  // "Reset this device" deletes the laptop's copy; it takes the store's history from the phone.
  await laptop.page.locator('[data-testid="reset"]').click()
  await converge([laptop, phone], ['x', 'z (phone)'])
  assert.equal(await laptop.page.locator('[data-testid="fork"]').isVisible(), false)
  await laptop.add('after the reset')
  await converge([laptop, phone], ['x', 'z (phone)', 'after the reset'])
  await Promise.all([laptop.close(), phone.close()])
})

/** Both devices' pages next to each other in one picture (for the README). */
const screenshotSideBySide = async (devices, path) => {
  const shots = await Promise.all(devices.map((device) => device.page.screenshot()))
  const page = await browser.newPage({ viewport: { width: 1280, height: 500 } })
  const images = shots.map((png, i) => {
    const src = `data:image/png;base64,${png.toString('base64')}`
    return `<figure><figcaption>${devices[i].name}</figcaption><img src="${src}"></figure>`
  })
  await page.setContent(
    `<body style="margin:0;padding:12px 12px 0;display:flex;gap:16px;background:#d4d4d8;font:14px system-ui">` +
      '<style>figure{margin:0} figcaption{padding:0 0 4px 4px;color:#3f3f46} ' +
      'img{display:block;border-radius:6px}</style>' +
      `${images.join('')}</body>`,
  )
  await page.screenshot({ path, fullPage: true })
  await page.close()
}
