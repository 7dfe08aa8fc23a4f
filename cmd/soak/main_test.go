package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/test/soak"
)

// TestBinarySpreadsOverWorkers runs the built tool with two worker
// processes (the tool re-executing itself) against a relay it spawns.
func TestBinarySpreadsOverWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	relay := relaytest.Binary(t)
	tool := relaytest.Build(t, "./cmd/soak", relaytest.BuildOptions{})

	cmd := exec.Command(tool, "--spawn-relay", relay, "--procs", "2", "--users", "60", "--devices", "3",
		"--rate", "300", "--duration", "2s", "--peer-pull-every", "1s", "--json", "--progress", "-1s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("soak: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res soak.Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not the JSON result: %v\n%s", err, stdout.String())
	}
	if !res.Pass || res.Procs != 2 || res.Connections != 180 || res.Pushes < 400 || res.Deliveries != 2*res.Acks || res.PeerPullsAnswered != res.PeerPulls {
		t.Fatalf("unexpected result: %s\nstderr:\n%s", lines[len(lines)-1], stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the tool")
	}
	tool := relaytest.Build(t, "./cmd/soak", relaytest.BuildOptions{})
	for _, args := range [][]string{{}, {"--users", "x"}, {"--url", "ws://192.0.2.1:1/", "--secret", "s"}} {
		err := exec.Command(tool, args...).Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != soak.ExitUsage {
			t.Errorf("%q: %v, want exit %d", args, err, soak.ExitUsage)
		}
	}
	if out, err := exec.Command(tool, "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "-peer-pull-every") || !strings.Contains(string(out), "-spawn-nodes") {
		t.Errorf("--help: %v\n%s", err, out)
	}
}
