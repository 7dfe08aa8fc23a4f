package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// expectOK verifies token and checks the user id.
func expectOK(t testing.TB, v *Verifier, token, user string) Identity {
	t.Helper()
	id, err := v.Verify(token)
	if err != nil {
		t.Fatalf("Verify: unexpected error: %v", err)
	}
	if id.UserID != user {
		t.Fatalf("UserID = %q, want %q", id.UserID, user)
	}
	return id
}

// expectReason verifies token and checks that it is refused for want.
func expectReason(t testing.TB, v *Verifier, token string, want Reason) {
	t.Helper()
	id, err := v.Verify(token)
	if err == nil {
		t.Fatalf("Verify accepted the token (user %q), want reason %s", id.UserID, want)
	}
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T is not *Error: %v", err, err)
	}
	if ae.Reason != want {
		t.Fatalf("reason = %s, want %s (error: %v)", ae.Reason, want, err)
	}
	if token != "" && strings.Contains(err.Error(), token) {
		t.Fatalf("error message contains the token: %v", err)
	}
	if id != (Identity{}) {
		t.Fatalf("refused token returned identity %+v", id)
	}
}

func TestAcceptsEachAlgorithmFamily(t *testing.T) {
	k := fixtures(t)
	pemPath := pemFile(t, k.rsa.Public(), k.p256.Public(), k.p384.Public(), k.p521.Public(), k.ed.Public())
	jwksPath := jwksFile(t,
		jwk{kid: "rsa", key: k.rsa.Public()},
		jwk{kid: "p256", key: k.p256.Public()},
		jwk{kid: "p384", key: k.p384.Public()},
		jwk{kid: "p521", key: k.p521.Public()},
		jwk{kid: "ed", key: k.ed.Public()},
	)
	cases := []struct {
		method jwt.SigningMethod
		key    any
		kid    string
	}{
		{jwt.SigningMethodHS256, k.secret, ""},
		{jwt.SigningMethodHS384, k.secret, ""},
		{jwt.SigningMethodHS512, k.secret, ""},
		{jwt.SigningMethodRS256, k.rsa, "rsa"},
		{jwt.SigningMethodRS384, k.rsa, "rsa"},
		{jwt.SigningMethodRS512, k.rsa, "rsa"},
		{jwt.SigningMethodPS256, k.rsa, "rsa"},
		{jwt.SigningMethodPS384, k.rsa, "rsa"},
		{jwt.SigningMethodPS512, k.rsa, "rsa"},
		{jwt.SigningMethodES256, k.p256, "p256"},
		{jwt.SigningMethodES384, k.p384, "p384"},
		{jwt.SigningMethodES512, k.p521, "p521"},
		{jwt.SigningMethodEdDSA, k.ed, "ed"},
	}
	sources := []struct {
		name string
		cfg  Config
		kid  bool
	}{
		{"secret", Config{Secret: k.secret}, false},
		{"pem", Config{PublicKeyFile: pemPath}, false},
		{"jwks", Config{JWKSFile: jwksPath}, true},
	}
	for _, src := range sources {
		v := newVerifier(t, src.cfg)
		for _, c := range cases {
			hmac := algFamily(c.method.Alg()) == famHMAC
			if hmac != (src.name == "secret") {
				continue
			}
			t.Run(src.name+"/"+c.method.Alg(), func(t *testing.T) {
				kid := ""
				if src.kid {
					kid = c.kid
				}
				id := expectOK(t, v, sign(t, c.method, c.key, kid, claims(nil)), "alice")
				if !id.Expires.Equal(t0.Add(time.Hour)) {
					t.Fatalf("Expires = %v, want %v", id.Expires, t0.Add(time.Hour))
				}
			})
		}
	}
}

func TestPEMForms(t *testing.T) {
	k := fixtures(t)
	token := sign(t, jwt.SigningMethodRS256, k.rsa, "", claims(nil))
	for _, typ := range []string{"PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE"} {
		t.Run(typ, func(t *testing.T) {
			path := writeFile(t, "key.pem", pemBlock(t, typ, k.rsa.Public(), k.rsa))
			expectOK(t, newVerifier(t, Config{PublicKeyFile: path}), token, "alice")
		})
	}
	t.Run("ed25519 certificate", func(t *testing.T) {
		path := writeFile(t, "key.pem", pemBlock(t, "CERTIFICATE", k.ed.Public(), k.ed))
		expectOK(t, newVerifier(t, Config{PublicKeyFile: path}), sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims(nil)), "alice")
	})
	t.Run("several keys tried in turn", func(t *testing.T) {
		// The matching key is last, behind another key of the same family.
		path := pemFile(t, k.rsa2.Public(), k.p256b.Public(), k.rsa.Public())
		v := newVerifier(t, Config{PublicKeyFile: path})
		expectOK(t, v, token, "alice")
		expectOK(t, v, sign(t, jwt.SigningMethodRS256, k.rsa2, "", claims(nil)), "alice")
		expectReason(t, v, sign(t, jwt.SigningMethodES256, k.p256, "", claims(nil)), ReasonSignature)
	})
	t.Run("comments around blocks", func(t *testing.T) {
		data := append([]byte("# rotated 2024-01-01\n"), pemBlock(t, "PUBLIC KEY", k.rsa.Public(), nil)...)
		data = append(data, "trailing note\n"...)
		expectOK(t, newVerifier(t, Config{PublicKeyFile: writeFile(t, "k.pem", data)}), token, "alice")
	})
}

