// Command soak is the relay's load generator and delivery checker; see
// package test/soak for how it works and `soak --help` for its flags.
package main

import (
	"os"

	"github.com/livestore-relay/livestore-relay/test/soak"
)

func main() {
	os.Exit(soak.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
