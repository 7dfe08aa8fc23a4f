package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/livestore-relay/livestore-relay/actors"
	"github.com/livestore-relay/livestore-relay/auth"
	"github.com/livestore-relay/livestore-relay/transport"
)

// options is everything the relay can be told on its command line or in its
// environment. Flags are defined once, in newFlagSet; each --foo-bar also
// reads RELAY_FOO_BAR, and a flag given on the command line wins.
type options struct {
	addr              string
	jwtSecret         string
	jwtSecretFile     string
	jwtPublicKeyFile  string
	jwksFile          string
	jwtIssuer         string
	jwtAudience       string
	jwtUserClaim      string
	jwtLeeway         time.Duration
	allowedOrigins    string
	dev               bool
	logLevel          string
	logFormat         string
	maxMessageBytes   int
	maxEventsPerPush  int
	maxConnsPerUser   int
	maxConns          int
	maxHandshakes     int
	maxHeaderBytes    int
	maxPendingPulls   int
	peerPullTimeout   time.Duration
	sendQueueMessages int
	sendQueueBytes    int64
	rate              float64
	rateBurst         int
	pingInterval      time.Duration
	handshakeTimeout  time.Duration
	drainTimeout      time.Duration
	writeTimeout      time.Duration
	roomThroughput    int
	connThroughput    int
	mailbox           string
	roomDispatcher    string
	connDispatcher    string
	gcPercent         gcPercent
	goGC              string // GOGC from the environment
	memoryLimit       byteSize
	reader            string
	pprofAddr         string
	stateDir          string
	maxStoresPerUser  int
	clusterAddr       string
	clusterPeers      string
	clusterProvider   string
	clusterEtcd       string
	clusterName       string
}

// Defaults of the settings that belong to the command itself; the others
// come from the package that owns the setting (actors, transport, auth).
const (
	defaultAddr      = ":8080"
	devAddr          = "127.0.0.1:8080"
	defaultJWTLeeway = 30 * time.Second // the auth package's zero is no leeway
	defaultLogLevel  = "info"
	defaultLogFormat = "json"
	devLogFormat     = "console"
)

