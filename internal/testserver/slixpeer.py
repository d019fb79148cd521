#!/usr/bin/python3
"""A slixmpp client that answers the same XEP-0050 "status" command as
stanzad, for `make bench` to compare command round trips against a
well-known library through the same Prosody. Started by slixpeer.go.

usage: slixpeer.py JID PASSWORD HOST PORT CAFILE
Prints "ready" on stdout once the session is up; exits on stdin EOF.
"""
import asyncio
import ssl
import sys
import time

import slixmpp

START = time.monotonic()


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, cafile):
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context(cafile=cafile)
        for plugin in ("xep_0030", "xep_0004", "xep_0050", "xep_0199"):
            self.register_plugin(plugin)
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda _: sys.exit("auth failed"))

    async def start(self, _event):
        self.send_presence()
        self["xep_0050"].add_command(node="status", name="Status", handler=self.status)
        print("ready", flush=True)

    def status(self, iq, session):
        # The same work as stanzad's status: a result form with the
        # agent's state.
        form = self["xep_0004"].make_form(ftype="result", title="slixmpp peer status")
        form.add_field(var="version", ftype="text-single", label="Version", value="slixmpp " + slixmpp.__version__)
        form.add_field(var="uptime", ftype="text-single", label="Uptime", value="%ds" % (time.monotonic() - START))
        form.add_field(var="session", ftype="text-single", label="Session", value="online as " + str(self.boundjid))
        form.add_field(var="devices", ftype="text-multi", label="Devices", value="greenhouse\nrelay1 (writable)")
        session["payload"] = form
        session["next"] = None
        session["has_next"] = False
        return session


def main():
    jid, password, host, port, cafile = sys.argv[1:6]
    peer = Peer(jid, password, cafile)
    peer.connect(address=(host, int(port)))
    loop = asyncio.get_event_loop()

    # Stop when the parent closes stdin.
    def stdin_closed():
        if not sys.stdin.buffer.read1(4096):
            loop.remove_reader(sys.stdin.fileno())
            peer.disconnect()
            loop.call_later(1, loop.stop)
    loop.add_reader(sys.stdin.fileno(), stdin_closed)
    loop.run_forever()


if __name__ == "__main__":
    main()
