package transport

const defaultReader = ReaderEpoll
