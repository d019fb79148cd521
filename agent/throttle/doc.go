// Package throttle tells whether an event is the first of its kind in the
// last minute, so that warnings a stranger or a flaky server can repeat
// at will (ignored senders, rate-limited senders, bounced readings) are
// logged once a minute per key, not once per stanza.
//
// It imports only the standard library.
package throttle
