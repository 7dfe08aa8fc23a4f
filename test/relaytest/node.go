package relaytest

import (
	"os"
	"os/exec"
	"testing"
)

// RequireNodeEnv, when set to any value, turns the absence of Node.js or of
// a test's npm packages into a failure instead of a skip. `make test` sets
// it, so that the tests backed by Node.js always run there, while a plain
// `go test ./...` passes with Go alone.
const RequireNodeEnv = "RELAYTEST_REQUIRE_NODE"

// Node returns the path of the node executable. When node is missing, or
// when one of the files in need (npm packages, usually) does not exist, the
// test is skipped with a message that says how to get them, or fails when
// RequireNodeEnv is set.
func Node(t testing.TB, need ...string) string {
	t.Helper()
	const how = "`make test` installs Node.js and the npm packages (through apt as root), or run `make node-deps`"
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node is not installed; "+how)
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			missing(t, p+" is missing; "+how)
		}
	}
	return node
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(RequireNodeEnv) != "" {
		t.Fatal(msg)
	}
	t.Skip("skipped: " + msg)
}
