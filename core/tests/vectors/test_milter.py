#!/usr/bin/python3
"""A scripted python3-milter (libmilter) filter for capture_milter.py.

Usage: test_milter.py SOCKET LOG.  What it does is chosen by the local part
of MAIL FROM: accept, reject, tempfail, discard, replycode (a multi-line
custom reply), change (header changes and a quarantine at end of message).
Every callback's arguments go to LOG, one repr() per line, so the capture
shows what libmilter decoded from the MTA's packets.
"""
import sys

import Milter

LOG = open(sys.argv[2], "a", buffering=1)


class TestMilter(Milter.Base):
    def __init__(self):
        self.mode = "accept"

    def log(self, *a):
        LOG.write(repr(a) + "\n")

    def connect(self, hostname, family, hostaddr):
        self.log("connect", hostname, family, hostaddr,
                 self.getsymval("j"), self.getsymval("{daemon_name}"))
        return Milter.CONTINUE

    @Milter.noreply
    def hello(self, helo):
        self.log("helo", helo)
        return Milter.CONTINUE

    def envfrom(self, addr, *params):
        self.log("envfrom", addr, params, self.getsymval("i"))
        self.mode = addr.strip("<>").split("@")[0]
        return Milter.CONTINUE

    def envrcpt(self, addr, *params):
        self.log("envrcpt", addr, params)
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name, value):
        self.log("header", name, value)
        return Milter.CONTINUE

    def eoh(self):
        self.log("eoh")
        return Milter.CONTINUE

    def body(self, chunk):
        self.log("body", chunk)
        return Milter.CONTINUE

    def eom(self):
        self.log("eom", self.mode)
        m = self.mode
        if m == "reject":
            return Milter.REJECT
        if m == "tempfail":
            return Milter.TEMPFAIL
        if m == "discard":
            return Milter.DISCARD
        if m == "replycode":
            self.setreply("554", "5.7.0", "Rejected by the test milter",
                          "second line: see the sluice tests")
            return Milter.REJECT
        if m == "change":
            self.progress()
            self.addheader("X-Sluice-Test", "added")
            self.chgheader("Subject", 1, "changed subject")
            self.addheader("X-Sluice-First", "inserted", 0)
            self.quarantine("held by the test milter")
            return Milter.ACCEPT
        return Milter.CONTINUE

    def close(self):
        self.log("close")
        return Milter.CONTINUE


Milter.factory = TestMilter
Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE)
Milter.runmilter("sluice-test", sys.argv[1], timeout=30)
