package integration

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/livestore-relay/livestore-relay/auth"
	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// claimsFor returns the claims of a valid token for user, changed by mods.
func claimsFor(user string, mods ...func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": user, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for _, m := range mods {
		m(c)
	}
	return c
}

// hs256 signs claims with the secret every test server accepts.
func hs256(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	return relaytest.SignedToken(t, jwt.SigningMethodHS256, relaytest.Secret, c)
}

// withKID signs claims with method and key, naming kid in the header.
func withKID(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenURL is the sync URL of s carrying tok in the query.
func tokenURL(s *relaytest.Server, tok string) string {
	return s.URL + "?token=" + url.QueryEscape(tok)
}

// dialToken connects device clientID with tok in the query and fails the
// test if the upgrade is refused.
func dialToken(t *testing.T, s *relaytest.Server, tok, clientID string) *relaytest.Client {
	t.Helper()
	return dialAccepted(t, s, tokenURL(s, tok), nil, clientID)
}

// dialAccepted connects device clientID to u with headers h and fails the
// test if the upgrade is refused.
func dialAccepted(t *testing.T, s *relaytest.Server, u string, h http.Header, clientID string) *relaytest.Client {
	t.Helper()
	return s.DialDevice(t, u, h, clientID)
}

func statusOf(r *http.Response) int { return relaytest.StatusOf(r) }

func bodyOf(r *http.Response) string { return relaytest.BodyOf(r) }

// upgradeRefusal is the answer to an upgrade the relay refused.
type upgradeRefusal struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// checkRefusal fails unless the upgrade answered by resp and err was refused
// with status and a JSON error body carrying code and a message.
func checkRefusal(t *testing.T, resp *http.Response, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("upgrade accepted, want %d %s", status, code)
	}
	if resp == nil {
		t.Fatalf("upgrade failed without a response (%v), want %d %s", err, status, code)
	}
	body := bodyOf(resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d (body %s), want %d", resp.StatusCode, body, status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var r upgradeRefusal
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if r.Type != "error" || r.Code != code || r.Message == "" {
		t.Fatalf("body %s, want {\"type\":\"error\",\"code\":%q,\"message\":...}", body, code)
	}
}

// expectRefused dials u with headers h and fails unless the upgrade is
// refused with status and code.
func expectRefused(t *testing.T, s *relaytest.Server, u string, h http.Header, status int, code string) {
	t.Helper()
	_, resp, err := s.DialWith(t, u, h)
	checkRefusal(t, resp, err, status, code)
}

// expectRelayed binds both devices (of one user), sends a push from one and
// fails unless the other receives it byte for byte and the sender its ack.
func expectRelayed(t *testing.T, from, to *relaytest.Client) {
	t.Helper()
	from.Bind()
	to.Bind()
	sent := from.Push(from.Event(map[string]any{"text": "relayed"}))
	if got := to.Expect("push"); !bytes.Equal(got.Raw, sent) {
		t.Fatalf("relayed bytes differ:\n sent %s\n got  %s", sent, got.Raw)
	}
	var n int
	from.Expect("ack").Field(t, "receivedCount", &n)
	if n != 1 {
		t.Fatalf("receivedCount = %d, want 1", n)
	}
}

// writeFile writes data to a new file in the test's temporary directory.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pemFile writes the public keys as a PEM file of PUBLIC KEY blocks.
func pemFile(t *testing.T, keys ...crypto.PublicKey) string {
	t.Helper()
	var buf bytes.Buffer
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "PUBLIC KEY", Bytes: der}); err != nil {
			t.Fatal(err)
		}
	}
	return writeFile(t, "keys.pem", buf.Bytes())
}

