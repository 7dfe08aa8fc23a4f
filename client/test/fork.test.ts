// Forks: a relay restarted without --state-dir while the device holding the newest events is
// away lets another device write a second history. The devices find out and stop (onFork); no
// history is merged into the other.
import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'

import { Device, Proxy, Relay, converged, relayHead, tempDir, waitFor } from './harness.ts'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
})

const ids = (device: Device): string[] => device.confirmedLog().map((e) => (e.args as { id: string }).id)

/**
 * A and B share f1. With B away, A confirms its own events; A goes away, the relay restarts
 * without state, B comes back first and confirms fb2 on f1. Returns both devices, A still away.
 */
const splitHistories = async (aEvents: string[]) => {
  const relay = await Relay.start()
  cleanups.push(() => relay.stop())
  const proxyA = await Proxy.start(relay.port)
  const proxyB = await Proxy.start(relay.port)
  cleanups.push(() => proxyA.close(), () => proxyB.close())
  const storeId = `fork-${aEvents.length}-${process.pid}`
  const open = async (clientId: string, proxy: Proxy) => {
    const device = await Device.open({
      clientId,
      dir: tempDir(clientId),
      url: proxy.url,
      token: () => relay.token(),
      storeId,
    })
    cleanups.push(() => device.shutdown())
    return device
  }
  const a = await open(`fa${aEvents.length}`, proxyA)
  const b = await open(`fb${aEvents.length}`, proxyB)
  await a.commit('f1')
  await waitFor('both hold f1', () => converged([a, b], 1))

  proxyB.setDown(true)
  for (const id of aEvents) await a.commit(id)
  await waitFor('A confirmed its events', () => a.confirmedHead() === 1 + aEvents.length && a.unconfirmed() === 0)
  proxyA.setDown(true)
  await relay.restart('SIGTERM')

  await b.commit('fb2', 'b', { offline: true })
  proxyB.setDown(false)
  await waitFor('B confirmed fb2', () => b.confirmedHead() === 2 && b.unconfirmed() === 0)
  return { a, b, proxyA, relay, storeId }
}

describe('forks', () => {
  test('same head number, other writer: store_conflict stops the device and calls onFork', async () => {
    const { a, b, proxyA } = await splitHistories(['fa2'])
    proxyA.setDown(false)
    await waitFor('A reports the fork', () => a.forks.length === 1)
    assert.equal(a.forks[0]!.reason, 'store_conflict')
    assert.equal(a.forks[0]!.localHead.eventNumber, 2)
    assert.equal(a.forks[0]!.remoteHead.clientId, b.clientId)

    // A stops pushing: its next event stays unconfirmed, and nothing crosses either way.
    await a.commit('fa3', 'a', { offline: true })
    await b.commit('fb3')
    await waitFor('B confirmed fb3', () => b.confirmedHead() === 3)
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.deepEqual(ids(a), ['f1', 'fa2'])
    assert.equal(a.unconfirmed(), 1)
    assert.deepEqual(ids(b), ['f1', 'fb2', 'fb3'])
    assert.equal(b.forks.length, 0)
  })

  test('a peer whose event at the head differs: history_mismatch stops the device and calls onFork', async () => {
    const { a, b, proxyA, relay, storeId } = await splitHistories(['fa2', 'fa3'])
    // A is ahead (3 > 2): the relay, having lost its state, takes A's head.
    proxyA.setDown(false)
    await waitFor('the relay took A head', async () => (await relayHead(relay, storeId))?.clientId === a.clientId)
    assert.equal(a.forks.length, 0)
    // B's next push meets A's head; catching up from A, B finds A's event 2 is not its own.
    await b.commit('fb3')
    await waitFor('B reports the fork', () => b.forks.length === 1)
    assert.equal(b.forks[0]!.reason, 'history_mismatch')
    assert.equal(b.forks[0]!.remoteClientId, a.clientId)
    assert.equal(b.forks[0]!.localHead.clientId, b.clientId)
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.deepEqual(ids(b), ['f1', 'fb2'])
    assert.deepEqual(ids(a), ['f1', 'fa2', 'fa3'])
  })
})
