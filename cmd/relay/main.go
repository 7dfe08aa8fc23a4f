// Command relay serves the LiveStore sync relay: it authenticates each
// WebSocket with a JWT and relays events between the devices of one user.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/livestore-relay/livestore-relay/actors"
	"github.com/livestore-relay/livestore-relay/auth"
	"github.com/livestore-relay/livestore-relay/protocol"
	"github.com/livestore-relay/livestore-relay/transport"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], stdout, stderr)
		case "connect":
			return runConnect(args[1:], stdin, stdout, stderr)
		}
	}
	var o options
	if err := parse(&o, args, getenv, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serve(ctx, &o, stdout, stderr)
}

func serve(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	log, err := newLogger(o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return exitUsage
	}
	if o.gcPercent.set || o.goGC == "" {
		debug.SetGCPercent(o.gcPercent.v)
	}
	if o.memoryLimit > 0 {
		debug.SetMemoryLimit(int64(o.memoryLimit))
	}
	secret := []byte(o.jwtSecret)
	if o.jwtSecretFile != "" {
		if secret, err = readSecretFile(o.jwtSecretFile); err != nil {
			fmt.Fprintf(stderr, "relay: %v\n", err)
			return exitUsage
		}
	}
	if o.dev && len(secret) == 0 && o.jwtPublicKeyFile == "" && o.jwksFile == "" {
		// Printable, so that `relay token --secret` can use it as it is.
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		secret = []byte(hex.EncodeToString(raw))
	}
	verifier, err := auth.NewVerifier(auth.Config{
		Secret: secret, PublicKeyFile: o.jwtPublicKeyFile, JWKSFile: o.jwksFile,
		Issuer: o.jwtIssuer, Audience: o.jwtAudience, UserClaim: o.jwtUserClaim, Leeway: o.jwtLeeway,
	})
	if err != nil {
		if errors.Is(err, auth.ErrNoKey) {
			err = errors.New("no key configured: set --jwt-secret, --jwt-secret-file, --jwt-public-key-file or --jwks-file (or use --dev)")
		}
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return exitUsage
	}
	var allowed []string
	if o.dev {
		allowed = []string{"*"}
	} else if o.allowedOrigins != "" {
		allowed = strings.Split(o.allowedOrigins, ",")
	}
	origins, err := auth.NewOriginPolicy(allowed)
	if err != nil {
		fmt.Fprintf(stderr, "relay: --allowed-origins: %v\n", err)
		return exitUsage
	}
	srv, err := transport.New(transport.Config{
		MaxMessageBytes:  o.maxMessageBytes,
		MaxHeaderBytes:   o.maxHeaderBytes,
		MaxHandshakes:    o.maxHandshakes,
		HandshakeTimeout: o.handshakeTimeout,
		WriteTimeout:     o.writeTimeout,
		DrainTimeout:     o.drainTimeout,
		Verifier:         verifier,
		Origins:          origins,
		Logger:           log,
		AsyncAPI:         protocol.AsyncAPI(),
		Reader:           o.reader,
		DevToken:         devTokens(o, secret),
		Actors: actors.Config{
			MaxConnsPerUser:     o.maxConnsPerUser,
			MaxConns:            o.maxConns,
			MaxEventsPerPush:    o.maxEventsPerPush,
			MaxPendingPeerPulls: o.maxPendingPulls,
			PeerPullTimeout:     o.peerPullTimeout,
			SendQueueMessages:   o.sendQueueMessages,
			SendQueueBytes:      o.sendQueueBytes,
			Rate:                o.rate,
			RateBurst:           o.rateBurst,
			PingInterval:        o.pingInterval,
			RoomThroughput:      o.roomThroughput,
			ConnThroughput:      o.connThroughput,
			Mailbox:             o.mailbox,
			RoomDispatcher:      o.roomDispatcher,
			ConnDispatcher:      o.connDispatcher,
			StateDir:            o.stateDir,
			MaxStoresPerUser:    o.maxStoresPerUser,
			Cluster:             o.clusterConfig(),
		},
	})
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return exitUsage
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		fmt.Fprintf(stderr, "relay: listen on %s: %v\n", o.addr, err)
		return exitFailed
	}
	log.Info().Str("addr", ln.Addr().String()).Bool("dev", o.dev).Msg("listening")
	if o.dev {
		printDevHelp(stdout, secret, ln.Addr().String())
	}
	go reloadOnHangup(ctx, verifier, log)
	if o.pprofAddr != "" {
		stopProfiles, err := serveProfiles(o.pprofAddr, log)
		if err != nil {
			fmt.Fprintf(stderr, "relay: --pprof-addr: %v\n", err)
			return exitUsage
		}
		defer stopProfiles()
	}
	if err := srv.Serve(ctx, ln); err != nil {
		log.Error().Err(err).Msg("server stopped")
		return exitFailed
	}
	log.Info().Msg("stopped")
	return exitOK
}

