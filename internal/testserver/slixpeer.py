#!/usr/bin/python3
"""A slixmpp client that answers the same XEP-0050 "status" command as
stanzad, for `make bench` to compare command round trips against a
well-known library through the same Prosody. Started by slixpeer.go.

It also sends readings for the sustained telemetry benchmark: the stdin
line "flood TO N" sends N chat messages to TO, each with the same human
body and XEP-0323 <fields> (seqnr 1..N) that stanzad sends for one
reading, as fast as slixmpp goes, then prints "flooded N".

usage: slixpeer.py JID PASSWORD HOST PORT CAFILE
Prints "ready" on stdout once the session is up; exits on stdin EOF.
"""
import asyncio
import datetime
import ssl
import sys
import time
import xml.etree.ElementTree as ET

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


    async def flood(self, to, n):
        for i in range(1, n + 1):
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            msg = self.make_message(mto=to, mbody="greenhouse: temperature=21.5 \u00b0C humidity=40.2 %", mtype="chat")
            msg["id"] = "r-%d" % i
            msg.xml.append(ET.fromstring(
                "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='%d' done='true'>"
                "<node nodeId='greenhouse'><timestamp value='%s'>"
                "<numeric name='temperature' momentary='true' automaticReadout='true' value='21.5' unit='\u00b0C'/>"
                "<numeric name='humidity' momentary='true' automaticReadout='true' value='40.2' unit='%%'/>"
                "</timestamp></node></fields>" % (i, stamp)))
            msg.send()
            if i % 64 == 0:
                await asyncio.sleep(0)  # let the loop write and read
        print("flooded %d" % n, flush=True)


def main():
    jid, password, host, port, cafile = sys.argv[1:6]
    peer = Peer(jid, password, cafile)
    peer.connect(address=(host, int(port)))
    loop = asyncio.get_event_loop()

    # Commands come on stdin, one per line; stop when the parent closes it.
    pending = b""

    def stdin_ready():
        nonlocal pending
        data = sys.stdin.buffer.read1(4096)
        if not data:
            loop.remove_reader(sys.stdin.fileno())
            peer.disconnect()
            loop.call_later(1, loop.stop)
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            words = line.decode().split()
            if len(words) == 3 and words[0] == "flood":
                loop.create_task(peer.flood(words[1], int(words[2])))
    loop.add_reader(sys.stdin.fileno(), stdin_ready)
    loop.run_forever()


if __name__ == "__main__":
    main()
