import { Events, Schema, State, makeSchema } from '@livestore/livestore'

export const todos = State.SQLite.table({
  name: 'todos',
  columns: {
    id: State.SQLite.text({ primaryKey: true }),
    text: State.SQLite.text({ default: '' }),
    completed: State.SQLite.boolean({ default: false }),
    createdAt: State.SQLite.integer({ default: 0 }),
  },
})

export const events = {
  todoCreated: Events.synced({
    name: 'v1.TodoCreated',
    schema: Schema.Struct({ id: Schema.String, text: Schema.String, createdAt: Schema.Number }),
  }),
  todoToggled: Events.synced({
    name: 'v1.TodoToggled',
    schema: Schema.Struct({ id: Schema.String, completed: Schema.Boolean }),
  }),
  todoDeleted: Events.synced({
    name: 'v1.TodoDeleted',
    schema: Schema.Struct({ id: Schema.String }),
  }),
}

const materializers = State.SQLite.materializers(events, {
  'v1.TodoCreated': ({ id, text, createdAt }) => todos.insert({ id, text, createdAt }),
  'v1.TodoToggled': ({ id, completed }) => todos.update({ completed }).where({ id }),
  'v1.TodoDeleted': ({ id }) => todos.delete().where({ id }),
})

export const schema = makeSchema({ events, state: State.SQLite.makeState({ tables: { todos }, materializers }) })

/** What the app hands the leader worker with every store: the user whose token the worker asks for. */
export const SyncPayload = Schema.Struct({ user: Schema.String })
