// Package auth authenticates relay connections.
//
// A [Verifier] checks the JSON Web Token a client presents when it opens the
// sync socket and turns it into an [Identity]. Keys come from a shared HMAC
// secret, a PEM file of public keys and a JWKS document, in any combination;
// the files can be re-read at run time for key rotation.
//
// The handshake helpers ([TokenFromQuery], [TokenFromCookie] and
// [OriginPolicy]) work on the raw request bytes seen by the WebSocket
// upgrader, so they avoid allocating on the hot path of every connection.
package auth
