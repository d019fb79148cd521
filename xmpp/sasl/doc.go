// Package sasl implements the client side of the SASL mechanisms stanzad
// uses to log in to an XMPP server: SCRAM-SHA-256 and SCRAM-SHA-1 with and
// without channel binding (RFC 5802, RFC 7677), PLAIN (RFC 4616) and
// EXTERNAL (RFC 4422 appendix A).
//
// The package knows nothing about XML or the XMPP stream: a Mechanism
// consumes and produces raw (already base64-decoded) SASL messages and the
// caller frames them. It imports only the standard library.
package sasl
