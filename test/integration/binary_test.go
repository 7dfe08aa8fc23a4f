package integration

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// secretEnv gives the binary the secret that relaytest tokens are signed with.
func secretEnv() string { return "RELAY_JWT_SECRET=" + string(relaytest.Secret) }

func TestBinaryWithoutAKeyExitsWithAOneLineError(t *testing.T) {
	code, stdout, stderr := relaytest.Run(t, relaytest.CleanEnv(), "--addr", "127.0.0.1:0")
	if code != 2 {
		t.Fatalf("exit code %d, want 2\nstderr:\n%s", code, stderr)
	}
	msg := strings.TrimSuffix(stderr, "\n")
	if msg == "" || strings.Contains(msg, "\n") {
		t.Fatalf("stderr %q, want a one-line message", stderr)
	}
	if stdout != "" {
		t.Fatalf("stdout %q, want nothing", stdout)
	}
}

func TestBinaryWithABadFlagValueExits2(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		args []string
	}{
		{"integer flag", nil, []string{"--max-conns-per-user", "many"}},
		{"duration flag", nil, []string{"--ping-interval", "soon"}},
		{"float flag", nil, []string{"--rate", "fast"}},
		{"log format", nil, []string{"--log-format", "xml"}},
		{"log level", nil, []string{"--log-level", "loud"}},
		{"unknown flag", nil, []string{"--no-such-flag"}},
		// A variable stands for its flag, so a bad value is refused alike.
		{"variable", []string{"RELAY_MAX_CONNS_PER_USER=many"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := relaytest.CleanEnv(append([]string{secretEnv()}, c.env...)...)
			code, _, stderr := relaytest.Run(t, env, append([]string{"--addr", "127.0.0.1:0"}, c.args...)...)
			if code != 2 {
				t.Fatalf("exit code %d, want 2\nstderr:\n%s", code, stderr)
			}
			if strings.TrimSpace(stderr) == "" {
				t.Fatal("no message on stderr")
			}
		})
	}
}

func TestBinaryTakesLimitsFromTheEnvironmentAndFlagsBeatVariables(t *testing.T) {
	cases := []struct {
		name  string
		env   string
		args  []string
		limit int
	}{
		{"variable alone", "RELAY_MAX_CONNS_PER_USER=1", nil, 1},
		{"flag below its variable", "RELAY_MAX_CONNS_PER_USER=3", []string{"--max-conns-per-user", "1"}, 1},
		{"flag above its variable", "RELAY_MAX_CONNS_PER_USER=1", []string{"--max-conns-per-user=2"}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := relaytest.StartBinary(t, relaytest.CleanEnv(secretEnv(), c.env), c.args...)
			for i := 0; i < c.limit; i++ {
				s.Dial(t, "alice", "device")
			}
			_, resp, err := dialUser(t, s, "alice")
			checkRefusal(t, resp, err, http.StatusTooManyRequests, "too_many_connections")
		})
	}
}

func TestBinaryReadsTheSecretFileWithoutItsTrailingNewline(t *testing.T) {
	path := writeFile(t, "secret", append(append([]byte{}, relaytest.Secret...), '\n'))
	s, _ := relaytest.StartBinary(t, relaytest.CleanEnv(), "--jwt-secret-file", path)
	expectRelayed(t, s.Dial(t, "alice", "laptop"), s.Dial(t, "alice", "phone"))
}

// jwtClaims decodes the claims of a token without checking it.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWT", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("claims of %q: %v", tok, err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("claims of %q: %v", tok, err)
	}
	return c
}

func TestBinaryTokenCommandPrintsATokenTheRelayAccepts(t *testing.T) {
	const secret = "ops-secret-for-the-token-command"
	code, stdout, stderr := relaytest.Run(t, relaytest.CleanEnv(), "token", "--secret", secret, "--sub", "alice", "--ttl", "1h")
	if code != 0 {
		t.Fatalf("exit code %d\nstderr:\n%s", code, stderr)
	}
	tok := strings.TrimSuffix(stdout, "\n")
	if tok == "" || strings.ContainsAny(tok, " \n") {
		t.Fatalf("stdout %q, want the token alone on one line", stdout)
	}
	claims := jwtClaims(t, tok)
	if claims["sub"] != "alice" {
		t.Fatalf("sub %v, want alice", claims["sub"])
	}
	exp, _ := claims["exp"].(float64)
	if left := time.Until(time.Unix(int64(exp), 0)); left < 59*time.Minute || left > 61*time.Minute {
		t.Fatalf("token expires in %v, want 1h", left)
	}

	s, _ := relaytest.StartBinary(t, relaytest.CleanEnv(), "--jwt-secret", secret)
	expectRelayed(t, dialToken(t, s, tok, "laptop"), dialToken(t, s, tok, "phone"))
}

var (
	jwtPattern    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)
	devURLPattern = regexp.MustCompile(`ws://([^/\s'"]+)/api/v1/livestore/sync\?token=[A-Za-z0-9_.-]+`)
)

