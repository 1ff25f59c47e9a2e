#!/usr/bin/python3
"""Captures clamd INSTREAM exchanges as unit-test vectors (sl_clamd_test.c).

Starts clamd (Debian's clamav-daemon) on loopback with a temporary
configuration and a one-line signature database written here (the machines
cannot download signatures), sends three messages with INSTREAM and saves
the exact bytes sent and received under clamd/.  Run it once by hand:
    /usr/bin/python3 capture_clamd.py
"""
import os, socket, struct, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "clamd")
# EICAR, assembled so this file is not itself a test virus
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def message(body):
    return (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: t\r\n"
            b"Message-ID: <capture@example.org>\r\n\r\n" + body + b"\r\n")


def instream(port, data, chunk=4096):
    req = b"zINSTREAM\0"
    for i in range(0, len(data), chunk):
        part = data[i:i + chunk]
        req += struct.pack(">I", len(part)) + part
    req += struct.pack(">I", 0)
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # past StreamMaxLength clamd answers and closes early
    reply = b""
    while True:
        try:
            b = s.recv(4096)
        except ConnectionResetError:
            break
        if not b:
            break
        reply += b
    s.close()
    return req, reply


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "db")
        os.mkdir(db)
        with open(os.path.join(db, "sluice-test.ndb"), "w") as f:
            # name:target(any):offset(any):hex of the EICAR marker
            f.write("Sluice-Test-EICAR:0:*:%s\n" % b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE".hex())
        port = free_port()
        conf = os.path.join(tmp, "clamd.conf")
        with open(conf, "w") as f:
            f.write(f"""Foreground yes
TCPSocket {port}
TCPAddr 127.0.0.1
DatabaseDirectory {db}
LogFile {tmp}/clamd.log
PidFile {tmp}/clamd.pid
StreamMaxLength 1M
""")
        p = subprocess.Popen(["clamd", "-c", conf], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                sys.exit("clamd did not start: " + open(f"{tmp}/clamd.log").read())
            cases = {
                "clean": message(b"Hello, this message is clean."),
                "eicar": message(EICAR),
                "too_big": message(b"x" * (1100 * 1024)),
            }
            for name, data in cases.items():
                req, reply = instream(port, data)
                if name == "clean":  # the EICAR request would trip virus scanners on clones
                    open(os.path.join(OUT, name + ".request"), "wb").write(req)
                open(os.path.join(OUT, name + ".reply"), "wb").write(reply)
                print(name, repr(reply))
        finally:
            p.terminate()
            p.wait(timeout=30)


main()