func TestUpgradeWithInvalidTokenIsRefusedUnauthorized(t *testing.T) {
	s := relaytest.Start(t)
	otherSecret := []byte("not-the-relay-secret-0123456789ab")
	now := time.Now()
	set := func(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
	del := func(k string) func(jwt.MapClaims) { return func(c jwt.MapClaims) { delete(c, k) } }
	cases := []struct {
		name string
		url  string
	}{
		{"no token", s.URL},
		{"empty query token", s.URL + "?token="},
		{"not a JWT", s.URL + "?token=not-a-token"},
		{"three garbage parts", s.URL + "?token=abc.def.ghi"},
		{"bad signature", tokenURL(s, relaytest.SignedToken(t, jwt.SigningMethodHS256, otherSecret, claimsFor("alice")))},
		{"signature of another token", tokenURL(s, func() string {
			// Header and claims of one valid token, signature of another.
			a := strings.Split(relaytest.Token(t, "alice"), ".")
			b := strings.Split(relaytest.Token(t, "mallory"), ".")
			return b[0] + "." + b[1] + "." + a[2]
		}())},
		{"alg none", tokenURL(s, relaytest.SignedToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor("alice")))},
		{"expired", tokenURL(s, hs256(t, claimsFor("alice", set("exp", now.Add(-time.Hour).Unix()))))},
		{"expired beyond leeway", tokenURL(s, hs256(t, claimsFor("alice", set("exp", now.Add(-45*time.Second).Unix()))))},
		{"no exp", tokenURL(s, hs256(t, claimsFor("alice", del("exp"))))},
		{"nbf in the future", tokenURL(s, hs256(t, claimsFor("alice", set("nbf", now.Add(time.Hour).Unix()))))},
		{"iat in the future beyond leeway", tokenURL(s, hs256(t, claimsFor("alice", set("iat", now.Add(2*time.Minute).Unix()))))},
		{"empty sub", tokenURL(s, hs256(t, claimsFor("alice", set("sub", ""))))},
		{"no sub", tokenURL(s, hs256(t, claimsFor("alice", del("sub"))))},
		{"sub not a string", tokenURL(s, hs256(t, claimsFor("alice", set("sub", 42))))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectRefused(t, s, c.url, nil, http.StatusUnauthorized, "unauthorized")
		})
	}
}

func TestTokenTimeClaimsWithinLeewayAndUncheckedClaimsAreAccepted(t *testing.T) {
	s := relaytest.Start(t)
	now := time.Now()
	set := func(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
	cases := []struct {
		name   string
		claims jwt.MapClaims
	}{
		{"nbf 10s ahead", claimsFor("alice", set("nbf", now.Add(10*time.Second).Unix()))},
		{"iat 10s ahead", claimsFor("alice", set("iat", now.Add(10*time.Second).Unix()))},
		{"no iat", claimsFor("alice", func(c jwt.MapClaims) { delete(c, "iat") })},
		// Issuer and audience are not configured, so they are not checked.
		{"any iss and aud", claimsFor("alice", set("iss", "https://anyone.example"), set("aud", "anything"))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			laptop := dialToken(t, s, hs256(t, c.claims), "laptop")
			phone := s.Dial(t, "alice", "phone")
			expectRelayed(t, laptop, phone)
		})
	}
	t.Run("exp 10s ago", func(t *testing.T) {
		// The upgrade is accepted; what happens to a connection whose token
		// has expired is another matter, so only the upgrade is checked.
		dialToken(t, s, hs256(t, claimsFor("alice", set("exp", now.Add(-10*time.Second).Unix()))), "laptop")
	})
}

func TestHMACTokenIsRefusedWhenOnlyAPublicKeyIsConfigured(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemPath := pemFile(t, &rsaKey.PublicKey)
	pemBytes, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	s := relaytest.Start(t, relaytest.WithAuth(func(a *auth.Config) {
		a.Secret = nil
		a.PublicKeyFile = pemPath
	}))
	cases := []struct {
		name string
		tok  string
	}{
		{"HS256 with the test secret", hs256(t, claimsFor("alice"))},
		// The classic confusion: the public key used as an HMAC secret.
		{"HS256 keyed with the public key PEM", relaytest.SignedToken(t, jwt.SigningMethodHS256, pemBytes, claimsFor("alice"))},
		{"HS512 keyed with the public key PEM", relaytest.SignedToken(t, jwt.SigningMethodHS512, pemBytes, claimsFor("alice"))},
		{"alg none", relaytest.SignedToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor("alice"))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectRefused(t, s, tokenURL(s, c.tok), nil, http.StatusUnauthorized, "unauthorized")
		})
	}
	t.Run("RS256 with the key is accepted", func(t *testing.T) {
		tok := relaytest.SignedToken(t, jwt.SigningMethodRS256, rsaKey, claimsFor("alice"))
		expectRelayed(t, dialToken(t, s, tok, "laptop"), dialToken(t, s, tok, "phone"))
	})
}