func TestRefusesAlgNone(t *testing.T) {
	k := fixtures(t)
	configs := map[string]Config{
		"secret": {Secret: k.secret},
		"pem":    {PublicKeyFile: pemFile(t, k.rsa.Public())},
		"jwks":   {JWKSFile: jwksFile(t, jwk{kid: "a", key: k.rsa.Public()})},
	}
	payload := fmt.Sprintf(`{"sub":"alice","exp":%d}`, t0.Add(time.Hour).Unix())
	tokens := map[string]string{
		"jwt none":      sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(nil)),
		"none":          rawToken(`{"alg":"none","typ":"JWT"}`, payload, nil),
		"None":          rawToken(`{"alg":"None"}`, payload, nil),
		"none with kid": rawToken(`{"alg":"none","kid":"a"}`, payload, nil),
		"none with sig": rawToken(`{"alg":"none"}`, payload, []byte("x")),
		"empty alg":     rawToken(`{"alg":""}`, payload, nil),
		"no alg":        rawToken(`{"typ":"JWT"}`, payload, nil),
		"unknown alg":   rawToken(`{"alg":"ES256K"}`, payload, []byte("x")),
		"alg number":    rawToken(`{"alg":256}`, payload, nil),
	}
	for cn, cfg := range configs {
		v := newVerifier(t, cfg)
		for tn, tok := range tokens {
			t.Run(cn+"/"+tn, func(t *testing.T) { expectReason(t, v, tok, ReasonAlgorithm) })
		}
	}
}

func TestAlgorithmWithoutKey(t *testing.T) {
	k := fixtures(t)
	rsaPEM := writeFile(t, "rsa.pem", pemBlock(t, "PUBLIC KEY", k.rsa.Public(), nil))
	rsaOnly := newVerifier(t, Config{PublicKeyFile: rsaPEM})
	pemBytes, err := os.ReadFile(rsaPEM)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("HS256 against RSA-only config", func(t *testing.T) {
		expectReason(t, rsaOnly, sign(t, jwt.SigningMethodHS256, k.secret, "", claims(nil)), ReasonAlgorithm)
	})
	t.Run("HS256 keyed with the public key", func(t *testing.T) {
		// The classic confusion attack: the public key is known to everyone.
		expectReason(t, rsaOnly, sign(t, jwt.SigningMethodHS256, pemBytes, "", claims(nil)), ReasonAlgorithm)
		der, _ := pem.Decode(pemBytes)
		expectReason(t, rsaOnly, sign(t, jwt.SigningMethodHS256, der.Bytes, "", claims(nil)), ReasonAlgorithm)
	})
	t.Run("ES256 against RSA-only config", func(t *testing.T) {
		expectReason(t, rsaOnly, sign(t, jwt.SigningMethodES256, k.p256, "", claims(nil)), ReasonAlgorithm)
	})
	t.Run("EdDSA against RSA-only config", func(t *testing.T) {
		expectReason(t, rsaOnly, sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims(nil)), ReasonAlgorithm)
	})
	t.Run("RS256 against secret-only config", func(t *testing.T) {
		v := newVerifier(t, Config{Secret: k.secret})
		expectReason(t, v, sign(t, jwt.SigningMethodRS256, k.rsa, "", claims(nil)), ReasonAlgorithm)
	})
	t.Run("ES384 with a P-256 key", func(t *testing.T) {
		v := newVerifier(t, Config{PublicKeyFile: pemFile(t, k.p256.Public())})
		expectReason(t, v, sign(t, jwt.SigningMethodES384, k.p384, "", claims(nil)), ReasonAlgorithm)
		expectOK(t, v, sign(t, jwt.SigningMethodES256, k.p256, "", claims(nil)), "alice")
	})
	t.Run("ES384 naming a P-256 JWK", func(t *testing.T) {
		v := newVerifier(t, Config{JWKSFile: jwksFile(t, jwk{kid: "ec", key: k.p256.Public()}, jwk{kid: "r", key: k.rsa.Public()})})
		expectReason(t, v, sign(t, jwt.SigningMethodES384, k.p384, "ec", claims(nil)), ReasonAlgorithm)
	})
	t.Run("JWK alg restricts the key", func(t *testing.T) {
		v := newVerifier(t, Config{JWKSFile: jwksFile(t, jwk{kid: "r", alg: "RS256", key: k.rsa.Public()})})
		expectOK(t, v, sign(t, jwt.SigningMethodRS256, k.rsa, "r", claims(nil)), "alice")
		expectReason(t, v, sign(t, jwt.SigningMethodPS256, k.rsa, "r", claims(nil)), ReasonAlgorithm)
		expectReason(t, v, sign(t, jwt.SigningMethodRS512, k.rsa, "", claims(nil)), ReasonAlgorithm)
	})
}