func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.addr, "addr", defaultAddr, "listen address (with --dev: "+devAddr+")")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "shared secret for HS256/HS384/HS512 tokens")
	fs.StringVar(&o.jwtSecretFile, "jwt-secret-file", "", "file holding the shared secret (a trailing newline is trimmed)")
	fs.StringVar(&o.jwtPublicKeyFile, "jwt-public-key-file", "", "PEM file with public keys: RSA (RS*/PS*), ECDSA (ES*), Ed25519 (EdDSA)")
	fs.StringVar(&o.jwksFile, "jwks-file", "", "JWKS file; keys are chosen by kid (re-read on SIGHUP)")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "", "required iss claim (unset: not checked)")
	fs.StringVar(&o.jwtAudience, "jwt-audience", "", "required aud claim (unset: not checked)")
	fs.StringVar(&o.jwtUserClaim, "jwt-user-claim", auth.DefaultUserClaim, "claim holding the user id")
	fs.DurationVar(&o.jwtLeeway, "jwt-leeway", defaultJWTLeeway, "clock skew allowed on exp, nbf and iat")
	fs.StringVar(&o.allowedOrigins, "allowed-origins", "", "comma-separated origins allowed to connect from a browser; * allows any (default: same host only)")
	fs.BoolVar(&o.dev, "dev", false, "development mode: random secret, console logs, any origin, prints tokens to try it")
	fs.StringVar(&o.logLevel, "log-level", defaultLogLevel, "log level: trace, debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", defaultLogFormat, "log format: json or console (with --dev: "+devLogFormat+")")
	fs.IntVar(&o.maxMessageBytes, "max-message-bytes", transport.DefaultMaxMessageBytes, "largest message accepted; larger ones close the connection with 1009")
	fs.IntVar(&o.maxEventsPerPush, "max-events-per-push", actors.DefaultMaxEventsPerPush, "most events in one push or peer_pull_response")
	fs.IntVar(&o.maxConnsPerUser, "max-conns-per-user", actors.DefaultMaxConnsPerUser, "most connections one user may hold")
	fs.IntVar(&o.maxConns, "max-conns", 0, "most connections in all (0: no limit beyond the process's file limit)")
	fs.IntVar(&o.maxHandshakes, "max-handshakes", transport.DefaultMaxHandshakes, "most connections still in their handshake; past it the oldest is closed")
	fs.IntVar(&o.maxHeaderBytes, "max-header-bytes", transport.DefaultMaxHeaderBytes, "largest upgrade request head (request line and headers); larger ones get 431")
	fs.IntVar(&o.maxPendingPulls, "max-pending-peer-pulls", actors.DefaultMaxPendingPeerPulls, "most peer_pull requests pending on one connection")
	fs.DurationVar(&o.peerPullTimeout, "peer-pull-timeout", actors.DefaultPeerPullTimeout, "how long a peer_pull waits for responses")
	fs.IntVar(&o.sendQueueMessages, "send-queue-messages", actors.DefaultSendQueueMessages, "messages queued for one connection before it is closed with 4003")
	fs.Int64Var(&o.sendQueueBytes, "send-queue-bytes", actors.DefaultSendQueueBytes, "bytes queued for one connection before it is closed with 4003")
	fs.Float64Var(&o.rate, "rate", actors.DefaultRate, "messages per second one connection may send")
	fs.IntVar(&o.rateBurst, "rate-burst", actors.DefaultRateBurst, "burst above --rate")
	fs.DurationVar(&o.pingInterval, "ping-interval", actors.DefaultPingInterval, "server ping interval; a connection silent for two intervals is closed")
	fs.DurationVar(&o.handshakeTimeout, "handshake-timeout", transport.DefaultHandshakeTimeout, "time allowed for the HTTP upgrade")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", transport.DefaultDrainTimeout, "on SIGTERM, how long to wait for connections to close")
	fs.DurationVar(&o.writeTimeout, "write-timeout", transport.DefaultWriteTimeout, "a socket that accepts no bytes for this long is closed as a slow consumer")
	fs.IntVar(&o.roomThroughput, "room-throughput", actors.DefaultRoomThroughput, "messages a room actor handles before yielding its goroutine")
	fs.IntVar(&o.connThroughput, "conn-throughput", actors.DefaultConnThroughput, "messages a connection actor handles before yielding its goroutine")
	fs.StringVar(&o.mailbox, "mailbox", actors.DefaultMailbox, "actor mailbox: compact (nothing held while empty; no allocation for a message that finds it empty), ring (protoactor unbounded ring buffer) or lockfree (protoactor unbounded linked queue)")
	fs.StringVar(&o.roomDispatcher, "room-dispatcher", actors.DefaultRoomDispatcher, "where a room actor runs: goroutine (one started per mailbox run) or inline (on the reader that hands it a message)")
	fs.StringVar(&o.connDispatcher, "conn-dispatcher", actors.DefaultConnDispatcher, "where a connection actor runs: inline (on the goroutine that hands it a frame, usually its room's) or goroutine (one started per mailbox run)")
	o.gcPercent = gcPercent{v: defaultGCPercent}
	fs.Var(&o.gcPercent, "gc-percent", "garbage collector target: heap growth in percent over the live heap before a collection; lower holds idle connections in less memory for more CPU; when not given and GOGC is set, GOGC applies")
	fs.Var(&o.memoryLimit, "memory-limit", "soft limit of the Go runtime's memory, e.g. 512MiB (KiB, MiB, GiB; 0: none): near it the collector runs more often and returns memory sooner; when not given, GOMEMLIMIT applies")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go's pprof profiles on this address, e.g. 127.0.0.1:6060 (default: off; never expose it publicly)")
	fs.StringVar(&o.stateDir, "state-dir", "", "directory for the state file that keeps store heads across restarts (default: memory only)")
	fs.IntVar(&o.maxStoresPerUser, "max-stores-per-user", actors.DefaultMaxStoresPerUser, "most sequenced stores with a head per user")
	fs.StringVar(&o.clusterAddr, "cluster-addr", "", "HOST:PORT other relay nodes reach this one on; turns cluster mode on (default: off, a single relay)")
	fs.StringVar(&o.clusterPeers, "cluster-peers", "", "static provider: comma-separated HOST:PORT seed list of the cluster's nodes (may name this node)")
	fs.StringVar(&o.clusterProvider, "cluster-provider", actors.DefaultClusterProvider, "cluster membership: static (--cluster-peers), etcd (--cluster-etcd) or kubernetes")
	fs.StringVar(&o.clusterEtcd, "cluster-etcd", "", "etcd provider: comma-separated etcd endpoints, e.g. 127.0.0.1:2379")
	fs.StringVar(&o.clusterName, "cluster-name", actors.DefaultClusterName, "cluster name: nodes of different names never mix")
	fs.StringVar(&o.reader, "reader", transport.DefaultReader, "socket reader: epoll (Linux: no goroutine per idle connection) or goroutine (one per connection)")
	return fs
}

