package soak

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is one soak run as given on the command line.
type Config struct {
	// URL is one relay sync URL, or a comma-separated list of the nodes of
	// one cluster: each user's devices are then spread over them (see
	// nodeFor).
	URL           string
	Secret        string
	TokenFile     string
	Users         int
	Devices       int
	Rate          float64
	EventsPerPush int
	EventBytes    int
	Duration      time.Duration
	Ramp          time.Duration
	Drain         time.Duration
	Procs         int
	Idle          bool
	PeerPullEvery time.Duration
	PeerPullPages int
	// Store, when set, makes every device join the sequenced store of that
	// id and push on the head it knows (see device.go).
	Store      string
	MetricsURL string
	JSON       bool
	Progress   time.Duration

	ConnectConcurrency int
	ConnectTimeout     time.Duration
	UserPrefix         string

	// SpawnRelay, when set, is a relay binary that the tool starts on
	// 127.0.0.1 with a random port and secret (unless --secret is given)
	// and stops with SIGTERM at the end; RelayFlags are added to its
	// command line.
	SpawnRelay string
	RelayFlags string
	RelayLog   string
	// SpawnNodes, when positive, makes SpawnRelay a cluster of that many
	// nodes, each with its own listen and cluster address on 127.0.0.1 and
	// every node's cluster address as seeds (see spawnNodes).
	SpawnNodes int

	// CPUProfile is a file to write the tool's own CPU profile to (the
	// in-process worker only).
	CPUProfile string

	// Exe is the program re-executed as workers; empty means this one.
	Exe string
}

// perProcessSockets is how many connections one worker holds at most, below
// the 20,000 open files a process may have, leaving room for the rest.
const perProcessSockets = 19000

// connsTotal is the number of connections the run opens.
func (c *Config) connsTotal() int { return c.Users * c.Devices }

func newFlagSet(c *Config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.URL, "url", "", "relay sync URL, ws://127.0.0.1:PORT/api/v1/livestore/sync, or a comma-separated list of a cluster's nodes over which each user's devices are spread (set by --spawn-relay)")
	fs.StringVar(&c.Secret, "secret", "", "HS256 secret to mint one token per user (sub = user id)")
	fs.StringVar(&c.TokenFile, "token-file", "", "file with one \"user token\" pair per line, instead of --secret")
	fs.IntVar(&c.Users, "users", 100, "users (with --token-file: at most the users in the file)")
	fs.IntVar(&c.Devices, "devices", 4, "connected devices per user")
	fs.Float64Var(&c.Rate, "rate", 200, "pushes per second across all devices")
	fs.IntVar(&c.EventsPerPush, "events-per-push", 1, "events in each push")
	fs.IntVar(&c.EventBytes, "event-bytes", 128, "approximate size of each event's data in bytes")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "traffic time (with --idle: time the connections are held)")
	fs.DurationVar(&c.Ramp, "ramp", 0, "time over which connections are opened (0: as fast as --connect-concurrency allows)")
	fs.DurationVar(&c.Drain, "drain", 5*time.Second, "after traffic stops, how long to wait for outstanding acks, deliveries and peer_pull answers")
	fs.IntVar(&c.Procs, "procs", 0, fmt.Sprintf("worker processes the users are spread over (0: one per %d connections)", perProcessSockets))
	fs.BoolVar(&c.Idle, "idle", false, "hold the connections for --duration without traffic, then report")
	fs.DurationVar(&c.PeerPullEvery, "peer-pull-every", 0, "each device sends a peer_pull at this interval (0: never)")
	fs.IntVar(&c.PeerPullPages, "peer-pull-pages", 2, "pages in each answer to a peer_pull (all but the last say hasMore)")
	fs.StringVar(&c.Store, "store", "", "join every user's devices to the sequenced store of this id and push on its head (one push in flight per device; after head_mismatch a device takes the relay's head and pushes again)")
	fs.StringVar(&c.MetricsURL, "metrics-url", "", "relay /metrics URL sampled every second for peak RSS and goroutines, or a comma-separated list, one per node (set by --spawn-relay)")
	fs.BoolVar(&c.JSON, "json", false, "print the summary as one JSON object, the last line on stdout")
	fs.DurationVar(&c.Progress, "progress", 0, "progress line interval on stderr (0: every second on a terminal, else every 10s; negative: none)")
	fs.IntVar(&c.ConnectConcurrency, "connect-concurrency", 64, "connection attempts in flight per worker")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 10*time.Second, "time allowed to connect and bind one device")
	fs.StringVar(&c.UserPrefix, "user-prefix", "", "prefix of minted user ids (default: soak-<random>-, so runs never share users)")
	fs.StringVar(&c.SpawnRelay, "spawn-relay", "", "start this relay binary on 127.0.0.1 for the run and stop it at the end")
	fs.StringVar(&c.RelayFlags, "relay-flags", "", "extra flags for the spawned relay (each node), space-separated")
	fs.IntVar(&c.SpawnNodes, "spawn-nodes", 0, "with --spawn-relay: start a cluster of this many relay nodes (--cluster-addr and --cluster-peers on free loopback ports) and spread each user's devices over them")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the tool's own CPU profile to this file (with one worker process)")
	fs.StringVar(&c.RelayLog, "relay-log", "", "file to write the spawned relay's log to; with --spawn-nodes, one file per node, -nodeN added before the extension (default: kept in memory, tail shown on failure)")
	return fs
}

