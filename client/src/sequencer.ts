import type { RelayEvent, StoreHead } from './protocol.ts'

/**
 * One event of a sequenced store, in LiveStore's global encoding (`LiveStoreEvent.Global.Encoded`):
 * `seqNum` counts from 1, `parentSeqNum` is the previous event's (0 for the first).
 */
export interface SeqEvent {
  readonly name: string
  readonly args: unknown
  readonly seqNum: number
  readonly parentSeqNum: number
  readonly clientId: string
  readonly sessionId: string
}

const isNonNegativeInteger = (value: unknown): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= 0

export const toWire = (event: SeqEvent, timestamp: number): RelayEvent => ({
  eventName: event.name,
  eventNumber: event.seqNum,
  parentEventNumber: event.parentSeqNum,
  clientId: event.clientId,
  sessionId: event.sessionId,
  timestamp,
  data: event.args === undefined ? null : event.args,
})

/** The event a relay message carries, or undefined when it is not a well-formed sequenced event. */
export const fromWire = (event: RelayEvent): SeqEvent | undefined => {
  if (
    typeof event !== 'object' ||
    event === null ||
    typeof event.eventName !== 'string' ||
    !isNonNegativeInteger(event.eventNumber) ||
    event.eventNumber < 1 ||
    typeof event.clientId !== 'string' ||
    typeof event.sessionId !== 'string'
  ) {
    return undefined
  }
  const parent = event.parentEventNumber ?? event.eventNumber - 1
  if (!isNonNegativeInteger(parent)) return undefined
  return {
    name: event.eventName,
    args: event.data,
    seqNum: event.eventNumber,
    parentSeqNum: parent,
    clientId: event.clientId,
    sessionId: event.sessionId,
  }
}

export const headOf = (event: SeqEvent | undefined, eventNumber: number): StoreHead =>
  event === undefined || eventNumber === 0
    ? { eventNumber }
    : { eventNumber: event.seqNum, clientId: event.clientId, sessionId: event.sessionId }

const canonical = (value: unknown): string => JSON.stringify(value === undefined ? null : value, sortKeys)
const sortKeys = (_key: string, value: unknown): unknown => {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value
  const sorted: Record<string, unknown> = {}
  for (const key of Object.keys(value).sort()) sorted[key] = (value as Record<string, unknown>)[key]
  return sorted
}

/** Two devices' events at one position are the same event: same number, writer, name and args. */
export const sameEvent = (a: SeqEvent, b: SeqEvent): boolean =>
  a.seqNum === b.seqNum &&
  a.parentSeqNum === b.parentSeqNum &&
  a.clientId === b.clientId &&
  a.sessionId === b.sessionId &&
  a.name === b.name &&
  canonical(a.args) === canonical(b.args)

export interface OfferResult {
  /** Events that extend the head, in order: hand these on. */
  readonly accepted: readonly SeqEvent[]
  /** Events at or below the head, dropped. */
  readonly duplicates: number
  /** The batch starts above the head: events are missing in between. */
  readonly gap: boolean
}

/**
 * The confirmed order of one store as this device has handed it on: accepts only events that
 * extend its head by one, drops what it already has, and keeps batches that arrived early (a
 * relayed push while history is still being fetched) until the events before them arrive.
 */
export class Sequencer {
  private headNumber: number
  private headEventValue: SeqEvent | undefined
  /** Batches that start above the head, by the number they start after. */
  private readonly early = new Map<number, SeqEvent[]>()
  private earlyCount = 0

  constructor(
    head: number,
    headEvent: SeqEvent | undefined,
    private readonly maxEarlyEvents = 10_000,
  ) {
    this.headNumber = head
    this.headEventValue = headEvent?.seqNum === head ? headEvent : undefined
  }

  get head(): number {
    return this.headNumber
  }

  /** The event at the head, when known (undefined at 0 or when only the number is known). */
  get headEvent(): SeqEvent | undefined {
    return this.headEventValue
  }

  get storeHead(): StoreHead {
    return headOf(this.headEventValue, this.headNumber)
  }

  /** Resets to a head (a new pull stream starts from the leader's cursor). */
  reset(head: number, headEvent: SeqEvent | undefined): void {
    this.headNumber = head
    this.headEventValue = headEvent?.seqNum === head ? headEvent : undefined
    this.early.clear()
    this.earlyCount = 0
  }

  /** Takes an ascending batch; returns what extends the head (including batches kept earlier). */
  offer(events: readonly SeqEvent[]): OfferResult {
    const accepted: SeqEvent[] = []
    let duplicates = 0
    let gap = false
    let i = 0
    for (; i < events.length; i++) {
      const event = events[i]!
      if (event.seqNum <= this.headNumber) {
        duplicates++
        continue
      }
      if (event.seqNum === this.headNumber + 1 && event.parentSeqNum === this.headNumber) {
        this.advance(event)
        accepted.push(event)
        continue
      }
      gap = true
      break
    }
    if (gap) this.keepEarly(events.slice(i))
    accepted.push(...this.drainEarly())
    return { accepted, duplicates, gap: (events[events.length - 1]?.seqNum ?? 0) > this.headNumber }
  }

  private advance(event: SeqEvent): void {
    this.headNumber = event.seqNum
    this.headEventValue = event
  }

  private keepEarly(events: readonly SeqEvent[]): void {
    const first = events[0]
    if (first === undefined || this.earlyCount + events.length > this.maxEarlyEvents) return
    // Only contiguous runs can be joined later.
    for (let i = 1; i < events.length; i++) {
      if (events[i]!.parentSeqNum !== events[i - 1]!.seqNum || events[i]!.seqNum !== events[i - 1]!.seqNum + 1) return
    }
    if (this.early.has(first.parentSeqNum)) return
    this.early.set(first.parentSeqNum, [...events])
    this.earlyCount += events.length
  }

  private drainEarly(): SeqEvent[] {
    const out: SeqEvent[] = []
    let progressed = true
    while (progressed && this.early.size > 0) {
      progressed = false
      for (const [after, batch] of [...this.early]) {
        const rest = batch.filter((event) => event.seqNum > this.headNumber)
        const first = rest[0]
        if (first !== undefined && first.seqNum !== this.headNumber + 1) continue
        this.early.delete(after)
        this.earlyCount -= batch.length
        // A batch that does not chain onto the head can never fit: dropped.
        if (first === undefined || first.parentSeqNum !== this.headNumber) continue
        for (const event of rest) {
          this.advance(event)
          out.push(event)
        }
        progressed = true
      }
    }
    return out
  }
}