func TestSignature(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, Config{
		Secret:        k.secret,
		PublicKeyFile: pemFile(t, k.rsa.Public(), k.p256.Public(), k.ed.Public()),
	})
	cases := map[string]string{
		"HS256 other secret": sign(t, jwt.SigningMethodHS256, k.other, "", claims(nil)),
		"RS256 other key":    sign(t, jwt.SigningMethodRS256, k.rsa2, "", claims(nil)),
		"PS256 other key":    sign(t, jwt.SigningMethodPS256, k.rsa2, "", claims(nil)),
		"ES256 other key":    sign(t, jwt.SigningMethodES256, k.p256b, "", claims(nil)),
		"EdDSA other key":    sign(t, jwt.SigningMethodEdDSA, k.ed2, "", claims(nil)),
	}
	// A valid token whose payload is swapped for another user's.
	good := sign(t, jwt.SigningMethodHS256, k.secret, "", claims(nil))
	evil := sign(t, jwt.SigningMethodHS256, k.other, "", claims(map[string]any{"sub": "mallory"}))
	gp, ep := strings.Split(good, "."), strings.Split(evil, ".")
	cases["payload swapped"] = gp[0] + "." + ep[1] + "." + gp[2]
	cases["signature stripped"] = gp[0] + "." + gp[1] + "."
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) { expectReason(t, v, tok, ReasonSignature) })
	}
	expectOK(t, v, good, "alice")
}

func TestMalformedAndMissing(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, Config{Secret: k.secret})
	expectReason(t, v, "", ReasonMissing)
	good := sign(t, jwt.SigningMethodHS256, k.secret, "", claims(nil))
	cases := map[string]string{
		"one segment":     "abc",
		"two segments":    "abc.def",
		"four segments":   good + ".x",
		"bad base64":      "!!!.???.***",
		"header not JSON": rawToken("not json", `{}`, nil),
		"claims not JSON": rawToken(`{"alg":"HS256"}`, "[1,2", nil),
		"too long":        good + strings.Repeat("A", maxTokenBytes),
		"exp not numeric": sign(t, jwt.SigningMethodHS256, k.secret, "", claims(map[string]any{"exp": "tomorrow"})),
		"nbf not numeric": sign(t, jwt.SigningMethodHS256, k.secret, "", claims(map[string]any{"nbf": true})),
	}
	critTok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	critTok.Header["crit"] = []string{"b64"}
	crit, err := critTok.SignedString(k.secret)
	if err != nil {
		t.Fatal(err)
	}
	cases["crit header"] = crit
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) { expectReason(t, v, tok, ReasonMalformed) })
	}
	t.Run("kid not a string", func(t *testing.T) {
		pv := newVerifier(t, Config{PublicKeyFile: pemFile(t, k.rsa.Public())})
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims(nil))
		tok.Header["kid"] = 7
		s, err := tok.SignedString(k.rsa)
		if err != nil {
			t.Fatal(err)
		}
		expectReason(t, pv, s, ReasonMalformed)
	})
}