func TestAsymmetricTokensAreAcceptedEndToEnd(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, strangerKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		pub    crypto.PublicKey
		method jwt.SigningMethod
		key    any
	}{
		{"RS256", &rsaKey.PublicKey, jwt.SigningMethodRS256, rsaKey},
		{"PS256", &rsaKey.PublicKey, jwt.SigningMethodPS256, rsaKey},
		{"ES256", &ecKey.PublicKey, jwt.SigningMethodES256, ecKey},
		{"EdDSA", edPub, jwt.SigningMethodEdDSA, edKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := relaytest.Start(t, relaytest.WithAuth(func(a *auth.Config) {
				a.Secret = nil
				a.PublicKeyFile = pemFile(t, c.pub)
			}))
			laptop := dialToken(t, s, relaytest.SignedToken(t, c.method, c.key, claimsFor("alice")), "laptop")
			phone := dialToken(t, s, relaytest.SignedToken(t, c.method, c.key, claimsFor("alice")), "phone")
			expectRelayed(t, laptop, phone)

			forged := relaytest.SignedToken(t, jwt.SigningMethodEdDSA, strangerKey, claimsFor("alice"))
			expectRefused(t, s, tokenURL(s, forged), nil, http.StatusUnauthorized, "unauthorized")
		})
	}
}

// jwksFile writes a JWKS document holding the public keys, named by kid.
func jwksFile(t *testing.T, keys map[string]crypto.PublicKey) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for kid, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k, KeyID: kid, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "jwks.json", b)
}

func TestJWKSKeyIsChosenByKid(t *testing.T) {
	pub1, key1, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub2, key2, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := relaytest.Start(t, relaytest.WithAuth(func(a *auth.Config) {
		a.Secret = nil
		a.JWKSFile = jwksFile(t, map[string]crypto.PublicKey{"k1": pub1, "k2": pub2, "ec": &ecKey.PublicKey})
	}))

	t.Run("each kid selects its key", func(t *testing.T) {
		laptop := dialToken(t, s, withKID(t, jwt.SigningMethodEdDSA, key2, "k2", claimsFor("alice")), "laptop")
		phone := dialToken(t, s, withKID(t, jwt.SigningMethodEdDSA, key1, "k1", claimsFor("alice")), "phone")
		tablet := dialToken(t, s, withKID(t, jwt.SigningMethodES256, ecKey, "ec", claimsFor("alice")), "tablet")
		expectRelayed(t, laptop, phone)
		if got := tablet.Bind(); len(got.OnlinePeers) != 2 {
			t.Fatalf("onlinePeers %v, want laptop and phone", got.OnlinePeers)
		}
	})

	refused := []struct {
		name string
		tok  string
	}{
		{"kid names another key", withKID(t, jwt.SigningMethodEdDSA, key2, "k1", claimsFor("alice"))},
		{"kid not in the set", withKID(t, jwt.SigningMethodEdDSA, key2, "k9", claimsFor("alice"))},
		{"no kid with several keys", relaytest.SignedToken(t, jwt.SigningMethodEdDSA, key2, claimsFor("alice"))},
		{"HS256 without a secret", withKID(t, jwt.SigningMethodHS256, relaytest.Secret, "k1", claimsFor("alice"))},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			expectRefused(t, s, tokenURL(s, c.tok), nil, http.StatusUnauthorized, "unauthorized")
		})
	}
}

func TestJWKSWithOneKeyAcceptsTokenWithoutKid(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := relaytest.Start(t, relaytest.WithAuth(func(a *auth.Config) {
		a.Secret = nil
		a.JWKSFile = jwksFile(t, map[string]crypto.PublicKey{"only": pub})
	}))
	laptop := dialToken(t, s, relaytest.SignedToken(t, jwt.SigningMethodEdDSA, key, claimsFor("alice")), "laptop")
	phone := dialToken(t, s, withKID(t, jwt.SigningMethodEdDSA, key, "only", claimsFor("alice")), "phone")
	expectRelayed(t, laptop, phone)
}

