// Package xmpp is stanzad's XMPP client: the RFC 6120/6121 stream over TCP
// and TLS (STARTTLS or XEP-0368 direct TLS), SASL authentication, resource
// binding, presence, a bounded stanza reader, IQ routing, and the XEP
// payloads the agent speaks (XEP-0323 sensor data, XEP-0030 disco, XEP-0199
// ping, XEP-0092 version).
//
// It depends on the standard library and its own sub-packages only; it must
// never import devices, bridge or agent.
//
// Inbound data is untrusted: the reader caps stanza size and nesting depth
// and rejects DTDs, comments and processing instructions, closing the stream
// with a policy-violation or restricted-xml stream error.
package xmpp
