// The relay restarts under devices that keep writing: with --state-dir (heads survive), without
// it (heads are re-announced by the devices), and killed with SIGKILL right after an ack.
// Device.commit waits until the device has nothing unconfirmed before each commit while online
// (a LiveStore 0.4.0 rebase bug, see the harness).
import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'

import { Device, Proxy, Relay, converged, describeDevices, relayHead, tempDir, waitFor } from './harness.ts'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
})

const openDevice = async (relay: Relay, clientId: string, storeId: string, url = relay.url): Promise<Device> => {
  const device = await Device.open({ clientId, dir: tempDir(clientId), url, token: () => relay.token(), storeId })
  cleanups.push(() => device.shutdown())
  return device
}

const settle = (devices: Device[], count: number) =>
  waitFor(`converged on ${count} events (${describeDevices(devices)})`, () => converged(devices, count), 60_000)

const writeWhileRestarting = async (relay: Relay, stateDir: string | undefined) => {
  const storeId = `restart-${stateDir === undefined ? 'mem' : 'disk'}-${process.pid}`
  const a = await openDevice(relay, `ra-${stateDir === undefined ? 'm' : 'd'}`, storeId)
  const b = await openDevice(relay, `rb-${stateDir === undefined ? 'm' : 'd'}`, storeId)
  const perDevice = 12
  let restarted = false
  const write = async (d: Device, prefix: string) => {
    for (let i = 0; i < perDevice; i++) {
      await d.commit(`${prefix}-${i}`)
      if (prefix === 'a' && i === perDevice / 2 && !restarted) {
        restarted = true
        await relay.restart('SIGTERM')
      }
    }
  }
  await Promise.all([write(a, 'a'), write(b, 'b')])
  await settle([a, b], 2 * perDevice)
  assert.deepEqual(a.todoIds(), b.todoIds())
  assert.equal(a.forks.length + b.forks.length, 0)
  const head = await relayHead(relay, storeId)
  const last = a.confirmedLog().at(-1)!
  assert.deepEqual(head, { eventNumber: last.seqNum, clientId: last.clientId, sessionId: last.sessionId })
}

describe('relay restarts', () => {
  test('with --state-dir, while devices write', async () => {
    const relay = await Relay.start({ stateDir: tempDir('state') })
    cleanups.push(() => relay.stop())
    await writeWhileRestarting(relay, relay.stateDir)
  })

  test('without --state-dir, while devices write (devices re-announce their heads)', async () => {
    const relay = await Relay.start()
    cleanups.push(() => relay.stop())
    await writeWhileRestarting(relay, undefined)
  })

  test('kill -9 right after an ack loses no head', async () => {
    const relay = await Relay.start({ stateDir: tempDir('state') })
    cleanups.push(() => relay.stop())
    const proxyA = await Proxy.start(relay.port)
    const proxyB = await Proxy.start(relay.port)
    cleanups.push(() => proxyA.close(), () => proxyB.close())
    const storeId = `kill-${process.pid}`
    const a = await openDevice(relay, 'ka', storeId, proxyA.url)
    const b = await openDevice(relay, 'kb', storeId, proxyB.url)
    await a.commit('k0')
    await settle([a, b], 1)

    await a.commit('k1')
    await waitFor('A has its ack', () => a.confirmedHead() === 2)
    // Keep the devices away so that only the relay's own state can tell the head.
    proxyA.setDown(true)
    proxyB.setDown(true)
    await relay.restart('SIGKILL')
    const last = a.confirmedLog().at(-1)!
    assert.deepEqual(await relayHead(relay, storeId), {
      eventNumber: 2,
      clientId: last.clientId,
      sessionId: last.sessionId,
    })

    proxyA.setDown(false)
    proxyB.setDown(false)
    await a.commit('k2')
    await b.commit('k3')
    await settle([a, b], 4)
  })
})