func TestIssuerAndAudienceAreRequiredWhenConfigured(t *testing.T) {
	const iss, aud = "https://issuer.example", "livestore-relay"
	s := relaytest.Start(t, relaytest.WithAuth(func(a *auth.Config) {
		a.Issuer = iss
		a.Audience = aud
	}))
	set := func(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
	del := func(k string) func(jwt.MapClaims) { return func(c jwt.MapClaims) { delete(c, k) } }
	right := []func(jwt.MapClaims){set("iss", iss), set("aud", aud)}
	cases := []struct {
		name     string
		mods     []func(jwt.MapClaims)
		accepted bool
	}{
		{"right iss and aud", nil, true},
		{"aud list holding the audience", []func(jwt.MapClaims){set("aud", []string{"other", aud})}, true},
		{"wrong iss", []func(jwt.MapClaims){set("iss", "https://evil.example")}, false},
		{"no iss", []func(jwt.MapClaims){del("iss")}, false},
		{"wrong aud", []func(jwt.MapClaims){set("aud", "another-service")}, false},
		{"aud list without the audience", []func(jwt.MapClaims){set("aud", []string{"a", "b"})}, false},
		{"no aud", []func(jwt.MapClaims){del("aud")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := hs256(t, claimsFor("alice", append(append([]func(jwt.MapClaims){}, right...), c.mods...)...))
			if !c.accepted {
				expectRefused(t, s, tokenURL(s, tok), nil, http.StatusUnauthorized, "unauthorized")
				return
			}
			other := hs256(t, claimsFor("alice", right...))
			expectRelayed(t, dialToken(t, s, tok, "laptop"), dialToken(t, s, other, "phone"))
		})
	}
}

func TestCustomUserClaimNamesTheUser(t *testing.T) {
	const claim = "https://example.com/uid"
	s := relaytest.Start(t, relaytest.WithAuth(func(a *auth.Config) { a.UserClaim = claim }))
	uid := func(v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[claim] = v } }

	// Same user by the configured claim, different sub: one user.
	laptop := dialToken(t, s, hs256(t, claimsFor("sub-one", uid("alice"))), "laptop")
	phone := dialToken(t, s, hs256(t, claimsFor("sub-two", uid("alice"))), "phone")
	// Same sub as the laptop, another user by the configured claim.
	stranger := dialToken(t, s, hs256(t, claimsFor("sub-one", uid("bob"))), "laptop")
	stranger.Bind()
	expectRelayed(t, laptop, phone)
	stranger.ExpectQuiet()

	for name, tok := range map[string]string{
		"only sub":    hs256(t, claimsFor("alice")),
		"empty claim": hs256(t, claimsFor("alice", uid(""))),
	} {
		t.Run(name, func(t *testing.T) {
			expectRefused(t, s, tokenURL(s, tok), nil, http.StatusUnauthorized, "unauthorized")
		})
	}
}

// cookie is a request header carrying tok in the auth_token cookie.
func cookie(tok string) http.Header {
	return http.Header{"Cookie": {"theme=dark; auth_token=" + tok}}
}

func TestCookieTokenAuthenticatesWhenNoQueryToken(t *testing.T) {
	s := relaytest.Start(t)
	browser := dialAccepted(t, s, s.URL, cookie(relaytest.Token(t, "alice")), "browser")
	phone := s.Dial(t, "alice", "phone")
	expectRelayed(t, browser, phone)
}

func TestQueryTokenIsUsedEvenWhenACookieIsPresent(t *testing.T) {
	s := relaytest.Start(t)
	valid := relaytest.Token(t, "alice")
	expired := hs256(t, claimsFor("alice", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))
	for name, u := range map[string]string{
		"invalid query token":  tokenURL(s, "not-a-token"),
		"expired query token":  tokenURL(s, expired),
		"empty query token":    s.URL + "?token=",
		"bare token parameter": s.URL + "?token",
	} {
		t.Run(name+" with a valid cookie is refused", func(t *testing.T) {
			// An empty or bare token parameter is still a token parameter:
			// it is present, so the cookie is not looked at.
			expectRefused(t, s, u, cookie(valid), http.StatusUnauthorized, "unauthorized")
		})
	}
	t.Run("valid query token with an invalid cookie is accepted", func(t *testing.T) {
		c := dialAccepted(t, s, tokenURL(s, valid), cookie("not-a-token"), "laptop")
		expectRelayed(t, c, s.Dial(t, "alice", "phone"))
	})
	t.Run("invalid cookie alone is refused", func(t *testing.T) {
		expectRefused(t, s, s.URL, cookie("not-a-token"), http.StatusUnauthorized, "unauthorized")
	})
}

// dialFresh upgrades to u on a connection of its own (never one a previous
// request left open), with headers h and, when host is not empty, that Host
// header.
func dialFresh(t *testing.T, u string, h http.Header, host string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), relaytest.Timeout)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		Host: host, HTTPHeader: h, HTTPClient: &http.Client{Transport: tr},
	})
	if err == nil {
		t.Cleanup(func() { _ = conn.CloseNow() })
	}
	return conn, resp, err
}

