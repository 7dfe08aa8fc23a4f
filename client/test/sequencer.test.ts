import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { Backoff, type SeqEvent, Sequencer, TokenBucket, fromWire, sameEvent, toWire } from '../src/index.ts'

const ev = (seqNum: number, clientId = 'a', args: unknown = { n: seqNum }): SeqEvent => ({
  name: 'v1.Thing',
  args,
  seqNum,
  parentSeqNum: seqNum - 1,
  clientId,
  sessionId: 's',
})
const run = (from: number, to: number, clientId = 'a'): SeqEvent[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ev(from + i, clientId))
const nums = (events: readonly SeqEvent[]): number[] => events.map((e) => e.seqNum)

describe('Sequencer', () => {
  test('accepts events that extend the head, in order', () => {
    const s = new Sequencer(0, undefined)
    const r = s.offer(run(1, 3))
    assert.deepEqual(nums(r.accepted), [1, 2, 3])
    assert.equal(r.gap, false)
    assert.equal(s.head, 3)
    assert.deepEqual(s.storeHead, { eventNumber: 3, clientId: 'a', sessionId: 's' })
  })

  test('drops what it already has and takes the rest of an overlapping batch', () => {
    const s = new Sequencer(0, undefined)
    s.offer(run(1, 3))
    const r = s.offer(run(2, 5))
    assert.deepEqual(nums(r.accepted), [4, 5])
    assert.equal(r.duplicates, 2)
    assert.equal(s.head, 5)
  })

  test('keeps a batch that starts above the head until the events before it arrive', () => {
    const s = new Sequencer(2, ev(2))
    const early = s.offer(run(6, 7, 'b'))
    assert.deepEqual(early.accepted, [])
    assert.equal(early.gap, true)
    assert.equal(s.head, 2)
    // History arrives (a catch-up page): the kept batch follows it.
    const r = s.offer(run(3, 5))
    assert.deepEqual(nums(r.accepted), [3, 4, 5, 6, 7])
    assert.equal(r.gap, false)
    assert.equal(s.head, 7)
    assert.equal(s.headEvent?.clientId, 'b')
  })

  test('a page that stops short leaves a gap', () => {
    const s = new Sequencer(0, undefined)
    const r = s.offer([ev(1), ev(3)])
    assert.deepEqual(nums(r.accepted), [1])
    assert.equal(r.gap, true)
    assert.equal(s.head, 1)
  })

  test('an event whose parent is not the head is not accepted', () => {
    const s = new Sequencer(1, ev(1))
    const r = s.offer([{ ...ev(2), parentSeqNum: 0 }])
    assert.deepEqual(r.accepted, [])
    assert.equal(s.head, 1)
  })

  test('kept batches are bounded', () => {
    const s = new Sequencer(0, undefined, 5)
    s.offer(run(10, 20))
    const r = s.offer(run(1, 9))
    assert.deepEqual(nums(r.accepted), [1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert.equal(s.head, 9)
  })

  test('reset starts again from a cursor and forgets kept batches', () => {
    const s = new Sequencer(0, undefined)
    s.offer(run(5, 6))
    s.reset(3, ev(3))
    assert.equal(s.head, 3)
    assert.deepEqual(nums(s.offer(run(4, 4)).accepted), [4])
    assert.equal(s.head, 4)
  })
})

describe('events', () => {
  test('sameEvent compares writer, name and args (key order aside)', () => {
    assert.equal(sameEvent(ev(1, 'a', { x: 1, y: 2 }), ev(1, 'a', { y: 2, x: 1 })), true)
    assert.equal(sameEvent(ev(1, 'a'), ev(1, 'b')), false)
    assert.equal(sameEvent(ev(1, 'a', { x: 1 }), ev(1, 'a', { x: 2 })), false)
    assert.equal(sameEvent(ev(1), { ...ev(1), name: 'other' }), false)
  })

  test('wire form round-trips; malformed events are refused', () => {
    const event = ev(7, 'c', { text: 'héllo' })
    const wire = toWire(event, 123)
    assert.deepEqual(wire, {
      eventName: 'v1.Thing',
      eventNumber: 7,
      parentEventNumber: 6,
      clientId: 'c',
      sessionId: 's',
      timestamp: 123,
      data: { text: 'héllo' },
    })
    assert.deepEqual(fromWire(wire), event)
    assert.equal(fromWire({ ...wire, eventNumber: 0 }), undefined)
    assert.equal(fromWire({ ...wire, eventNumber: 1.5 }), undefined)
    assert.equal(fromWire({ ...wire, eventName: 3 as never }), undefined)
    assert.equal(fromWire({ ...wire, parentEventNumber: -1 }), undefined)
  })
})

describe('timing', () => {
  test('backoff grows to its cap, jittered within the upper half, and resets', () => {
    let r = 0
    const backoff = new Backoff(100, 1000, () => r)
    assert.deepEqual([backoff.next(), backoff.next(), backoff.next(), backoff.next(), backoff.next()], [50, 100, 200, 400, 500])
    r = 1
    assert.equal(backoff.next(), 1000)
    backoff.reset()
    assert.equal(backoff.next(), 100)
  })

  test('token bucket lets a burst through, then paces', () => {
    let now = 0
    const bucket = new TokenBucket(100, 3, () => now)
    assert.deepEqual([bucket.take(), bucket.take(), bucket.take()], [0, 0, 0])
    assert.equal(bucket.take(), 10)
    now += 10
    assert.equal(bucket.take(), 0)
    assert.equal(bucket.take(), 10)
  })
})
