"""An aiosmtpd server that keeps every message; run by /usr/bin/python3.

Started as a subprocess by aiosmtpd_upstream.AiosmtpdUpstream, never
imported by the tests (the interpreter that runs pytest may lack aiosmtpd).
It binds port 0 and prints the port it got, so there is no port race.

Each accepted message is written as DIR/<n>.eml (envelope.original_content:
the bytes received after dot-unstuffing) and DIR/<n>.json (the envelope).
"""
import argparse
import asyncio
import json
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class KeepHandler:
    def __init__(self, directory, reject_rcpt, tempfail_data):
        self.directory = directory
        self.reject_rcpt = reject_rcpt
        self.tempfail_data = tempfail_data
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if any(s in address for s in self.reject_rcpt):
            return "550 5.1.1 Recipient address rejected"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.tempfail_data:
            return "451 4.3.0 Temporary failure (aiosmtpd --tempfail-data)"
        self.count += 1
        n = self.count
        proxy = None
        pd = getattr(session, "proxy_data", None)
        if pd is not None and getattr(pd, "valid", False):
            proxy = {"version": pd.version, "src_addr": str(pd.src_addr),
                     "src_port": pd.src_port, "dst_addr": str(pd.dst_addr),
                     "dst_port": pd.dst_port}
        meta = {
            "peer": list(session.peer) if session.peer else None,
            "helo": session.host_name,
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "smtp_utf8": envelope.smtp_utf8,
            "tls": session.ssl is not None,
            "proxy": proxy,
            "auth_login": (session.auth_data.login.decode(errors="replace")
                           if session.authenticated and isinstance(session.auth_data, LoginPassword)
                           else None),
        }
        tmp = os.path.join(self.directory, f".tmp.{n}")
        with open(tmp + ".eml", "wb") as f:
            f.write(envelope.original_content)
        with open(tmp + ".json", "w") as f:
            json.dump(meta, f)
        # .json first: the .eml appearing means both are complete.
        os.rename(tmp + ".json", os.path.join(self.directory, f"{n}.json"))
        os.rename(tmp + ".eml", os.path.join(self.directory, f"{n}.eml"))
        return f"250 2.0.0 Ok: queued as {n}"


class Credentials:
    """Accepts exactly one login/password pair (AUTH PLAIN and LOGIN)."""

    def __init__(self, login, password):
        self.login = login.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.login
              and auth_data.password == self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--hostname", default="aiosmtpd.test")
    ap.add_argument("--smtputf8", action="store_true")
    ap.add_argument("--data-size-limit", type=int, default=33554432)
    ap.add_argument("--reject-rcpt", action="append", default=[])
    ap.add_argument("--tempfail-data", action="store_true")
    ap.add_argument("--proxy-protocol", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--auth", nargs=2, metavar=("LOGIN", "PASSWORD"),
                    help="offer AUTH PLAIN/LOGIN (also without TLS) for this one account")
    a = ap.parse_args()

    handler = KeepHandler(a.dir, a.reject_rcpt, a.tempfail_data)
    tls_context = None
    if a.tls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(a.tls_cert, a.tls_key)

    def factory():
        kw = dict(hostname=a.hostname, enable_SMTPUTF8=a.smtputf8,
                  data_size_limit=a.data_size_limit, decode_data=False,
                  tls_context=tls_context, require_starttls=False)
        if a.proxy_protocol:
            kw["proxy_protocol_timeout"] = 5
        if a.auth:
            kw.update(authenticator=Credentials(*a.auth), auth_require_tls=False,
                      auth_exclude_mechanism=["CRAM-MD5"])
        return SMTP(handler, **kw)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(factory, host=a.host, port=0))
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.run_until_complete(stop.wait())
    server.close()
    loop.run_until_complete(server.wait_closed())
    print(f"stats messages={handler.count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