// envName is the environment variable that backs a flag.
func envName(flagName string) string {
	return "RELAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse reads the environment, then the command line, into o.
func parse(o *options, args []string, getenv func(string) string, out io.Writer) error {
	fs := newFlagSet(o, out)
	o.goGC = getenv("GOGC")
	// The flag package prints the whole usage after any mistake; one line
	// that names the mistake and points to --help is easier to read.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			usage(fs, out)
			return err
		}
		return fmt.Errorf("%w (relay --help lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (relay --help lists the flags)", fs.Arg(0))
	}
	if o.dev {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["addr"] && getenv(envName("addr")) == "" {
			o.addr = devAddr
		}
		if !set["log-format"] && getenv(envName("log-format")) == "" {
			o.logFormat = devLogFormat
		}
	}
	return o.validate()
}

func (o *options) validate() error {
	switch {
	case o.logFormat != "json" && o.logFormat != "console":
		return fmt.Errorf("--log-format must be json or console, not %q", o.logFormat)
	case o.mailbox != actors.MailboxCompact && o.mailbox != actors.MailboxRing && o.mailbox != actors.MailboxLockfree:
		return fmt.Errorf("--mailbox must be compact, ring or lockfree, not %q", o.mailbox)
	case !validDispatcher(o.roomDispatcher):
		return fmt.Errorf("--room-dispatcher must be inline or goroutine, not %q", o.roomDispatcher)
	case !validDispatcher(o.connDispatcher):
		return fmt.Errorf("--conn-dispatcher must be inline or goroutine, not %q", o.connDispatcher)
	case o.reader != transport.ReaderEpoll && o.reader != transport.ReaderGoroutine:
		return fmt.Errorf("--reader must be epoll or goroutine, not %q", o.reader)
	case o.jwtSecret != "" && o.jwtSecretFile != "":
		return errors.New("--jwt-secret and --jwt-secret-file are exclusive")
	case o.maxMessageBytes < 64:
		return errors.New("--max-message-bytes must be at least 64")
	case o.maxHeaderBytes < 1024:
		return fmt.Errorf("--max-header-bytes must be at least 1024, not %d", o.maxHeaderBytes)
	case o.maxConns < 0:
		return errors.New("--max-conns must be 0 or more")
	case o.rate <= 0:
		return errors.New("--rate must be positive")
	case o.jwtLeeway < 0:
		return errors.New("--jwt-leeway must not be negative")
	}
	if err := o.validateCluster(); err != nil {
		return err
	}
	for _, l := range []struct {
		flag string
		v    int64
	}{
		{"max-events-per-push", int64(o.maxEventsPerPush)},
		{"max-conns-per-user", int64(o.maxConnsPerUser)},
		{"max-pending-peer-pulls", int64(o.maxPendingPulls)},
		{"send-queue-messages", int64(o.sendQueueMessages)},
		{"send-queue-bytes", o.sendQueueBytes},
		{"rate-burst", int64(o.rateBurst)},
		{"room-throughput", int64(o.roomThroughput)},
		{"conn-throughput", int64(o.connThroughput)},
		{"max-handshakes", int64(o.maxHandshakes)},
		{"max-stores-per-user", int64(o.maxStoresPerUser)},
	} {
		if l.v < 1 {
			return fmt.Errorf("--%s must be at least 1, not %d", l.flag, l.v)
		}
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"peer-pull-timeout", o.peerPullTimeout},
		{"ping-interval", o.pingInterval},
		{"handshake-timeout", o.handshakeTimeout},
		{"drain-timeout", o.drainTimeout},
		{"write-timeout", o.writeTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("--%s must be a positive duration, not %s", d.flag, d.v)
		}
	}
	return nil
}