func TestTimeClaims(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, Config{Secret: k.secret})
	hs := func(over map[string]any) string { return sign(t, jwt.SigningMethodHS256, k.secret, "", claims(over)) }
	expectReason(t, v, hs(map[string]any{"exp": t0.Add(-time.Minute).Unix()}), ReasonExpired)
	expectReason(t, v, hs(map[string]any{"exp": t0.Unix()}), ReasonExpired)
	expectReason(t, v, hs(map[string]any{"exp": nil}), ReasonNoExpiry)
	expectReason(t, v, hs(map[string]any{"nbf": t0.Add(time.Minute).Unix()}), ReasonNotYetValid)
	expectReason(t, v, hs(map[string]any{"iat": t0.Add(time.Minute).Unix()}), ReasonNotYetValid)
	expectOK(t, v, hs(map[string]any{"nbf": t0.Unix(), "iat": nil}), "alice")
	// Ranking: a missing exp is reported even when other claims are bad too.
	expectReason(t, v, hs(map[string]any{"exp": nil, "nbf": t0.Add(time.Hour).Unix()}), ReasonNoExpiry)
	expectReason(t, v, hs(map[string]any{"exp": t0.Add(-time.Hour).Unix(), "nbf": t0.Add(time.Hour).Unix()}), ReasonExpired)
}

func TestLeeway(t *testing.T) {
	k := fixtures(t)
	const leeway = 30 * time.Second
	v := newVerifier(t, Config{Secret: k.secret, Leeway: leeway})
	hs := func(over map[string]any) string { return sign(t, jwt.SigningMethodHS256, k.secret, "", claims(over)) }
	at := func(d time.Duration) int64 { return t0.Add(d).Unix() }
	cases := []struct {
		name string
		over map[string]any
		want Reason // "" means accepted
	}{
		{"exp inside leeway", map[string]any{"exp": at(-leeway + time.Second)}, ""},
		{"exp at leeway edge", map[string]any{"exp": at(-leeway)}, ReasonExpired},
		{"exp beyond leeway", map[string]any{"exp": at(-leeway - time.Second)}, ReasonExpired},
		{"nbf at leeway edge", map[string]any{"nbf": at(leeway)}, ""},
		{"nbf beyond leeway", map[string]any{"nbf": at(leeway + time.Second)}, ReasonNotYetValid},
		{"iat at leeway edge", map[string]any{"iat": at(leeway)}, ""},
		{"iat beyond leeway", map[string]any{"iat": at(leeway + time.Second)}, ReasonNotYetValid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.want == "" {
				expectOK(t, v, hs(c.over), "alice")
			} else {
				expectReason(t, v, hs(c.over), c.want)
			}
		})
	}
	t.Run("clock moves", func(t *testing.T) {
		var mu sync.Mutex
		now := t0
		mv := newVerifier(t, Config{Secret: k.secret, Leeway: leeway, Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		}})
		tok := hs(map[string]any{"exp": at(time.Minute)})
		expectOK(t, mv, tok, "alice")
		mu.Lock()
		now = t0.Add(time.Minute + leeway - time.Second)
		mu.Unlock()
		expectOK(t, mv, tok, "alice")
		mu.Lock()
		now = t0.Add(time.Minute + leeway)
		mu.Unlock()
		expectReason(t, mv, tok, ReasonExpired)
	})
	if _, err := NewVerifier(Config{Secret: k.secret, Leeway: -time.Second}); err == nil {
		t.Fatal("negative leeway accepted")
	}
}

func TestIssuerAudience(t *testing.T) {
	k := fixtures(t)
	hs := func(over map[string]any) string { return sign(t, jwt.SigningMethodHS256, k.secret, "", claims(over)) }
	t.Run("unset", func(t *testing.T) {
		v := newVerifier(t, Config{Secret: k.secret})
		expectOK(t, v, hs(nil), "alice")
		expectOK(t, v, hs(map[string]any{"iss": "anyone", "aud": "anything"}), "alice")
	})
	t.Run("issuer", func(t *testing.T) {
		v := newVerifier(t, Config{Secret: k.secret, Issuer: "https://id.example.com"})
		expectOK(t, v, hs(map[string]any{"iss": "https://id.example.com"}), "alice")
		expectReason(t, v, hs(map[string]any{"iss": "https://evil.example.com"}), ReasonIssuer)
		expectReason(t, v, hs(map[string]any{"iss": "https://ID.example.com"}), ReasonIssuer)
		expectReason(t, v, hs(nil), ReasonIssuer)
		expectReason(t, v, hs(map[string]any{"iss": ""}), ReasonIssuer)
		expectReason(t, v, hs(map[string]any{"iss": 42}), ReasonMalformed)
	})
	t.Run("audience", func(t *testing.T) {
		v := newVerifier(t, Config{Secret: k.secret, Audience: "relay"})
		expectOK(t, v, hs(map[string]any{"aud": "relay"}), "alice")
		expectOK(t, v, hs(map[string]any{"aud": []string{"web", "relay"}}), "alice")
		expectReason(t, v, hs(map[string]any{"aud": "web"}), ReasonAudience)
		expectReason(t, v, hs(map[string]any{"aud": []string{"web", "api"}}), ReasonAudience)
		expectReason(t, v, hs(nil), ReasonAudience)
		expectReason(t, v, hs(map[string]any{"aud": []string{}}), ReasonAudience)
	})
	t.Run("both", func(t *testing.T) {
		v := newVerifier(t, Config{Secret: k.secret, Issuer: "idp", Audience: "relay"})
		expectOK(t, v, hs(map[string]any{"iss": "idp", "aud": "relay"}), "alice")
		expectReason(t, v, hs(map[string]any{"aud": "relay"}), ReasonIssuer)
		expectReason(t, v, hs(map[string]any{"iss": "idp"}), ReasonAudience)
		expectReason(t, v, hs(map[string]any{"iss": "other", "aud": "other"}), ReasonIssuer)
	})
}