func newLogger(o *options, stderr io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(o.logLevel)
	if err != nil || o.logLevel == "" {
		return zerolog.Logger{}, fmt.Errorf("--log-level: unknown level %q", o.logLevel)
	}
	var w io.Writer = stderr
	if o.logFormat == "console" {
		w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// reloadOnHangup re-reads key files on SIGHUP, for key rotation.
func reloadOnHangup(ctx context.Context, v *auth.Verifier, log zerolog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := v.Reload(); err != nil {
				log.Error().Err(err).Msg("key reload failed; keeping the previous keys")
				continue
			}
			log.Info().Msg("keys reloaded")
		}
	}
}

// devTokens signs development tokens for the web demo's GET /dev/token, in
// development mode with a shared secret only; without --dev the path is not
// found.
func devTokens(o *options, secret []byte) func(user string) (string, error) {
	if !o.dev || len(secret) == 0 {
		return nil
	}
	return func(user string) (string, error) {
		return auth.Mint(secret, user, 24*time.Hour, time.Now())
	}
}

func printDevHelp(w io.Writer, secret []byte, addr string) {
	now := time.Now()
	alice, _ := auth.Mint(secret, "alice", 24*time.Hour, now)
	bob, _ := auth.Mint(secret, "bob", 24*time.Hour, now)
	url := "ws://" + addr + transport.SyncPath
	self := selfCommand()
	fmt.Fprintf(w, `
livestore-relay is running in development mode on %s
HS256 secret: %s

Tokens, valid for 24 hours:
  alice  %s
  bob    %s

Try it: run each of these in its own terminal (two devices of alice), type a
line in one and watch it arrive in the other; a line of JSON is sent as is.
  %s connect --client-id laptop --url '%s?token=%s'
  %s connect --client-id phone  --url '%s?token=%s'

A web app gets a token for any user from http://%s%s?user=alice
(development mode only).

`, addr, secret, alice, bob, self, url, alice, self, url, alice, addr, transport.DevTokenPath)
}

// selfCommand is how a person runs this same binary from any directory: its
// absolute path. A binary built by `go run` lives in a directory that is
// gone once it exits, so then it is `go run` again, from the repository.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, string(os.PathSeparator)+"go-build") {
		return "go run ./cmd/relay"
	}
	return exe
}

func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "HS256 secret (default: $RELAY_JWT_SECRET)")
	sub := fs.String("sub", "", "user id (the sub claim)")
	ttl := fs.Duration("ttl", time.Hour, "time to live")
	iss := fs.String("iss", "", "iss claim (for a relay run with --jwt-issuer)")
	aud := fs.String("aud", "", "aud claim (for a relay run with --jwt-audience)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *secret == "" {
		*secret = os.Getenv("RELAY_JWT_SECRET")
	}
	if *secret == "" || *sub == "" || *ttl <= 0 {
		fmt.Fprintln(stderr, "relay token: --secret, --sub and a positive --ttl are required")
		return exitUsage
	}
	now := time.Now()
	claims := jwt.MapClaims{"sub": *sub, "iat": now.Unix(), "exp": now.Add(*ttl).Unix()}
	if *iss != "" {
		claims["iss"] = *iss
	}
	if *aud != "" {
		claims["aud"] = *aud
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(*secret))
	if err != nil {
		fmt.Fprintf(stderr, "relay token: %v\n", err)
		return exitFailed
	}
	fmt.Fprintln(stdout, tok)
	return exitOK
}

// serveProfiles serves net/http/pprof on its own listener, apart from the
// public surface, for an operator who needs CPU or heap profiles.
func serveProfiles(addr string, log zerolog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving profiles")
	return func() { _ = srv.Close() }, nil
}