// errReported marks a usage error the flag package has already printed.
var errReported = errors.New("usage error already reported")

// ParseFlags reads a run's configuration from the command line.
func ParseFlags(args []string, out io.Writer) (Config, error) {
	var c Config
	fs := newFlagSet(&c, out)
	fs.Usage = func() {
		fmt.Fprint(out, `Usage: soak [flags]

Opens --users × --devices WebSocket connections to a relay, binds every
device with a pull, pushes at --rate for --duration while checking every
delivery promise of the relay, and reports. Exits 1 when a check failed,
2 on a usage error.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w: %w", errReported, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	switch {
	case c.URL == "" && c.SpawnRelay == "":
		return errors.New("--url or --spawn-relay is required")
	case c.URL != "" && c.SpawnRelay != "":
		return errors.New("--url and --spawn-relay are exclusive")
	case c.Secret != "" && c.TokenFile != "":
		return errors.New("--secret and --token-file are exclusive")
	case c.Secret == "" && c.TokenFile == "" && c.SpawnRelay == "":
		return errors.New("--secret or --token-file is required")
	case c.TokenFile != "" && c.SpawnRelay != "":
		return errors.New("--token-file cannot sign for a spawned relay; use --secret or nothing")
	case c.Users < 1, c.Devices < 1:
		return errors.New("--users and --devices must be positive")
	case c.Rate <= 0 && !c.Idle:
		return errors.New("--rate must be positive")
	case c.EventsPerPush < 1:
		return errors.New("--events-per-push must be positive")
	case c.EventBytes < 0:
		return errors.New("--event-bytes must not be negative")
	case c.Duration <= 0:
		return errors.New("--duration must be positive")
	case c.Ramp < 0, c.Drain < 0, c.PeerPullEvery < 0:
		return errors.New("--ramp, --drain and --peer-pull-every must not be negative")
	case c.PeerPullPages < 1:
		return errors.New("--peer-pull-pages must be positive")
	case c.Procs < 0:
		return errors.New("--procs must not be negative")
	case c.ConnectConcurrency < 1:
		return errors.New("--connect-concurrency must be positive")
	case c.ConnectTimeout <= 0:
		return errors.New("--connect-timeout must be positive")
	case c.Devices > 1000:
		return errors.New("--devices must be at most 1000")
	case c.SpawnNodes < 0 || c.SpawnNodes > maxNodes:
		return fmt.Errorf("--spawn-nodes must be between 0 and %d", maxNodes)
	case c.SpawnNodes > 0 && c.SpawnRelay == "":
		return errors.New("--spawn-nodes needs --spawn-relay")
	}
	for _, u := range splitList(c.URL) {
		if err := loopbackURL(u, "ws"); err != nil {
			return fmt.Errorf("--url: %w", err)
		}
	}
	if c.URL != "" && len(splitList(c.URL)) == 0 {
		return errors.New("--url: no URL in the list")
	}
	for _, u := range splitList(c.MetricsURL) {
		if err := loopbackURL(u, "http"); err != nil {
			return fmt.Errorf("--metrics-url: %w", err)
		}
	}
	if c.Procs > 0 && (c.connsTotal()+c.Procs-1)/c.Procs > perProcessSockets {
		return fmt.Errorf("%d connections over %d processes is more than %d per process; raise --procs", c.connsTotal(), c.Procs, perProcessSockets)
	}
	if c.Procs > c.Users {
		return fmt.Errorf("--procs %d is more than --users %d: each worker owns whole users", c.Procs, c.Users)
	}
	return nil
}

// maxNodes bounds --spawn-nodes: a cluster soak is a few nodes on one
// machine, not a fleet.
const maxNodes = 16

// splitList splits a comma-separated list, dropping blanks around and
// between the commas.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// loopbackURL accepts only plain URLs to 127.0.0.1 or localhost: the tool
// generates heavy load and must never point it elsewhere.
func loopbackURL(raw, scheme string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse %q: %w", raw, err)
	}
	if u.Scheme != scheme {
		return fmt.Errorf("scheme must be %s, not %q", scheme, u.Scheme)
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
		return nil
	}
	return fmt.Errorf("host must be loopback (127.0.0.1), not %q", u.Hostname())
}

// procs is the number of worker processes the run uses.
func (c *Config) procs() int {
	if c.Procs > 0 {
		return c.Procs
	}
	return max(1, (c.connsTotal()+perProcessSockets-1)/perProcessSockets)
}

// warnings are settings that will likely make the run fail for reasons of
// the tool's own making rather than the relay's.
func (c *Config) warnings() []string {
	var w []string
	if c.Idle {
		return nil
	}
	// The relay limits each connection to 200 messages/s, burst 400, by default.
	perDevice := c.Rate / float64(c.connsTotal())
	if c.PeerPullEvery > 0 {
		perDevice += float64(1+(c.Devices-1)*c.PeerPullPages) / c.PeerPullEvery.Seconds()
	}
	if perDevice > 150 {
		w = append(w, fmt.Sprintf("each device sends about %.0f messages/s; the relay's default rate limit is 200/s", perDevice))
	}
	if est := c.EventsPerPush * (c.EventBytes + 200); est > 1<<20 {
		w = append(w, fmt.Sprintf("a push is about %d bytes, over the relay's default 1 MiB message limit", est))
	}
	if c.EventsPerPush > 1000 {
		w = append(w, "--events-per-push is over the relay's default limit of 1000")
	}
	return w
}

// userSpec is one user and its token.
type userSpec struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// readTokenFile reads `user token` lines; blank lines and # comments are skipped.
func readTokenFile(path string, limit int) ([]userSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open token file: %w", err)
	}
	defer f.Close()
	var users []userSpec
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan() && len(users) < limit; line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("token file line %d: want `user token`, got %d fields", line, len(fields))
		}
		if seen[fields[0]] {
			return nil, fmt.Errorf("token file line %d: user %q listed twice", line, fields[0])
		}
		seen[fields[0]] = true
		users = append(users, userSpec{ID: fields[0], Token: fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	if len(users) < limit {
		return nil, fmt.Errorf("token file has %d users, --users asks for %d", len(users), limit)
	}
	return users, nil
}
