// Package control is stanzad's control plane: who may do what (the ACL
// and its roles), how often (a token bucket per sender), the configured
// actions, and the command registry every path ends in — chat text in a
// private chat or a room, XEP-0050 ad-hoc commands, XEP-0325 control,
// XEP-0323 readout, MQTT set commands — with the audit line and the one
// mapping of command errors to stanza errors (StanzaError).
//
// The agent implements Host: the devices, the status it reports, reload
// and config push. It must not import package agent.
package control
