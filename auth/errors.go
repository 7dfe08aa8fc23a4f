package auth

import (
	"errors"
)

// ErrNoKey is returned by NewVerifier when the configuration names no way to
// check a signature: a relay that accepted every token would be open to anyone.
var ErrNoKey = errors.New("auth: no key configured (need a secret, a public key file or a JWKS file)")

// Reason classifies why a token was refused. The values are stable and short so
// that they can serve as metric labels and log fields.
type Reason string

// The reasons a token can be refused.
const (
	ReasonMissing     Reason = "missing"       // no token was presented
	ReasonMalformed   Reason = "malformed"     // not a well-formed JWT, or a claim has the wrong type
	ReasonAlgorithm   Reason = "algorithm"     // alg is unknown, "none", or has no configured key
	ReasonUnknownKey  Reason = "unknown_key"   // kid not in the key set, or no kid where one is needed
	ReasonSignature   Reason = "signature"     // the signature does not verify
	ReasonExpired     Reason = "expired"       // exp is in the past (beyond the leeway)
	ReasonNoExpiry    Reason = "no_expiry"     // exp is absent
	ReasonNotYetValid Reason = "not_yet_valid" // nbf or iat is in the future (beyond the leeway)
	ReasonIssuer      Reason = "issuer"        // iss is missing or not the configured issuer
	ReasonAudience    Reason = "audience"      // aud is missing or lacks the configured audience
	ReasonUserClaim   Reason = "user_claim"    // the user claim is absent, empty or not a string
)

// AllReasons lists every Reason, so that callers can pre-register metric series.
// The slice is freshly allocated on each call.
func AllReasons() []Reason {
	return []Reason{
		ReasonMissing,
		ReasonMalformed,
		ReasonAlgorithm,
		ReasonUnknownKey,
		ReasonSignature,
		ReasonExpired,
		ReasonNoExpiry,
		ReasonNotYetValid,
		ReasonIssuer,
		ReasonAudience,
		ReasonUserClaim,
	}
}

// Error is the error returned by Verifier.Verify. Its message never contains
// the token, so it is safe to log.
type Error struct {
	Reason Reason
	Err    error
}

// Error reports the reason followed by the underlying cause.
func (e *Error) Error() string {
	if e.Err == nil {
		return "auth: token refused: " + string(e.Reason)
	}
	return "auth: token refused: " + string(e.Reason) + ": " + e.Err.Error()
}

// Unwrap gives access to the cause, which may wrap the jwt package's sentinel
// errors.
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf extracts the Reason from an error returned by Verify. It returns ""
// when err is nil or does not come from this package.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Sentinels produced while choosing a key; they travel through the jwt
// parser's error wrapping and are mapped back to a Reason afterwards.
var (
	errAlgorithm  = errors.New("algorithm not accepted")
	errUnknownKey = errors.New("no matching key")
	errBadHeader  = errors.New("invalid header")
)
