// Package testserver starts private Prosody XMPP and mosquitto MQTT servers
// for integration tests and the demo program.
//
// It owns only the test harness: generating a per-run CA and server
// certificate, writing a private configuration into a private directory,
// picking free 127.0.0.1 ports, and starting, signalling, restarting and
// stopping the server processes by PID. It never touches a system service,
// /etc/prosody, /etc/mosquitto or any address other than 127.0.0.1.
//
// Production code must not import it; the only importers are tests and the
// demo program (internal/demo). It imports only the standard library.
//
// The core API (Configure, Start, StartMosquitto) takes no *testing.T so the
// demo can use it; New, MustRegister and NewMosquitto wrap it for tests. A
// missing server binary is reported as ErrNotInstalled; the test helpers
// skip on it, except when the environment has CI=true, where a missing
// server is a failure.
package testserver
