package integration

import (
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

func TestBinaryTokenCommandSetsIssuerAndAudienceForARelayThatRequiresThem(t *testing.T) {
	const secret, iss, aud = "ops-secret-with-iss-and-aud", "https://issuer.example", "livestore-relay"
	s, _ := relaytest.StartBinary(t, relaytest.CleanEnv(), "--jwt-secret", secret, "--jwt-issuer", iss, "--jwt-audience", aud)
	mint := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := relaytest.Run(t, relaytest.CleanEnv(), append([]string{"token", "--secret", secret, "--sub", "alice"}, args...)...)
		if code != 0 {
			t.Fatalf("relay token %v: exit %d\n%s", args, code, stderr)
		}
		return strings.TrimSpace(stdout)
	}
	good := mint("--iss", iss, "--aud", aud)
	expectRelayed(t, dialToken(t, s, good, "laptop"), dialToken(t, s, good, "phone"))
	expectRefused(t, s, tokenURL(s, mint()), nil, 401, "unauthorized")
}

var devSecretPattern = regexp.MustCompile(`HS256 secret: (\S+)`)

func TestBinaryDevModeSecretMintsMoreTokens(t *testing.T) {
	p := relaytest.Exec(t, relaytest.CleanEnv(), "--dev", "--addr", "127.0.0.1:0")
	var secret, addr string
	relaytest.Eventually(t, relaytest.Timeout, "the dev secret and address on stdout", func() bool {
		m, u := devSecretPattern.FindStringSubmatch(p.Stdout()), devURLPattern.FindStringSubmatch(p.Stdout())
		if m != nil && u != nil {
			secret, addr = m[1], u[1]
		}
		return addr != ""
	})
	code, stdout, stderr := relaytest.Run(t, relaytest.CleanEnv(), "token", "--secret", secret, "--sub", "carol", "--ttl", "10m")
	if code != 0 {
		t.Fatalf("relay token: exit %d\n%s", code, stderr)
	}
	tok := strings.TrimSpace(stdout)
	s := p.Server(addr)
	expectRelayed(t, dialToken(t, s, tok, "laptop"), dialToken(t, s, tok, "phone"))
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
