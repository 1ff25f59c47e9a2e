"""The receiver matrix (issue 8): sluiced in front of real receivers, judged
from each receiver's own log and queue.

Receivers: Exim 4.96, OpenSMTPD 6.8, Postfix 3.7, and Postfix with each of
CHUNKING, PIPELINING, SMTPUTF8, 8BITMIME, DSN, ENHANCEDSTATUSCODES turned off
in turn (smtpd_discard_ehlo_keywords; the variants are extra smtpd listeners
of one Postfix instance).  Modes: sluiced's passthrough and screen.

- Legitimate clients (lib.smtpraw.Session/send_tx: they use an extension only
  when the EHLO reply they see offers it) run once directly against the
  receiver and once through sluiced.  Through sluiced they must get either the
  same success, with every message in the receiver's queue byte-exact and
  with its envelope, or, only where sluice promised the client an extension
  the receiver lacks and no downgrade exists, the RFC's refusal (5xx, 5.6.x):
  never a bounce or a deferral a direct connection would not have caused.
- Hostile clients (lib.smtpraw.attack: every smuggling end-of-data variant
  inside DATA and inside BDAT chunks, bodies after a failed DATA, BDAT chunks
  that look like commands, relay tricks) must never make the receiver read a
  second MAIL command (counted in its own log) nor queue a smuggled or
  relayed message.

Run one cell: -k "exim and screen and smuggle_data" (see testbeds/README.md).
"""
import os
import re
import time
from dataclasses import dataclass, field

import pytest

from lib.clients import swaks
from lib.postfix import PostfixInstance, matrix_main_cf, service
from lib.receiver import POSTFIX_VARIANTS, RECEIVER_NAMES, canonical
from lib.smtpraw import (SMUGGLING_VARIANTS, Session, attack, send_tx, smuggled, stuff,
                         variant_id)
from test_proxy_support import Sluiced

# A test that is the first to use a receiver also starts it (Postfix: ~10 s).
pytestmark = pytest.mark.deadline(120)

MODES = ["passthrough", "screen"]
# The twelve smuggling variants run against every receiver with
# SLUICE_MATRIX_FULL=1; by default against those whose capability set changes
# what sluice does with the bytes (the DATA framing does not depend on
# SMTPUTF8, 8BITMIME, DSN or ENHANCEDSTATUSCODES), which keeps the matrix
# within its time budget.  Every other test runs on all nine receivers.
FULL = os.environ.get("SLUICE_MATRIX_FULL") == "1"
SMUGGLE_DATA_RECEIVERS = RECEIVER_NAMES if FULL else [
    "exim", "opensmtpd", "postfix", "postfix-no-pipelining"]
SMUGGLE_BDAT_RECEIVERS = RECEIVER_NAMES if FULL else [
    "exim", "opensmtpd", "postfix", "postfix-no-chunking", "postfix-no-pipelining"]
# The relay-control setting sluiced is getting (relay fixes landing in parallel).
RELAY_CONF = {"relay_domains": "example.test"}


# ---------------------------------------------------------------- the receivers and sluiceds