func TestUserClaim(t *testing.T) {
	k := fixtures(t)
	hs := func(over map[string]any) string { return sign(t, jwt.SigningMethodHS256, k.secret, "", claims(over)) }
	def := newVerifier(t, Config{Secret: k.secret})
	expectReason(t, def, hs(map[string]any{"sub": ""}), ReasonUserClaim)
	expectReason(t, def, hs(map[string]any{"sub": nil}), ReasonUserClaim)
	expectReason(t, def, hs(map[string]any{"sub": 12}), ReasonUserClaim)

	custom := newVerifier(t, Config{Secret: k.secret, UserClaim: "uid"})
	expectOK(t, custom, hs(map[string]any{"uid": "bob"}), "bob")
	expectReason(t, custom, hs(nil), ReasonUserClaim) // sub alone does not count
	expectReason(t, custom, hs(map[string]any{"uid": ""}), ReasonUserClaim)
	expectReason(t, custom, hs(map[string]any{"uid": 1234}), ReasonUserClaim)
	expectReason(t, custom, hs(map[string]any{"uid": []string{"bob"}}), ReasonUserClaim)
	expectReason(t, custom, hs(map[string]any{"uid": map[string]any{"id": "bob"}}), ReasonUserClaim)

	namespaced := newVerifier(t, Config{Secret: k.secret, UserClaim: "https://example.com/user.id"})
	expectOK(t, namespaced, hs(map[string]any{"https://example.com/user.id": "carol"}), "carol")
}

func TestJWKSKeySelection(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, Config{JWKSFile: jwksFile(t,
		jwk{kid: "r1", key: k.rsa.Public(), use: "sig"},
		jwk{kid: "r2", key: k.rsa2.Public()},
		jwk{kid: "e1", key: k.p256.Public()},
	)})
	expectOK(t, v, sign(t, jwt.SigningMethodRS256, k.rsa, "r1", claims(nil)), "alice")
	expectOK(t, v, sign(t, jwt.SigningMethodRS256, k.rsa2, "r2", claims(nil)), "alice")
	expectOK(t, v, sign(t, jwt.SigningMethodES256, k.p256, "e1", claims(nil)), "alice")
	t.Run("kid names another key", func(t *testing.T) {
		expectReason(t, v, sign(t, jwt.SigningMethodRS256, k.rsa2, "r1", claims(nil)), ReasonSignature)
	})
	t.Run("unknown kid", func(t *testing.T) {
		expectReason(t, v, sign(t, jwt.SigningMethodRS256, k.rsa, "r9", claims(nil)), ReasonUnknownKey)
		expectReason(t, v, sign(t, jwt.SigningMethodES512, k.p521, "r9", claims(nil)), ReasonUnknownKey)
	})
	t.Run("no kid with several keys", func(t *testing.T) {
		expectReason(t, v, sign(t, jwt.SigningMethodRS256, k.rsa, "", claims(nil)), ReasonUnknownKey)
	})
	t.Run("no kid, alg no key serves", func(t *testing.T) {
		expectReason(t, v, sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims(nil)), ReasonAlgorithm)
	})
	t.Run("no kid with one key", func(t *testing.T) {
		one := newVerifier(t, Config{JWKSFile: jwksFile(t, jwk{kid: "only", key: k.ed.Public()})})
		expectOK(t, one, sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims(nil)), "alice")
		expectOK(t, one, sign(t, jwt.SigningMethodEdDSA, k.ed, "only", claims(nil)), "alice")
		expectReason(t, one, sign(t, jwt.SigningMethodEdDSA, k.ed, "other", claims(nil)), ReasonUnknownKey)
	})
	t.Run("skips keys for other uses", func(t *testing.T) {
		doc := fmt.Sprintf(`{"keys":[%s,{"kty":"OKP","crv":"X25519","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo","kid":"x"},%s]}`,
			strings.TrimSuffix(strings.TrimPrefix(string(jwksDoc(t, jwk{kid: "enc", use: "enc", key: k.rsa2.Public()})), `{"keys":[`), "]}"),
			strings.TrimSuffix(strings.TrimPrefix(string(jwksDoc(t, jwk{kid: "sig", key: k.rsa.Public()})), `{"keys":[`), "]}"))
		one := newVerifier(t, Config{JWKSFile: writeFile(t, "mixed.jwks", []byte(doc))})
		// Only one signature key remains, so a token without kid is fine.
		expectOK(t, one, sign(t, jwt.SigningMethodRS256, k.rsa, "", claims(nil)), "alice")
		expectReason(t, one, sign(t, jwt.SigningMethodRS256, k.rsa2, "enc", claims(nil)), ReasonUnknownKey)
	})
}