func TestBinaryDevModePrintsTokensForTwoUsersThatWork(t *testing.T) {
	p := relaytest.Exec(t, relaytest.CleanEnv(), "--dev", "--addr", "127.0.0.1:0")
	tokens := map[string]string{} // sub → token
	var example []string
	relaytest.Eventually(t, 15*time.Second, "tokens and an example command on stdout", func() bool {
		select {
		case <-p.Exited():
			t.Fatalf("relay --dev exited\nstdout:\n%s\nstderr:\n%s", p.Stdout(), p.Stderr())
		default:
		}
		out := p.Stdout()
		for _, tok := range jwtPattern.FindAllString(out, -1) {
			if sub, ok := jwtClaims(t, tok)["sub"].(string); ok {
				tokens[sub] = tok
			}
		}
		example = devURLPattern.FindStringSubmatch(out)
		return len(tokens) >= 2 && example != nil
	})
	s := p.Server(example[1])
	t.Cleanup(func() { s.Stop(t) })

	// The printed command's URL connects as it is.
	_, resp, err := s.DialWith(t, example[0], nil)
	if err != nil {
		t.Fatalf("example URL %s refused: %v (status %d)", example[0], err, statusOf(resp))
	}
	for sub, tok := range tokens {
		t.Run(sub, func(t *testing.T) {
			// Two devices of each printed user reach each other.
			expectRelayed(t, dialToken(t, s, tok, "laptop"), dialToken(t, s, tok, "phone"))
		})
	}
	t.Run("any origin is allowed", func(t *testing.T) {
		h := http.Header{"Origin": {"https://evil.example.com"}}
		expectRelayed(t, dialAccepted(t, s, example[0], h, "browser"), dialAccepted(t, s, example[0], nil, "phone"))
	})

	errOut := p.Stderr()
	for _, tok := range tokens {
		if strings.Contains(errOut, tok) {
			t.Errorf("a token was written to the log:\n%s", errOut)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if strings.HasPrefix(line, "{") {
			t.Errorf("log line %q is JSON, want the console format in --dev", line)
		}
	}
}

func TestBinaryDrainsOnSignalAndExits0(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			s, p := relaytest.StartBinary(t, relaytest.CleanEnv(secretEnv()))
			bound := s.Dial(t, "alice", "laptop")
			bound.Bind()
			unbound := s.Dial(t, "alice", "phone")
			p.Signal(sig)
			bound.ExpectClose(websocket.StatusGoingAway)
			unbound.ExpectClose(websocket.StatusGoingAway)
			if code := p.Wait(15 * time.Second); code != 0 {
				t.Fatalf("exit code %d after %v, want 0\nstderr:\n%s", code, sig, p.Stderr())
			}
		})
	}
}

func TestBinaryHelpListsEveryFlag(t *testing.T) {
	code, stdout, stderr := relaytest.Run(t, relaytest.CleanEnv(), "--help")
	if code != 0 {
		t.Fatalf("exit code %d, want 0\nstderr:\n%s", code, stderr)
	}
	help := stdout + stderr
	flags := []string{
		// The binary and its configuration.
		"addr", "jwt-secret", "jwt-secret-file", "jwt-public-key-file", "jwks-file",
		"jwt-issuer", "jwt-audience", "jwt-user-claim", "allowed-origins", "dev",
		"log-level", "log-format",
		// Limits.
		"max-message-bytes", "max-events-per-push", "max-conns-per-user", "max-conns",
		"max-pending-peer-pulls", "peer-pull-timeout", "send-queue-messages", "send-queue-bytes",
		"rate", "rate-burst", "ping-interval", "handshake-timeout", "jwt-leeway", "drain-timeout",
	}
	for _, f := range flags {
		if !regexp.MustCompile(`(?m)^\s*--?` + regexp.QuoteMeta(f) + `([\s=,]|$)`).MatchString(help) {
			t.Errorf("--help does not list --%s", f)
		}
	}
	if t.Failed() {
		t.Logf("help:\n%s", help)
	}
}

// relay connect waits for lines on its standard input; a close by the
// server must end it all the same, with the code on standard error.
func TestBinaryConnectExitsWhenTheServerCloses(t *testing.T) {
	s, relay := relaytest.StartBinary(t, relaytest.CleanEnv(secretEnv()))
	// An *os.File, so that the child reads it directly and exits without
	// waiting for a copying goroutine that would block on the open pipe.
	stdin, keepOpen, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = keepOpen.Close() })
	cli := relaytest.ExecInput(t, relaytest.CleanEnv(), stdin, "connect", "--client-id", "laptop",
		"--url", s.URL+"?token="+relaytest.Token(t, "alice"))
	phone := s.Dial(t, "alice", "phone")
	relaytest.Eventually(t, 10*time.Second, "relay connect bound as a device", func() bool {
		return slices.Contains(phone.Bind().OnlinePeers, "laptop")
	})
	relay.Signal(syscall.SIGTERM)
	select {
	case <-cli.Exited():
	case <-time.After(15 * time.Second):
		t.Fatalf("relay connect still running after the server closed\nstderr:\n%s", cli.Stderr())
	}
	if code := cli.Wait(time.Second); code != 0 {
		t.Errorf("exit code %d after a 1001 close, want 0", code)
	}
	if !strings.Contains(cli.Stderr(), "closed by server: 1001") {
		t.Errorf("stderr does not give the close code:\n%s", cli.Stderr())
	}
}