class Pool:
    """Receivers and sluiceds of this module, started on first use and kept
    for the module (one Postfix instance serves all Postfix variants)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.receivers = {}
        self.postfix = None
        self.sluiceds = {}
        self.failed = {}
        self.direct = {}       # (receiver, case) -> CaseResult of the direct run

    def receiver(self, name):
        if name in self.failed:
            pytest.fail(self.failed[name])
        if name not in self.receivers:
            try:
                if name == "postfix" or name.startswith("postfix-no-"):
                    if self.postfix is None:
                        self.postfix = PostfixInstance(
                            main_cf=matrix_main_cf(),
                            extra_smtpd={v: {"smtpd_discard_ehlo_keywords": v[len("postfix-no-"):],
                                             # every command line in the maillog ("< ...")
                                             "debug_peer_list": "127.0.0.1",
                                             "debug_peer_level": "1"}
                                         for v in POSTFIX_VARIANTS})
                    self.receivers[name] = (self.postfix if name == "postfix"
                                            else service(self.postfix, name))
                    if name == "postfix":
                        self.postfix.name = "postfix"
                else:
                    from lib.receiver import make_receiver
                    self.receivers[name] = make_receiver(name)
            except Exception as e:
                self.failed[name] = f"receiver {name} did not start: {e}"
                raise
        return self.receivers[name]

    def sluiced(self, name, mode, relay=False):
        key = (name, mode, relay)
        if key in self.failed:
            pytest.fail(self.failed[key])
        if key not in self.sluiceds:
            r = self.receiver(name)
            # Screen-first answers EHLO before any upstream exists, from what
            # the health checks learnt of the pool (DESIGN.md section 4): the
            # matrix runs them and waits for the first one, so that the offer
            # matches the receiver as it would in service (otherwise a client
            # is offered, e.g., 8BITMIME that the receiver lacks, and sluice
            # must refuse its BODY=8BITMIME with 5.6.3, RFC 6152).
            screen = mode != "passthrough"
            conf = {"mode": mode, "health_interval": "1s" if screen else "0",
                    "per_ip_concurrency": "0"}
            if relay:
                conf.update(RELAY_CONF)
            try:
                self.sluiceds[key] = Sluiced(self.workdir / f"sluiced-{name}-{mode}-{int(relay)}",
                                             [r.address], conf=conf)
            except AssertionError as e:
                self.failed[key] = f"sluiced ({mode}, {conf}) did not start: {e}"
                pytest.fail(self.failed[key])
            if screen:
                self._wait_pool_caps(r, self.sluiceds[key])
        return self.sluiceds[key]

    @staticmethod
    def _wait_pool_caps(r, s, timeout=15.0):
        """Until the screen-first offer has no keyword the receiver lacks
        (sluice's own PIPELINING and STARTTLS aside)."""
        with Session(r.address) as d:
            direct = {k for k in KEYWORDS if d.has(k)}
            d.cmd("QUIT")
        deadline = time.monotonic() + timeout
        while True:
            with Session(s.address) as c:
                via = {k for k in KEYWORDS if c.has(k)}
                c.cmd("QUIT")
            if not (via - direct - {"PIPELINING", "STARTTLS"}):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"screen-first sluiced still offers {sorted(via - direct)} "
                            f"after {timeout}s of health checks")
            time.sleep(0.3)

    def stop(self):
        errors = []
        for s in self.sluiceds.values():
            rc = s.stop()
            if rc not in (0, None):
                errors.append(f"sluiced exited with {rc}: {s.stderr()[-2000:]}")
            if "AddressSanitizer" in s.stderr() or "runtime error:" in s.stderr():
                errors.append(s.stderr()[-3000:])
        for name, r in self.receivers.items():
            if name == "postfix" or name.startswith("postfix-no-"):
                continue
            r.stop()
        if self.postfix is not None:
            self.postfix.stop()
        return errors


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    import os
    if os.geteuid() != 0:
        pytest.skip("the receiver matrix needs root (Postfix, Exim, OpenSMTPD drop privileges)")
    p = Pool(tmp_path_factory.mktemp("matrix"))
    yield p
    errors = p.stop()
    assert not errors, errors


class Checkpoint:
    """What a receiver had before a step; after it: what is new."""

    def __init__(self, receiver):
        self.r = receiver
        receiver.wait_idle()
        self.mark = receiver.log_mark()
        self.ids = set(receiver.message_ids())

    def settle(self):
        self.r.wait_idle()
        self.log = self.r.log_since(self.mark)
        new = [i for i in self.r.message_ids() if i not in self.ids]
        self.messages = [self.r.message(i) for i in new]
        self.mails = self.r.mail_commands(self.log)
        return self


# ---------------------------------------------------------------- legitimate clients

@dataclass
class CaseResult:
    status: str            # delivered | refused | tempfail | not-attempted | error
    caps: dict
    txs: list = field(default_factory=list)
    detail: str = ""
    used: set = field(default_factory=set)   # extensions the client used

    def __repr__(self):
        txs = [(t.transfer, t.codes(), t.error) for t in self.txs]
        return f"CaseResult({self.status}, used={sorted(self.used)}, txs={txs}, {self.detail})"


def classify(res: CaseResult, want_rcpts) -> CaseResult:
    if res.status:
        return res
    pre, res.detail = res.detail, ""
    try:
        return _classify(res, want_rcpts)
    finally:
        res.detail = pre + res.detail


def _classify(res: CaseResult, want_rcpts) -> CaseResult:
    delivered = set()
    for t in res.txs:
        if t.delivered:
            delivered.update(t.accepted)
    if set(want_rcpts) <= delivered and all(not t.error for t in res.txs if t.delivered):
        res.status = "delivered"
        return res
    for t in res.txs:
        for r in ([t.mail] + t.rcpt_replies + [t.data] + t.chunk_replies + [t.final]):
            if r is not None and r.code // 100 in (4, 5):
                res.status = "refused" if r.code // 100 == 5 else "tempfail"
                res.detail = f"{r.code} {r.text}"
                return res
    res.status = "error"
    res.detail = "; ".join(t.error for t in res.txs if t.error)
    return res