func TestSeveralSources(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, Config{
		Secret:        k.secret,
		PublicKeyFile: pemFile(t, k.p384.Public(), k.rsa2.Public()),
		JWKSFile:      jwksFile(t, jwk{kid: "r1", key: k.rsa.Public()}, jwk{kid: "ed", key: k.ed.Public()}),
	})
	expectOK(t, v, sign(t, jwt.SigningMethodHS256, k.secret, "", claims(nil)), "alice")
	// HS tokens may carry a kid of their own; it does not send them to the JWKS.
	expectOK(t, v, sign(t, jwt.SigningMethodHS512, k.secret, "hmac-1", claims(nil)), "alice")
	expectOK(t, v, sign(t, jwt.SigningMethodRS256, k.rsa, "r1", claims(nil)), "alice")
	expectOK(t, v, sign(t, jwt.SigningMethodEdDSA, k.ed, "ed", claims(nil)), "alice")
	expectOK(t, v, sign(t, jwt.SigningMethodES384, k.p384, "", claims(nil)), "alice")
	expectOK(t, v, sign(t, jwt.SigningMethodRS256, k.rsa2, "", claims(nil)), "alice")
	// A kid the set lacks may still belong to a PEM key.
	expectOK(t, v, sign(t, jwt.SigningMethodES384, k.p384, "pem-key", claims(nil)), "alice")
	// No kid: the PEM RSA key is tried, the JWKS (two keys) is not.
	expectReason(t, v, sign(t, jwt.SigningMethodRS256, k.rsa, "", claims(nil)), ReasonSignature)
	expectReason(t, v, sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims(nil)), ReasonUnknownKey)
	expectReason(t, v, sign(t, jwt.SigningMethodES256, k.p256, "", claims(nil)), ReasonAlgorithm)
	// A kid that the set holds for another family is an algorithm mismatch,
	// not a reason to fall back to the PEM keys.
	expectReason(t, v, sign(t, jwt.SigningMethodES384, k.p384, "r1", claims(nil)), ReasonAlgorithm)
}

func TestReload(t *testing.T) {
	k := fixtures(t)
	path := jwksFile(t, jwk{kid: "k1", key: k.rsa.Public()}, jwk{kid: "e1", key: k.p256.Public()})
	v := newVerifier(t, Config{JWKSFile: path})
	tok1 := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", claims(nil))
	tok2 := sign(t, jwt.SigningMethodRS256, k.rsa2, "k2", claims(nil))
	expectOK(t, v, tok1, "alice")
	expectReason(t, v, tok2, ReasonUnknownKey)

	rewrite(t, path, jwksDoc(t, jwk{kid: "k2", key: k.rsa2.Public()}, jwk{kid: "e1", key: k.p256.Public()}))
	// Nothing changes until Reload is called.
	expectOK(t, v, tok1, "alice")
	if err := v.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	expectOK(t, v, tok2, "alice")
	expectReason(t, v, tok1, ReasonUnknownKey)

	for name, data := range map[string][]byte{
		"truncated": []byte(`{"keys":[{"kty":"RSA",`),
		"empty":     nil,
		"no keys":   []byte(`{"keys":[]}`),
	} {
		t.Run("broken file "+name, func(t *testing.T) {
			rewrite(t, path, data)
			err := v.Reload()
			if err == nil {
				t.Fatal("Reload accepted a broken file")
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
			expectOK(t, v, tok2, "alice")
		})
	}
	t.Run("file removed", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := v.Reload(); err == nil {
			t.Fatal("Reload accepted a missing file")
		}
		expectOK(t, v, tok2, "alice")
	})
	t.Run("pem rotation", func(t *testing.T) {
		pemPath := pemFile(t, k.ed.Public())
		pv := newVerifier(t, Config{PublicKeyFile: pemPath})
		old := sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims(nil))
		next := sign(t, jwt.SigningMethodEdDSA, k.ed2, "", claims(nil))
		expectOK(t, pv, old, "alice")
		rewrite(t, pemPath, pemBlock(t, "PUBLIC KEY", k.ed2.Public(), nil))
		if err := pv.Reload(); err != nil {
			t.Fatal(err)
		}
		expectOK(t, pv, next, "alice")
		expectReason(t, pv, old, ReasonSignature)
		rewrite(t, pemPath, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n"))
		if err := pv.Reload(); err == nil {
			t.Fatal("Reload accepted a broken PEM file")
		}
		expectOK(t, pv, next, "alice")
	})
	t.Run("secret only", func(t *testing.T) {
		sv := newVerifier(t, Config{Secret: k.secret})
		if err := sv.Reload(); err != nil {
			t.Fatalf("Reload without files: %v", err)
		}
	})
}

