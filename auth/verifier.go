package auth

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxTokenBytes bounds the work an unauthenticated client can cause: real
// tokens are a few hundred bytes to a few KiB, and anything larger is refused
// before any decoding.
const maxTokenBytes = 16 << 10

// Config says which tokens a Verifier accepts. Several key sources may be
// configured at once; a token is checked against the ones that fit its alg.
type Config struct {
	// Secret is the shared secret for HS256, HS384 and HS512. Empty means
	// HS* tokens are refused.
	Secret []byte
	// PublicKeyFile is a PEM file with one or more public keys ("PUBLIC KEY",
	// "RSA PUBLIC KEY" or "CERTIFICATE" blocks). RSA keys serve RS* and PS*,
	// ECDSA keys the ES* alg of their curve, Ed25519 keys EdDSA. The keys
	// carry no kid and are tried in turn.
	PublicKeyFile string
	// JWKSFile is a JWKS document. A token's kid selects the key; a token
	// without kid is accepted only when the set holds exactly one key.
	JWKSFile string
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// UserClaim names the claim that holds the user id; "" means
	// DefaultUserClaim. The
	// name is taken literally, so namespaced claims such as
	// "https://example.com/uid" work.
	UserClaim string
	// Leeway absorbs clock skew when checking exp, nbf and iat.
	Leeway time.Duration
	// Now supplies the current time; nil means time.Now.
	Now func() time.Time
}

// DefaultUserClaim is Config.UserClaim when left empty: the JWT subject.
const DefaultUserClaim = "sub"

// Identity is what a valid token proves.
type Identity struct {
	// UserID is the value of the configured user claim.
	UserID string
	// Expires is the token's exp; the connection must end then.
	Expires time.Time
}

// Verifier checks tokens. It is safe for concurrent use, including calls to
// Reload while tokens are being verified.
type Verifier struct {
	secret    []byte
	pemFile   string
	jwksFile  string
	issuer    string
	userClaim string
	parser    *jwt.Parser
	keyfunc   jwt.Keyfunc

	keys     atomic.Pointer[keyring]
	reloadMu sync.Mutex // keeps concurrent reloads from storing an older read last
}

// NewVerifier builds a Verifier and reads the key files named in cfg. It
// returns ErrNoKey when cfg configures no key at all.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Secret) == 0 && cfg.PublicKeyFile == "" && cfg.JWKSFile == "" {
		return nil, ErrNoKey
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: leeway must not be negative, got %s", cfg.Leeway)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{
		// Copied so that a caller reusing its buffer cannot change the key
		// under a running verifier.
		secret:    bytes.Clone(cfg.Secret),
		pemFile:   cfg.PublicKeyFile,
		jwksFile:  cfg.JWKSFile,
		issuer:    cfg.Issuer,
		userClaim: cfg.UserClaim,
		parser:    jwt.NewParser(opts...),
	}
	if v.userClaim == "" {
		v.userClaim = DefaultUserClaim
	}
	// Bound once here rather than per Verify, which would allocate a closure
	// for every token.
	v.keyfunc = v.keyFor
	ring, err := loadKeyring(cfg.PublicKeyFile, cfg.JWKSFile)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	v.keys.Store(ring)
	return v, nil
}

// Reload re-reads PublicKeyFile and JWKSFile and switches to the new keys in
// one step. On error the keys in use are kept, so a half-written file during
// rotation does not lock every client out.
func (v *Verifier) Reload() error {
	if v.pemFile == "" && v.jwksFile == "" {
		return nil
	}
	v.reloadMu.Lock()
	defer v.reloadMu.Unlock()
	ring, err := loadKeyring(v.pemFile, v.jwksFile)
	if err != nil {
		return fmt.Errorf("auth: reload keys (previous keys kept): %w", err)
	}
	v.keys.Store(ring)
	return nil
}