HEADERS = ("From: Sender <sender@example.test>\r\nTo: rcpt@example.test\r\n"
           "Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n")


def message(tag: str, body: bytes = None, subject: str = None, extra: bytes = b"") -> bytes:
    body = body if body is not None else (
        f"body of {tag}\r\n.leading dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n"
        + "x" * 900 + "\r\nlast line\r\n").encode()
    return (HEADERS + f"Message-Id: <{tag}@client.test>\r\nSubject: {subject or tag}\r\n").encode() \
        + extra + b"\r\n" + body


def case_plain_swaks(address, tag):
    """A plain message with swaks (a real client), DATA."""
    content = message(tag)
    r = swaks(address, to="rcpt@example.test", from_="sender@example.test", data=content)
    res = CaseResult("", {})
    from lib.smtpraw import Tx
    t = Tx("sender@example.test", ["rcpt@example.test"], content)
    res.txs.append(t)
    if r.rc == 0:
        res.status = "delivered"

        class _R:
            code = 250
        t.rcpt_replies = [_R()]
        t.final = _R()
    else:
        last = [l for l in r.server_lines() if re.match(r"^[45]\d\d ", l)]
        res.status = "tempfail" if last and last[-1].startswith("4") else "refused"
        res.detail = f"swaks rc={r.rc} {last[-1:]}"
    return res


def with_session(fn):
    def run(address, tag):
        with Session(address) as s:
            res = CaseResult("", dict(s.caps))
            if s.ehlo_reply is not None and s.ehlo_reply.code != 250:
                res.detail = f"EHLO refused: {s.ehlo_reply.code} {s.ehlo_reply.text}; "
            fn(s, res, tag)
            try:
                s.cmd("QUIT", timeout=5)
            except Exception:
                pass
        return res
    run.__doc__ = fn.__doc__
    return run


@with_session
def case_bdat(s, res, tag):
    """BDAT in three chunks (pipelined when offered), a CR LF split across a
    chunk boundary and lines that are a lone dot; DATA when CHUNKING is not offered."""
    content = message(tag)
    sizes = (content.index(b"\r\n.leading") + 1, 1, 40)   # chunk ends between CR and LF
    t = send_tx(s, "sender@example.test", ["rcpt@example.test"], content, chunk_sizes=sizes)
    if t.transfer == "BDAT":
        res.used.add("CHUNKING")
    res.txs.append(t)
    classify(res, ["rcpt@example.test"])


@with_session
def case_smtputf8(s, res, tag):
    """UTF-8 sender, recipient and headers with SMTPUTF8 (only if offered)."""
    if not s.has("SMTPUTF8"):
        res.status = "not-attempted"
        res.detail += "SMTPUTF8 not offered"
        return
    res.used.add("SMTPUTF8")
    params = "SMTPUTF8" + (" BODY=8BITMIME" if s.has("8BITMIME") else "")
    content = message(tag, subject="Grüße aus Zürich ✉", body="Grüße, 日本語\r\n".encode())
    t = send_tx(s, "jörg@exämple.test", ["usér@example.test"], content, mail_params=params,
                bdat=False)
    res.txs.append(t)
    classify(res, ["usér@example.test"])


@with_session
def case_8bit(s, res, tag):
    """An 8-bit body with BODY=8BITMIME (only if offered)."""
    if not s.has("8BITMIME"):
        res.status = "not-attempted"
        res.detail += "8BITMIME not offered"
        return
    res.used.add("8BITMIME")
    body = b"caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac\r\nlatin-1 byte \xe9\xff\r\n"
    content = message(tag, body=body, extra=b"MIME-Version: 1.0\r\n"
                      b"Content-Type: text/plain; charset=utf-8\r\n"
                      b"Content-Transfer-Encoding: 8bit\r\n")
    t = send_tx(s, "sender@example.test", ["rcpt@example.test"], content,
                mail_params="BODY=8BITMIME", bdat=False)
    res.txs.append(t)
    classify(res, ["rcpt@example.test"])


ENVID = "sluice-envid-1234"


