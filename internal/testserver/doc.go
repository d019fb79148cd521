// Package testserver starts private Prosody or ejabberd XMPP servers and
// mosquitto MQTT brokers for integration tests and the demo program.
//
// It owns only the test harness: generating a per-run CA and server
// certificate, writing a private configuration into a private directory,
// picking free 127.0.0.1 ports, and starting, signalling, restarting and
// stopping the server processes by PID. It never touches a system service,
// /etc/prosody, /etc/ejabberd, /etc/mosquitto or any address other than
// 127.0.0.1. Prosody and ejabberd are the same *Server, so a test helper
// written for one runs against the other.
//
// Production code must not import it; the only importers are tests and the
// demo program (internal/demo). It imports only the standard library (its
// own ejabberd tests log in with the project's xmpp package).
//
// The core API (Configure, ConfigureEjabberd, Start, StartMosquitto) takes
// no *testing.T so the demo can use it; New, NewEjabberd, MustRegister and
// NewMosquitto wrap it for tests. A missing server binary is reported as
// ErrNotInstalled, and so is running ejabberd as neither root nor the
// "ejabberd" user (ejabberdctl refuses both); the test helpers skip on it,
// except when the environment has CI=true, where it is a failure.
package testserver
