//go:build !linux

package transport

const defaultReader = ReaderGoroutine