@with_session
def case_dsn(s, res, tag):
    """DSN parameters (RET, ENVID, NOTIFY, ORCPT) when DSN is offered, none otherwise."""
    mp = rp = ""
    if s.has("DSN"):
        res.used.add("DSN")
        mp = f"RET=HDRS ENVID={ENVID}"
        rp = "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;dsn-rcpt@example.test"
    content = message(tag)
    t = send_tx(s, "sender@example.test", ["dsn-rcpt@example.test"], content, mail_params=mp,
                rcpt_params=rp, bdat=False)
    res.txs.append(t)
    classify(res, ["dsn-rcpt@example.test"])


@with_session
def case_rcpt150(s, res, tag):
    """150 recipients in one pipelined group (when offered); after a 452 the
    rest go in a further transaction, as RFC 5321 4.5.3.1.10 expects of clients."""
    want = [f"r{i:03d}@example.test" for i in range(150)]
    left = list(want)
    content = message(tag)
    for _ in range(4):
        if not left:
            break
        t = send_tx(s, "sender@example.test", left, content, bdat=False)
        res.txs.append(t)
        if t.error or not t.accepted:
            break
        if any(r.code // 100 == 5 for r in t.rcpt_replies):
            break
        left = [a for a, r in zip(t.rcpts, t.rcpt_replies) if r.code // 100 != 2]
    if s.has("PIPELINING"):
        res.used.add("PIPELINING")
    classify(res, want)


@with_session
def case_multi(s, res, tag):
    """Three messages in one session; with PIPELINING each MAIL/RCPT/DATA group
    follows the previous end of data in the same write, and QUIT the last."""
    contents = [message(f"{tag}-{i}") for i in range(3)]
    rcpts = [f"multi{i}@example.test" for i in range(3)]
    from lib.smtpraw import Tx
    if not s.has("PIPELINING"):
        for c, r in zip(contents, rcpts):
            res.txs.append(send_tx(s, "sender@example.test", [r], c, bdat=False))
        classify(res, rcpts)
        return
    res.used.add("PIPELINING")

    def group(i):
        return (f"MAIL FROM:<sender@example.test>\r\nRCPT TO:<{rcpts[i]}>\r\nDATA\r\n").encode()
    try:
        s.send(group(0))
        for i in range(3):
            t = Tx("sender@example.test", [rcpts[i]], contents[i])
            res.txs.append(t)
            t.mail, rr, t.data = s.replies(3)
            t.rcpt_replies = [rr]
            if t.data.code != 354:
                break
            tail = group(i + 1) if i < 2 else b""
            s.send(stuff(contents[i]) + b".\r\n" + tail)
            t.final = s.read_reply()
    except (ConnectionError, TimeoutError, ValueError, OSError) as e:
        res.txs[-1].error = f"{type(e).__name__}: {e}"
    classify(res, rcpts)


LEGIT = {
    "plain": case_plain_swaks,
    "bdat": case_bdat,
    "smtputf8": case_smtputf8,
    "8bit": case_8bit,
    "dsn": case_dsn,
    "rcpt150": case_rcpt150,
    "multi": case_multi,
}
# Where sluice may have promised the client an extension the receiver lacks and
# no downgrade exists, the RFC's refusal is allowed (5xx with 5.6.x).
REFUSAL_ALLOWED = {"smtputf8": "SMTPUTF8", "8bit": "8BITMIME"}


def expected_messages(res: CaseResult):
    return sorted((t.sender, tuple(sorted(t.accepted)), canonical(t.content))
                  for t in res.txs if t.delivered)


def got_messages(chk: Checkpoint):
    return sorted((m.sender, tuple(sorted(m.rcpts)), m.data) for m in chk.messages)


def run_legit(pool, name, case, address, tag):
    r = pool.receiver(name)
    chk = Checkpoint(r)
    res = LEGIT[case](address, tag)
    chk.settle()
    return res, chk


def describe_diff(exp, got):
    out = []
    for e in exp:
        if e not in got:
            out.append(f"missing at receiver: from={e[0]} rcpts={len(e[1])} {e[2][:120]!r}")
    for g in got:
        if g not in exp:
            out.append(f"unexpected at receiver: from={g[0]} rcpts={len(g[1])} {g[2][:120]!r}")
    return "\n".join(out)


KEYWORDS = ("PIPELINING", "CHUNKING", "SMTPUTF8", "8BITMIME", "DSN", "ENHANCEDSTATUSCODES")


# Extensions sluice implements on the client leg itself (DESIGN.md section
# 4): it offers them whatever the receiver offers.
SLUICE_OWN = {"PIPELINING", "STARTTLS"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", RECEIVER_NAMES)
def test_ehlo_offer(pool, name, mode):
    """In passthrough, sluice offers no extension the receiver did not
    (DESIGN.md section 4: the intersection), PIPELINING and STARTTLS aside:
    they are sluice's own.  PIPELINING offered to the client of a receiver
    that lacks it is judged by what the receiver gets: a pipelined group
    from the client reaches it one command after the previous reply (the
    Postfix variants run smtpd_forbid_unauth_pipelining, which would refuse
    a pipelined group and log "improper command pipelining")."""
    r = pool.receiver(name)
    with Session(r.address) as d:
        direct = {k for k in KEYWORDS if d.has(k)}
        d.cmd("QUIT")
    if name.startswith("postfix-no-"):
        assert name[len("postfix-no-"):].upper() not in direct, direct   # the variant works
    s = pool.sluiced(name, mode)
    with Session(s.address) as c:
        via = {k for k in KEYWORDS if c.has(k)}
        pipelined = None
        if "PIPELINING" in via and "PIPELINING" not in direct:
            c.send("MAIL FROM:<pipe@example.org>\r\nRCPT TO:<pipe@example.test>\r\n"
                   "RSET\r\n")
            pipelined = [x.code for x in c.replies(3)]
        c.cmd("QUIT")
    if mode == "passthrough":
        extra = via - direct - SLUICE_OWN
        assert not extra, f"sluice offers {sorted(extra)} that {name} does not"
    if pipelined is not None:
        assert [x // 100 for x in pipelined] == [2, 2, 2], \
            f"pipelined group through sluice to {name} (no PIPELINING): {pipelined}"
        log = getattr(r, "log", None)
        if callable(log):
            assert "improper command pipelining" not in log(), \
                f"{name} received a pipelined group from sluice"


@pytest.mark.parametrize("case", list(LEGIT))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", RECEIVER_NAMES)
def test_legit(pool, name, mode, case):
    key = (name, case)
    if key not in pool.direct:
        d_res, d_chk = run_legit(pool, name, case, pool.receiver(name).address, f"direct-{case}")
        exp, got = expected_messages(d_res), got_messages(d_chk)
        assert exp == got, f"direct run not seen as sent by {name}: {describe_diff(exp, got)}"
        d_res.envid_kept = any(ENVID in str(m.envelope) for m in d_chk.messages)
        pool.direct[key] = d_res
    direct = pool.direct[key]
    s = pool.sluiced(name, mode)
    via, chk = run_legit(pool, name, case, s.address, f"{mode}-{case}")
    ctx = (f"{name}/{mode}/{case}: direct {direct!r}; via sluice {via!r}"
           f"\n  receiver log:\n    {evidence(chk)}")

    # 1. The outcome: the same success, or the RFC's refusal where allowed.
    if direct.status == "delivered":
        if via.status != "delivered":
            ext = REFUSAL_ALLOWED.get(case)
            allowed = (ext is not None and via.status == "refused" and ext in via.used
                       and ext not in direct.used
                       and (re.search(r"\b5\.6\.\d+\b", via.detail)
                            or "ENHANCEDSTATUSCODES" not in via.caps))
            assert allowed, "a bounce a direct connection did not cause: " + ctx
    elif direct.status == "not-attempted":
        assert via.status in ("not-attempted", "delivered", "refused"), ctx
        if via.status == "refused":
            ext = REFUSAL_ALLOWED.get(case)
            assert ext and (re.search(r"\b5\.6\.\d+\b", via.detail)
                            or "ENHANCEDSTATUSCODES" not in via.caps), \
                "refusal is not the RFC's (5.6.x): " + ctx
        if via.status == "delivered" and case == "smtputf8":
            pytest.fail(f"a UTF-8 envelope reached {name}, which does not offer SMTPUTF8: {ctx}")
    else:
        assert via.status == direct.status, ctx

    # 2. The receiver's queue: every message the client was told 250 for, byte-exact
    #    with its envelope, and nothing else.
    exp, got = expected_messages(via), got_messages(chk)
    assert exp == got, f"{ctx}\n{describe_diff(exp, got)}"

    # 3. Nothing reached the receiver that it did not offer (its own command log).
    problems = upstream_view_problems(name, chk)
    assert not problems, f"{problems}\n{ctx}"

    # 4. DSN parameters survive when client, sluice and receiver all do DSN.
    if case == "dsn" and "DSN" in via.used and direct.envid_kept and via.status == "delivered":
        assert any(ENVID in str(m.envelope) for m in chk.messages), \
            f"ENVID lost on the way to {name}: {[m.envelope for m in chk.messages]}"


# ---------------------------------------------------------------- hostile clients

# Guarantee 8 from the receiver's side: what a Postfix variant logged reading
# a command (debug_peer_list: "< localhost[127.0.0.1]: <command>") that uses
# the extension it did not offer; with PIPELINING off, Postfix's own verdict.
UPSTREAM_FORBIDDEN = {
    "postfix-no-chunking": r"^.*\]: < localhost\[127\.0\.0\.1\]: BDAT\b.*$",
    "postfix-no-8bitmime": r"^.*\]: < localhost\[127\.0\.0\.1\]: MAIL FROM:.*\bBODY=8BITMIME\b.*$",
    "postfix-no-smtputf8": r"^.*\]: < localhost\[127\.0\.0\.1\]: MAIL FROM:.*\bSMTPUTF8\b.*$",
    "postfix-no-dsn": r"^.*\]: < localhost\[127\.0\.0\.1\]: (MAIL FROM:.*\b(RET|ENVID)=|"
                      r"RCPT TO:.*\b(NOTIFY|ORCPT)=).*$",
    "postfix-no-pipelining": r"^.*improper command pipelining.*$",
}


def upstream_view_problems(name: str, chk: "Checkpoint") -> list:
    rx = UPSTREAM_FORBIDDEN.get(name)
    if not rx:
        return []
    lines = [m.group(0) for m in re.finditer(rx, chk.log, re.M | re.I)]
    return [f"sent upstream what {name} did not offer (guarantee 8): "
            + " | ".join(l.strip()[:200] for l in lines[:3])] if lines else []


def evidence(chk: Checkpoint, n: int = 14) -> str:
    """The receiver's own log for the step (its message-content trace left out)."""
    lines = [l for l in chk.log.splitlines() if "<<< [MSG]" not in l and "STATE_" not in l
             and ">>> 250-" not in l]
    return "\n    ".join(l[:240] for l in lines[-n:])


def check_hostile(chk: Checkpoint, ctx: str, max_mails: int = 1, name: str = ""):
    """At most the one legitimate MAIL at the receiver, nothing smuggled queued,
    nothing the receiver did not offer."""
    chk.settle()
    # (OpenSMTPD traces message content as "<<< [MSG] ...": content, not commands.)
    smuggled_mails = [l for l in re.findall(r".*MAIL.*<smuggled-[^>]*>.*", chk.log, re.I)
                      if "<<< [MSG]" not in l]
    bad = [m for m in chk.messages if "smuggled" in m.sender or
           any("smuggled" in r for r in m.rcpts)]
    problems = []
    if chk.mails > max_mails:
        problems.append(f"the receiver read {chk.mails} MAIL commands (at most {max_mails} "
                        "legitimate)")
    if smuggled_mails:
        problems.append("receiver log: " + " | ".join(l.strip()[:200] for l in smuggled_mails[:4]))
    if bad:
        problems.append("queued: " + "; ".join(f"{m.id} from={m.sender} to={m.rcpts}"
                                               for m in bad))
    if len(chk.messages) > max_mails:
        problems.append(f"{len(chk.messages)} messages queued")
    problems += upstream_view_problems(name, chk)
    assert not problems, ctx + ": " + "; ".join(problems) + "\n  receiver log:\n    " + evidence(chk)


LEGIT_START = [b"MAIL FROM:<legit@example.test>\r\n", 1, b"RCPT TO:<rcpt@example.test>\r\n", 1]
LEGIT_HEAD = b"From: legit@example.test\r\nSubject: legit\r\n\r\nlegit body"


def hostile_run(pool, name, mode, steps, ctx, relay=False):
    s = pool.sluiced(name, mode, relay=relay)
    r = pool.receiver(name)
    chk = Checkpoint(r)
    res = attack(s.address, steps)
    return chk, f"{ctx} (client got {[l[:60] for l in res.replies][-6:]})"


VIDS = [variant_id(v) for v in SMUGGLING_VARIANTS]


@pytest.mark.parametrize("variant", SMUGGLING_VARIANTS, ids=VIDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", SMUGGLE_DATA_RECEIVERS)
def test_smuggle_data(pool, name, mode, variant):
    """A fake end of data followed by a whole second transaction, inside DATA."""
    tag = f"d-{variant_id(variant)}"
    steps = LEGIT_START + [b"DATA\r\n", 1, LEGIT_HEAD + variant + smuggled(tag) + b"\r\n.\r\n", 1]
    chk, ctx = hostile_run(pool, name, mode, steps, f"{name}/{mode}/DATA {tag}")
    check_hostile(chk, ctx, name=name)


@pytest.mark.parametrize("variant", SMUGGLING_VARIANTS, ids=VIDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", SMUGGLE_BDAT_RECEIVERS)
def test_smuggle_bdat(pool, name, mode, variant):
    """The same inside one BDAT LAST chunk (sent whether or not CHUNKING was
    offered), followed inside the chunk by a real CRLF.CRLF and a third
    transaction: chunk bytes are content, never commands, also when sluice
    turns BDAT into DATA for a receiver without CHUNKING."""
    tag = f"b-{variant_id(variant)}"
    chunk = (LEGIT_HEAD + variant + smuggled(tag) + b"\r\n.\r\n" + smuggled(tag + "-2")
             + b"\r\n.\r\n")
    steps = LEGIT_START + [f"BDAT {len(chunk)} LAST\r\n".encode() + chunk, 1]
    chk, ctx = hostile_run(pool, name, mode, steps, f"{name}/{mode}/BDAT {tag}")
    check_hostile(chk, ctx, name=name)


# The body starts with the smuggled commands themselves (a "Subject:" first line would
# be caught as a header-looking command, which is not what this checks).
FAILED_BODY = smuggled("afterdata") + b"\r\n.\r\n"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", RECEIVER_NAMES)
def test_body_after_failed_data_pipelined(pool, name, mode):
    """MAIL, a recipient the receiver refuses, DATA and the body in one write:
    DATA fails (no valid recipient), and the body must not run as commands."""
    steps = [b"MAIL FROM:<legit@example.test>\r\nRCPT TO:<reject-me@example.test>\r\nDATA\r\n"
             + FAILED_BODY, 3]
    chk, ctx = hostile_run(pool, name, mode, steps, f"{name}/{mode}/failed DATA, pipelined")
    check_hostile(chk, ctx, name=name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", RECEIVER_NAMES)
def test_body_after_failed_data(pool, name, mode):
    """The refused recipient answered first, then DATA and the body without
    waiting for DATA's reply."""
    steps = [b"MAIL FROM:<legit@example.test>\r\n", 1, b"RCPT TO:<reject-me@example.test>\r\n", 1,
             b"DATA\r\n" + FAILED_BODY, 1]
    chk, ctx = hostile_run(pool, name, mode, steps, f"{name}/{mode}/failed DATA")
    check_hostile(chk, ctx, name=name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", RECEIVER_NAMES)
def test_chunk_after_failed_rcpt(pool, name, mode):
    """A BDAT chunk after the only recipient was refused: RFC 3030 says the
    chunk is read and discarded; its command-like content never runs."""
    chunk = smuggled("failedbdat") + b"\r\n.\r\n"
    steps = [b"MAIL FROM:<legit@example.test>\r\n", 1, b"RCPT TO:<reject-me@example.test>\r\n", 1,
             f"BDAT {len(chunk)} LAST\r\n".encode() + chunk, 1]
    chk, ctx = hostile_run(pool, name, mode, steps, f"{name}/{mode}/BDAT after failed RCPT")
    check_hostile(chk, ctx, name=name)


@pytest.mark.parametrize("pipelined", [False, True], ids=["lockstep", "pipelined"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", RECEIVER_NAMES)
def test_command_like_chunks(pool, name, mode, pipelined):
    """BDAT chunks whose content is SMTP commands, a CR LF split across chunks
    and a lone dot line: one message at most, never a second MAIL."""
    c1 = b"MAIL FROM:<smuggled-chunk1@evil.test>\r\nRCPT TO:<smuggled-victim@example.test>\r\nDATA\r"
    c2 = (b"\n.\r\nMAIL FROM:<smuggled-chunk2@evil.test>\r\nRCPT TO:<smuggled-victim@example.test>"
          b"\r\nDATA\r\nforged\r\n.\r\n")
    b1 = f"BDAT {len(c1)}\r\n".encode() + c1
    b2 = f"BDAT {len(c2)} LAST\r\n".encode() + c2
    if pipelined:
        steps = [b"MAIL FROM:<legit@example.test>\r\nRCPT TO:<rcpt@example.test>\r\n" + b1 + b2, 4]
    else:
        steps = LEGIT_START + [b1, 1, b2, 1]
    chk, ctx = hostile_run(pool, name, mode, steps, f"{name}/{mode}/command-like chunks")
    check_hostile(chk, ctx, name=name)


RELAY_TRICKS = {
    "foreign": "victim@elsewhere.test",
    "source-route": "@example.test:victim@elsewhere.test",
    "source-route-2": "@example.test,@example.test:victim@elsewhere.test",
    "percent-hack": "victim%elsewhere.test@example.test",
    "quoted-at": '"victim@elsewhere.test"@example.test',
    "suffix": "victim@elsewhereexample.test",
}


@pytest.mark.parametrize("trick", list(RELAY_TRICKS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", RECEIVER_NAMES)
def test_relay_trick(pool, name, mode, trick):
    """sluiced with relay_domains = example.test in front of a receiver that
    trusts it (loopback, an open relay for sluice): the foreign recipient never
    reaches the receiver, whatever its disguise; the local one still does."""
    rc = RELAY_TRICKS[trick]
    body = b"Subject: relay test\r\n\r\nrelay test\r\n.\r\n"
    steps = [b"MAIL FROM:<legit@example.test>\r\n", 1, f"RCPT TO:<{rc}>\r\n".encode(), 1,
             b"RCPT TO:<rcpt@example.test>\r\n", 1, b"DATA\r\n", 1, body, 1]
    chk, ctx = hostile_run(pool, name, mode, steps, f"{name}/{mode}/relay {trick} <{rc}>",
                           relay=True)
    chk.settle()
    relayed = [m for m in chk.messages if any("elsewhere" in r for r in m.rcpts)]
    seen = [l.strip()[:200] for l in chk.log.splitlines() if "elsewhere" in l]
    assert not relayed and not seen, f"{ctx}: queued {[(m.id, m.rcpts) for m in relayed]}; " \
                                     f"receiver log: {seen[:3]}\n  receiver log:\n    {evidence(chk)}"
    assert chk.mails <= 1, ctx
    # The local recipient was not collateral damage.
    assert [m.rcpts for m in chk.messages] == [["rcpt@example.test"]], ctx


# ---------------------------------------------------------------- controls (direct, no sluice)

@pytest.mark.parametrize("name", ["postfix", "exim", "opensmtpd"])
def test_control_detector_counts_mail_commands(pool, name):
    """The detector itself: directly, a session with two transactions is two
    MAIL commands in the receiver's log and two messages in its queue."""
    r = pool.receiver(name)
    chk = Checkpoint(r)
    with Session(r.address) as s:
        for i in range(2):
            t = send_tx(s, f"control{i}@example.test", ["rcpt@example.test"],
                        message(f"control-{i}"), bdat=False)
            assert t.delivered, t
        s.cmd("QUIT")
    chk.settle()
    assert chk.mails == 2, chk.log
    assert sorted(m.sender for m in chk.messages) == ["control0@example.test",
                                                      "control1@example.test"]
    with pytest.raises(AssertionError):
        check_hostile(chk, "control")


def test_control_postfix_is_a_vulnerable_b(pool):
    """Directly, the matrix's Postfix (3.7, smtpd_forbid_bare_newline = no)
    takes <LF>.<CR><LF> as end of data and reads the smuggled MAIL: the
    hostile checks can fail, and sluice is what keeps it safe."""
    r = pool.receiver("postfix")
    tag = "control-lf-dot-crlf"
    steps = LEGIT_START + [b"DATA\r\n", 1, LEGIT_HEAD + b"\n.\r\n" + smuggled(tag) + b"\r\n.\r\n", 1]
    chk = Checkpoint(r)
    attack(r.address, steps)
    with pytest.raises(AssertionError, match="smuggled"):
        check_hostile(chk, "direct control")


@pytest.mark.parametrize("name", ["postfix", "exim", "opensmtpd"])
def test_control_receiver_is_an_open_relay_for_loopback(pool, name):
    """Directly, each receiver takes every relay trick from 127.0.0.1 (it
    trusts sluice's address): relay control is sluice's alone, and the relay
    check sees the foreign recipients in the receiver's log and queue."""
    r = pool.receiver(name)
    chk = Checkpoint(r)
    with Session(r.address) as s:
        t = send_tx(s, "legit@example.test", list(RELAY_TRICKS.values()),
                    b"Subject: relay control\r\n\r\nrelay control\r\n", bdat=False)
        s.cmd("QUIT")
    chk.settle()
    assert t.delivered, t
    queued = [rc for m in chk.messages for rc in m.rcpts if "elsewhere" in rc]
    assert len(queued) >= 4, (queued, [m.rcpts for m in chk.messages])
    assert "elsewhere" in chk.log
