"""Screening and tarpits in the live proxy: pregreet, greeting delay,
stutter, and the per-IP admission verdict that tarpits."""
import time

from lib.clients import RawSMTP
from test_proxy_support import raw_connect, send_message, sluiced_factory  # noqa: F401


def test_pregreet_talker_is_dropped_patient_client_is_served(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={
        "mode": "screen", "normal_greet_delay": "1s", "pregreet_action": "drop"})
    with raw_connect(s.address, timeout=10) as bot:
        bot.send(b"EHLO impatient.bot\r\n")
        codes = []
        try:
            while True:
                r = bot.read_reply(timeout=5)
                codes.append(r.code)
                if r.code != 220:
                    break
        except (ConnectionError, TimeoutError):
            pass
        assert 521 in codes or (codes and codes[-1] >= 500), codes
    with RawSMTP(s.address, timeout=10) as c:
        t0 = time.monotonic()
        assert c.read_reply().code == 220
        assert time.monotonic() - t0 >= 0.9  # the greeting was held
        c.cmd("EHLO patient.test")
        assert send_message(c).code == 250
    recs = s.wait_sessions(2)
    bot_rec = [r for r in recs if r["pregreet_bytes"] > 0]
    assert len(bot_rec) == 1 and bot_rec[0]["messages_accepted"] == 0
    assert s.metric("sluice_screening_total", {"verdict": "pregreet"}) == 1
    assert len(sink.wait_messages(1)) == 1


def test_stutter_throttles_replies(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={
        "mode": "screen", "normal_stutter_bytes": 8, "normal_stutter_interval": "100ms",
        "greet_teaser": "no"})
    with RawSMTP(s.address, timeout=20) as c:
        t0 = time.monotonic()
        r = c.read_reply()
        dt = time.monotonic() - t0
        assert r.code == 220
        # len(raw)/8 chunks, one per 100 ms
        assert dt >= (len(r.raw) // 8 - 1) * 0.1 * 0.8, (dt, len(r.raw))


def test_over_concurrency_tarpits(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={
        "per_ip_concurrency": 1, "over_concurrency": "tarpit", "mode": "screen",
        "suspect_greet_delay": "1s", "greet_teaser": "no"})
    first = raw_connect(s.address)
    assert first.read_reply().code == 220
    second = raw_connect(s.address, timeout=10)
    t0 = time.monotonic()
    assert second.read_reply().code == 220
    assert time.monotonic() - t0 >= 0.9
    second.cmd("QUIT")
    second.close()
    first.cmd("QUIT")
    first.close()
    recs = s.wait_sessions(2)
    assert sorted(r["admission"] for r in recs) == ["accept", "tarpit"]
    assert [r["tarpitted"] for r in recs if r["admission"] == "tarpit"] == ["yes"]