func TestConcurrentVerifyAndReload(t *testing.T) {
	k := fixtures(t)
	path := jwksFile(t, jwk{kid: "a", key: k.p256.Public()}, jwk{kid: "b", key: k.p256b.Public()})
	v := newVerifier(t, Config{JWKSFile: path, Secret: k.secret})
	tokA := sign(t, jwt.SigningMethodES256, k.p256, "a", claims(nil))
	tokH := sign(t, jwt.SigningMethodHS256, k.secret, "", claims(nil))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				for _, tok := range []string{tokA, tokH} {
					if _, err := v.Verify(tok); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if err := v.Reload(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewVerifierErrors(t *testing.T) {
	k := fixtures(t)
	if _, err := NewVerifier(Config{}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("empty config: got %v, want ErrNoKey", err)
	}
	if _, err := NewVerifier(Config{Issuer: "x", Audience: "y", Secret: []byte{}}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("config without key: got %v, want ErrNoKey", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(k.p256)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224DER, err := x509.MarshalPKIXPublicKey(&p224.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	good := pemBlock(t, "PUBLIC KEY", k.rsa.Public(), nil)
	pemCases := map[string][]byte{
		"empty":       nil,
		"not PEM":     []byte("hello"),
		"private key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		"garbage DER": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}),
		"P-224":       pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p224DER}),
		"broken tail": append(append([]byte{}, good...), "-----BEGIN PUBLIC KEY-----\n!!\n"...),
	}
	for name, data := range pemCases {
		t.Run("pem "+name, func(t *testing.T) {
			path := writeFile(t, "bad.pem", data)
			_, err := NewVerifier(Config{PublicKeyFile: path})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
	jwksCases := map[string]string{
		"empty":         "",
		"not JSON":      "hello",
		"no keys":       `{}`,
		"empty keys":    `{"keys":[]}`,
		"symmetric key": `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`,
		"private key":   string(jwksDoc(t, jwk{kid: "p", key: k.p256})),
		"alg mismatch":  string(jwksDoc(t, jwk{kid: "r", alg: "ES256", key: k.rsa.Public()})),
		"bad RSA":       `{"keys":[{"kty":"RSA","n":"","e":"AQAB","kid":"r"}]}`,
		"only enc keys": string(jwksDoc(t, jwk{kid: "e", use: "enc", key: k.rsa.Public()})),
	}
	for name, data := range jwksCases {
		t.Run("jwks "+name, func(t *testing.T) {
			path := writeFile(t, "bad.jwks", []byte(data))
			_, err := NewVerifier(Config{JWKSFile: path})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
	t.Run("missing files", func(t *testing.T) {
		for _, cfg := range []Config{{PublicKeyFile: "/nonexistent/key.pem"}, {JWKSFile: "/nonexistent/keys.jwks"}} {
			_, err := NewVerifier(cfg)
			if err == nil || !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("got %v, want a not-exist error", err)
			}
			if !strings.Contains(err.Error(), "/nonexistent/") {
				t.Fatalf("error does not name the file: %v", err)
			}
		}
	})
}

func TestSecretIsCopied(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v := newVerifier(t, Config{Secret: secret})
	tok := sign(t, jwt.SigningMethodHS256, []byte("0123456789abcdef0123456789abcdef"), "", claims(nil))
	secret[0] = 'X'
	expectOK(t, v, tok, "alice")
}

func TestMint(t *testing.T) {
	k := fixtures(t)
	tok, err := Mint(k.secret, "alice", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, Config{Secret: k.secret})
	id := expectOK(t, v, tok, "alice")
	if !id.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Expires = %v, want %v", id.Expires, t0.Add(time.Hour))
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Method.Alg() != "HS256" {
		t.Fatalf("alg = %s", parsed.Method.Alg())
	}
	mc := parsed.Claims.(jwt.MapClaims)
	for _, c := range []string{"sub", "iat", "exp"} {
		if _, ok := mc[c]; !ok {
			t.Fatalf("minted token lacks %s", c)
		}
	}
	// Expired once the ttl (plus no leeway) has passed.
	late := newVerifier(t, Config{Secret: k.secret, Now: func() time.Time { return t0.Add(time.Hour) }})
	expectReason(t, late, tok, ReasonExpired)
	// Another secret does not verify it.
	expectReason(t, newVerifier(t, Config{Secret: k.other}), tok, ReasonSignature)

	for name, args := range map[string]struct {
		secret []byte
		sub    string
		ttl    time.Duration
	}{
		"empty secret": {nil, "alice", time.Hour},
		"empty sub":    {k.secret, "", time.Hour},
		"zero ttl":     {k.secret, "alice", 0},
		"negative ttl": {k.secret, "alice", -time.Minute},
	} {
		if _, err := Mint(args.secret, args.sub, args.ttl, t0); err == nil {
			t.Errorf("%s: Mint succeeded", name)
		}
	}
}

func TestErrorType(t *testing.T) {
	k := fixtures(t)
	v := newVerifier(t, Config{Secret: k.secret})
	tok := sign(t, jwt.SigningMethodHS256, k.secret, "", claims(map[string]any{"exp": t0.Add(-time.Hour).Unix()}))
	_, err := v.Verify(tok)
	if !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("errors.Is(err, jwt.ErrTokenExpired) = false for %v", err)
	}
	if ReasonOf(err) != ReasonExpired {
		t.Fatalf("ReasonOf = %q", ReasonOf(err))
	}
	if got := err.Error(); !strings.Contains(got, string(ReasonExpired)) || strings.Contains(got, tok) {
		t.Fatalf("Error() = %q", got)
	}
	if ReasonOf(nil) != "" || ReasonOf(errors.New("x")) != "" {
		t.Fatal("ReasonOf on foreign errors")
	}
	if (&Error{Reason: ReasonMissing}).Error() == "" {
		t.Fatal("empty message without cause")
	}
	// Attacker-chosen header values are quoted and cut short.
	pv := newVerifier(t, Config{JWKSFile: jwksFile(t, jwk{kid: "a", key: k.ed.Public()})})
	longKID := strings.Repeat("\n", 200)
	_, err = pv.Verify(sign(t, jwt.SigningMethodEdDSA, k.ed, longKID, claims(nil)))
	if ReasonOf(err) != ReasonUnknownKey || strings.Contains(err.Error(), "\n") || len(err.Error()) > 400 {
		t.Fatalf("unexpected error for a hostile kid: %q", err)
	}
}

func TestAllReasons(t *testing.T) {
	all := AllReasons()
	want := declaredReasons(t)
	for _, r := range want {
		if !slices.Contains(all, r) {
			t.Errorf("AllReasons lacks %s", r)
		}
	}
	if len(all) != len(want) {
		t.Errorf("AllReasons has %d entries, want %d", len(all), len(want))
	}
	all[0] = "changed"
	if AllReasons()[0] == "changed" {
		t.Error("AllReasons shares its backing array")
	}
}

// declaredReasons reads the Reason constants declared in errors.go, so
// that a reason added there without a place in AllReasons (and so without
// a metric series) fails TestAllReasons.
func declaredReasons(t *testing.T) []Reason {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []Reason
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok {
					t.Fatalf("Reason constant with a value that is not a literal")
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, Reason(s))
			}
		}
	}
	if len(out) < 5 {
		t.Fatalf("found only %d Reason constants in errors.go", len(out))
	}
	return out
}

func BenchmarkVerifyHS256(b *testing.B) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v := newVerifier(b, Config{Secret: secret, Leeway: 30 * time.Second})
	tok, err := Mint(secret, "alice", time.Hour, t0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	k := fixtures(b)
	v := newVerifier(b, Config{JWKSFile: jwksFile(b, jwk{kid: "a", key: k.p256.Public()}, jwk{kid: "b", key: k.rsa.Public()})})
	tok := sign(b, jwt.SigningMethodES256, k.p256, "a", claims(nil))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRS256(b *testing.B) {
	k := fixtures(b)
	v := newVerifier(b, Config{PublicKeyFile: pemFile(b, k.rsa.Public())})
	tok := sign(b, jwt.SigningMethodRS256, k.rsa, "", claims(nil))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
