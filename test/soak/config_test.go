package soak

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	base := []string{"--url", "ws://127.0.0.1:1/api/v1/livestore/sync", "--secret", "s"}
	c, err := ParseFlags(append(base, "--users", "3", "--devices", "2", "--peer-pull-every", "2s"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Users != 3 || c.Devices != 2 || c.PeerPullEvery.Seconds() != 2 || c.procs() != 1 {
		t.Errorf("parsed %+v", c)
	}
	if _, err := ParseFlags([]string{"--help"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	bad := [][]string{
		{},
		{"--secret", "s"},
		{"--url", "ws://10.0.0.1:1/x", "--secret", "s"},
		{"--url", "http://127.0.0.1:1/x", "--secret", "s"},
		{"--url", "ws://127.0.0.1:1/x"},
		append(base, "--token-file", "f"),
		append(base, "--metrics-url", "http://example.com/metrics"),
		append(base, "--users", "0"),
		append(base, "--rate", "0"),
		append(base, "--users", "1", "--procs", "2"),
		append(base, "--users", "10000", "--devices", "4", "--procs", "2"),
		append(base, "stray"),
	}
	for _, args := range bad {
		if _, err := ParseFlags(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	// Idle runs need no rate; big runs get enough workers by default.
	c, err = ParseFlags(append(base, "--idle", "--rate", "0", "--users", "10000", "--devices", "4"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.procs() != 3 {
		t.Errorf("procs for 40,000 connections = %d, want 3", c.procs())
	}
}

func TestSplitKeepsUsersWhole(t *testing.T) {
	cfg := Config{Users: 10, Devices: 3, Rate: 100, Procs: 3}
	users := make([]userSpec, 10)
	specs := split(&cfg, users, "r")
	total, rate := 0, 0.0
	for i, s := range specs {
		if s.FirstUser != total {
			t.Errorf("worker %d starts at user %d, want %d", i, s.FirstUser, total)
		}
		total += len(s.Users)
		rate += s.Rate
	}
	if total != 10 || rate < 99.999 || rate > 100.001 {
		t.Errorf("users %d, rate %v", total, rate)
	}
}

func TestReadTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	content := "# user token\nalice tok-a\n\n  bob   tok-b  \ncarol tok-c\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := readTokenFile(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[1] != (userSpec{ID: "bob", Token: "tok-b"}) {
		t.Errorf("users %+v", users)
	}
	if _, err := readTokenFile(path, 4); err == nil {
		t.Error("asked for more users than the file has: no error")
	}
	if err := os.WriteFile(path, []byte("alice a\nalice b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readTokenFile(path, 2); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate user: %v", err)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8012
go_goroutines_extra 3
process_resident_memory_bytes 2.19283456e+08
process_cpu_seconds_total 4.3 1700000000000
livestore_relay_connections 8000
`
	s, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if s.Goroutines != 8012 || s.RSS != 219283456 || s.CPUSeconds != 4.3 || s.Conns != 8000 || s.has != hasRSS|hasGoroutines|hasCPU|hasConns {
		t.Errorf("parsed %+v", s)
	}
	if _, err := parseMetrics(strings.NewReader("go_goroutines lots\n")); err == nil {
		t.Error("bad value accepted")
	}
}