// Verify checks token and returns the identity it carries. Any error is an
// *Error whose Reason says why the token was refused.
func (v *Verifier) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, &Error{Reason: ReasonMissing, Err: errors.New("no token presented")}
	}
	if len(token) > maxTokenBytes {
		return Identity{}, &Error{Reason: ReasonMalformed, Err: fmt.Errorf("token longer than %d bytes", maxTokenBytes)}
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.keyfunc); err != nil {
		return Identity{}, &Error{Reason: v.classify(err, claims), Err: err}
	}
	uid, ok := claims[v.userClaim].(string)
	if !ok || uid == "" {
		return Identity{}, &Error{Reason: ReasonUserClaim, Err: fmt.Errorf("claim %q is missing, empty or not a string", v.userClaim)}
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		// The parser has already required a well-typed exp; this guards
		// against that contract changing underneath.
		return Identity{}, &Error{Reason: ReasonNoExpiry, Err: errors.New("exp claim unreadable")}
	}
	return Identity{UserID: uid, Expires: exp.Time}, nil
}

// keyFor chooses the verification key(s) for a token. Deciding from the
// configured keys rather than trusting the header is what makes alg
// substitution attacks fail here.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	// The parser knows no extensions, so it cannot honour any listed as
	// critical (RFC 7515 §4.1.11).
	if _, ok := t.Header["crit"]; ok {
		return nil, fmt.Errorf("%w: crit header is not supported", errBadHeader)
	}
	alg := t.Method.Alg()
	switch algFamily(alg) {
	case famNone:
		return nil, fmt.Errorf("%w: alg %s", errAlgorithm, quoteHeader(alg))
	case famHMAC:
		if len(v.secret) == 0 {
			return nil, fmt.Errorf("%w: %s needs a shared secret and none is configured", errAlgorithm, alg)
		}
		return v.secret, nil
	}

	var kid string
	if raw, ok := t.Header["kid"]; ok {
		s, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("%w: kid is not a string", errBadHeader)
		}
		kid = s
	}
	ring := v.keys.Load()
	if kid == "" || ring.jwks == nil {
		if k := ring.noKID[alg]; k != nil {
			return k, nil
		}
		if ring.jwks != nil && ring.jwks.count > 1 && ring.jwks.algs[alg] {
			return nil, fmt.Errorf("%w: token has no kid and the key set holds %d keys", errUnknownKey, ring.jwks.count)
		}
		return nil, fmt.Errorf("%w: no configured key serves %s", errAlgorithm, alg)
	}
	if keys, ok := ring.jwks.byKID[kid]; ok {
		if k := keys[alg]; k != nil {
			return k, nil
		}
		return nil, fmt.Errorf("%w: key %s does not serve %s", errAlgorithm, quoteHeader(kid), alg)
	}
	// PEM keys have no kid of their own, so a kid the set lacks may still
	// name one of them.
	if k := ring.pem[alg]; k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w: no key with kid %s", errUnknownKey, quoteHeader(kid))
}

// classify maps the parser's error to a Reason. Claim checks are all reported
// together, so they are ranked: the most fundamental problem wins.
func (v *Verifier) classify(err error, claims jwt.MapClaims) Reason {
	switch {
	case errors.Is(err, errUnknownKey):
		return ReasonUnknownKey
	case errors.Is(err, errAlgorithm):
		return ReasonAlgorithm
	case errors.Is(err, errBadHeader), errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// alg absent, or a name the jwt package does not know.
		return ReasonAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ReasonSignature
	case errors.Is(err, jwt.ErrInvalidType):
		return ReasonMalformed
	}
	missing := errors.Is(err, jwt.ErrTokenRequiredClaimMissing)
	exp, _ := claims.GetExpirationTime()
	iss, _ := claims.GetIssuer()
	switch {
	case missing && exp == nil:
		return ReasonNoExpiry
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), missing && v.issuer != "" && iss == "":
		return ReasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience), missing:
		return ReasonAudience
	}
	return ReasonMalformed
}

// quoteHeader renders an attacker-chosen header value for an error message:
// quoted so it cannot forge log structure, and truncated so it cannot flood.
func quoteHeader(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

// Mint signs an HS256 token for subject, issued at now and valid for ttl. It
// serves development mode and operational tooling.
func Mint(secret []byte, subject string, ttl time.Duration, now time.Time) (string, error) {
	switch {
	case len(secret) == 0:
		return "", errors.New("auth: mint: empty secret")
	case subject == "":
		return "", errors.New("auth: mint: empty subject")
	case ttl <= 0:
		return "", fmt.Errorf("auth: mint: ttl must be positive, got %s", ttl)
	}
	claims := jwt.RegisteredClaims{
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	return s, nil
}
