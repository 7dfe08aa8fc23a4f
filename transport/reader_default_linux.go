package transport

// DefaultReader is the socket reader used when none is configured.
const DefaultReader = ReaderEpoll
