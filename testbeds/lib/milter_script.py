"""A scripted milter (python3-milter, i.e. libmilter) for the filter test beds.

Run by lib/filters.MilterServer as
    /usr/bin/python3 milter_script.py MODE SOCKET LOGFILE
SOCKET is libmilter's spelling (inet:PORT@127.0.0.1, unix:/path).  One line
per end of message (or reject) goes to LOGFILE, "<mode> <verdict> <sender>",
so a test can count what the milter saw besides what the MTA did.

Modes:
  accept       continue everywhere, accept at end of body
  reject       reject the message whose header X-Sluice-Verdict is "reject"
               (550 5.7.1, decided at that header), accept the others
  addheader    accept, adding "X-Sluice-Milter: seen by <name>" at end of body
  tempfail     451 4.7.1 at end of body
  rcptreject   refuses single recipients at RCPT: a local part starting with
               "refuse" gets 550 5.7.1, one starting with "defer" 451 4.7.1;
               continues the others and accepts at end of body
  hang         never answers end of body (sleeps)
  stamp        accept, writing "<event> <unix time> <bytes>" to LOGFILE.stamps
               at each RCPT, DATA, end of headers, body chunk and end of
               body: when the MTA told it what (streaming, seen from the filter)
  bodyhang     never answers the first body chunk (sleeps): a filter that
               hangs mid-stream
"""
import sys
import time

import Milter

MODE, SOCKET, LOGFILE = sys.argv[1], sys.argv[2], sys.argv[3]
NAME = f"sluice-test-{MODE}"


def stamp(event, n=0):
    with open(LOGFILE + ".stamps", "a") as f:
        f.write(f"{event} {time.time():.6f} {n}\n")


def log(verdict, sender):
    with open(LOGFILE, "a") as f:
        f.write(f"{MODE} {verdict} {sender}\n")


class ScriptedMilter(Milter.Base):
    def __init__(self):
        self.sender = ""

    def envfrom(self, mailfrom, *params):
        self.sender = mailfrom
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        if MODE == "stamp":
            stamp("rcpt")
        local = to.strip("<>").lower()
        if MODE == "rcptreject" and local.startswith("refuse"):
            self.setreply("550", "5.7.1", "recipient refused by the test milter")
            log("rcpt-reject", self.sender)
            return Milter.REJECT
        if MODE == "rcptreject" and local.startswith("defer"):
            self.setreply("451", "4.7.1", "recipient deferred by the test milter")
            log("rcpt-tempfail", self.sender)
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def data(self):
        if MODE == "stamp":
            stamp("data")
        return Milter.CONTINUE

    def eoh(self):
        if MODE == "stamp":
            stamp("eoh")
        return Milter.CONTINUE

    def body(self, chunk):
        if MODE == "stamp":
            stamp("body", len(chunk))
        if MODE == "bodyhang":
            log("bodyhang", self.sender)
            time.sleep(3600)
        return Milter.CONTINUE

    def header(self, name, value):
        if MODE == "reject" and name.lower() == "x-sluice-verdict" and value.strip() == "reject":
            self.setreply("550", "5.7.1", "rejected by the test milter")
            log("reject", self.sender)
            return Milter.REJECT
        return Milter.CONTINUE

    def eom(self):
        if MODE == "stamp":
            stamp("eom")
        if MODE == "tempfail":
            self.setreply("451", "4.7.1", "try again later, says the test milter")
            log("tempfail", self.sender)
            return Milter.TEMPFAIL
        if MODE == "hang":
            log("hang", self.sender)
            time.sleep(3600)
            return Milter.TEMPFAIL
        if MODE == "addheader":
            self.addheader("X-Sluice-Milter", f"seen by {NAME}")
        log("accept", self.sender)
        return Milter.ACCEPT


def main():
    Milter.factory = ScriptedMilter
    Milter.set_flags(Milter.ADDHDRS if MODE == "addheader" else 0)
    # Ready marker for the fixture: the socket is opened by runmilter itself,
    # so the fixture waits for the port, not for this line.
    print(f"{NAME} on {SOCKET}", flush=True)
    Milter.runmilter(NAME, SOCKET, 30)


if __name__ == "__main__":
    main()