func TestOriginMustBeTheSameHostUnlessAllowed(t *testing.T) {
	s := relaytest.Start(t)
	_, port, _ := strings.Cut(s.Addr, ":")
	cases := []struct {
		origin  string // "" sends no Origin header
		allowed bool
	}{
		{"", true},
		{"http://" + s.Addr, true},
		{"https://" + s.Addr, true},
		{"http://localhost:" + port, false},
		{"http://127.0.0.1", false},
		{"http://127.0.0.1:1", false},
		{"https://evil.example.com", false},
		{"null", false},
	}
	for _, c := range cases {
		name := c.origin
		if name == "" {
			name = "no origin"
		}
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			if c.origin != "" {
				h.Set("Origin", c.origin)
			}
			u := tokenURL(s, relaytest.Token(t, "alice"))
			if !c.allowed {
				expectRefused(t, s, u, h, http.StatusForbidden, "forbidden_origin")
				return
			}
			expectRelayed(t, dialAccepted(t, s, u, h, "browser"), s.Dial(t, "alice", "phone"))
		})
	}
}

func TestOriginDefaultPortIsOmittedWhenComparedWithHost(t *testing.T) {
	s := relaytest.Start(t)
	cases := []struct {
		host, origin string
		allowed      bool
	}{
		{"relay.example.com", "https://relay.example.com", true},
		{"relay.example.com", "http://relay.example.com", true},
		{"relay.example.com", "https://RELAY.example.com", true},
		{"relay.example.com:8443", "https://relay.example.com:8443", true},
		{"relay.example.com", "https://relay.example.com:8443", false},
		{"relay.example.com:8443", "https://relay.example.com", false},
		{"relay.example.com", "https://app.example.com", false},
	}
	for _, c := range cases {
		t.Run(c.host+" from "+c.origin, func(t *testing.T) {
			h := http.Header{}
			if c.origin != "" {
				h.Set("Origin", c.origin)
			}
			_, resp, err := dialFresh(t, tokenURL(s, relaytest.Token(t, "alice")), h, c.host)
			if c.allowed {
				if err != nil {
					t.Fatalf("refused: %v (status %d, body %s)", err, statusOf(resp), bodyOf(resp))
				}
				return
			}
			checkRefusal(t, resp, err, http.StatusForbidden, "forbidden_origin")
		})
	}
}

// withOrigins configures the allowed origins as --allowed-origins would.
func withOrigins(t *testing.T, allowed ...string) relaytest.Option {
	p, err := auth.NewOriginPolicy(allowed)
	if err != nil {
		t.Fatal(err)
	}
	return relaytest.WithLimits(func(c *transport.Config) { c.Origins = p })
}

func TestListedOriginsAreAllowed(t *testing.T) {
	s := relaytest.Start(t, withOrigins(t, "https://app.example.com", "http://localhost:3000"))
	cases := []struct {
		origin  string
		allowed bool
	}{
		{"https://app.example.com", true},
		{"http://localhost:3000", true},
		{"http://" + s.Addr, true},
		{"http://app.example.com", false},
		{"https://app.example.com:8443", false},
		{"http://localhost:3001", false},
		{"https://evil.example.com", false},
	}
	for _, c := range cases {
		t.Run(c.origin, func(t *testing.T) {
			h := http.Header{"Origin": {c.origin}}
			u := tokenURL(s, relaytest.Token(t, "alice"))
			if !c.allowed {
				expectRefused(t, s, u, h, http.StatusForbidden, "forbidden_origin")
				return
			}
			expectRelayed(t, dialAccepted(t, s, u, h, "browser"), s.Dial(t, "alice", "phone"))
		})
	}
}

func TestWildcardOriginAllowsAnyOrigin(t *testing.T) {
	s := relaytest.Start(t, withOrigins(t, "*"))
	for _, origin := range []string{"https://evil.example.com", "http://localhost:3000", "http://" + s.Addr} {
		t.Run(origin, func(t *testing.T) {
			h := http.Header{"Origin": {origin}}
			expectRelayed(t, dialAccepted(t, s, tokenURL(s, relaytest.Token(t, "alice")), h, "browser"), s.Dial(t, "alice", "phone"))
		})
	}
}

func TestOriginIsCheckedForCookieTokens(t *testing.T) {
	s := relaytest.Start(t, withOrigins(t, "https://app.example.com"))
	tok := relaytest.Token(t, "alice")
	with := func(origin string) http.Header {
		h := cookie(tok)
		h.Set("Origin", origin)
		return h
	}
	t.Run("foreign origin is refused", func(t *testing.T) {
		expectRefused(t, s, s.URL, with("https://evil.example.com"), http.StatusForbidden, "forbidden_origin")
	})
	for _, origin := range []string{"https://app.example.com", "http://" + s.Addr} {
		t.Run(origin+" is allowed", func(t *testing.T) {
			expectRelayed(t, dialAccepted(t, s, s.URL, with(origin), "browser"), s.Dial(t, "alice", "phone"))
		})
	}
}