// defaultGCPercent is the relay's collector target when neither
// --gc-percent nor GOGC says otherwise. Go's own default is 100.
const defaultGCPercent = 100

// gcPercent is --gc-percent. When it is not given, GOGC in the environment
// still applies.
type gcPercent struct {
	v   int
	set bool
}

func (g *gcPercent) String() string { return strconv.Itoa(g.v) }

func (g *gcPercent) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return errors.New("must be a whole number of at least 1")
	}
	g.v, g.set = v, true
	return nil
}

// byteSize is a count of bytes with an optional binary unit.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mult {
		return errors.New("must be a number of bytes, optionally followed by KiB, MiB or GiB")
	}
	*b = byteSize(v * mult)
	return nil
}

func validDispatcher(d string) bool {
	return d == actors.DispatchInline || d == actors.DispatchGoroutine
}

func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, `Usage:
  relay [flags]                                   serve the LiveStore sync relay
  relay token --secret S --sub USER [--ttl 1h] [--iss I] [--aud A]
                                                  print a signed HS256 token
  relay connect --url WS-URL [--client-id ID]     a line-based client to try the relay

Every flag can also be set in the environment: --foo-bar is RELAY_FOO_BAR.
A flag on the command line beats its variable.

Flags:
`)
	fs.PrintDefaults()
}

func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --jwt-secret-file: %w", err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, errors.New("--jwt-secret-file is empty")
	}
	return b, nil
}

func (o *options) validateCluster() error {
	if o.clusterAddr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(o.clusterAddr)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("--cluster-addr must be HOST:PORT, not %q", o.clusterAddr)
	}
	if host == "0.0.0.0" || host == "::" {
		return fmt.Errorf("--cluster-addr %q: give the address other nodes reach this one on, not a wildcard", o.clusterAddr)
	}
	if o.clusterName == "" {
		return errors.New("--cluster-name must not be empty")
	}
	switch o.clusterProvider {
	case "static":
		for _, p := range splitList(o.clusterPeers) {
			if _, _, err := net.SplitHostPort(p); err != nil {
				return fmt.Errorf("--cluster-peers: %q is not HOST:PORT", p)
			}
		}
	case "etcd":
		if len(splitList(o.clusterEtcd)) == 0 {
			return errors.New("--cluster-provider etcd needs --cluster-etcd")
		}
	case "kubernetes":
	default:
		return fmt.Errorf("--cluster-provider must be static, etcd or kubernetes, not %q", o.clusterProvider)
	}
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// clusterConfig is the cluster part of the actor configuration; nil
// without --cluster-addr.
func (o *options) clusterConfig() *actors.ClusterConfig {
	if o.clusterAddr == "" {
		return nil
	}
	return &actors.ClusterConfig{Addr: o.clusterAddr, Name: o.clusterName, Provider: o.clusterProvider,
		Peers: splitList(o.clusterPeers), Etcd: splitList(o.clusterEtcd)}
}
