"""sluiced --check-config and --print-config -n: what would make the start
fail is caught before it, each error names file, line and key, and -n shows
only what a file changes.  The shared grammar itself is unit-tested in
config/tests/sl_config_test.c."""
import re
import subprocess

from lib.clients import swaks
from lib.paths import REPO, project_binary
from test_proxy_support import sluiced_factory  # noqa: F401

BASE = "listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n"


def check_fails(sluiced_config, text, *wanted):
    path, r = sluiced_config(text)
    assert r.returncode == 2, r.stdout + r.stderr
    for w in wanted:
        w = w.replace("FILE", str(path))
        assert w in r.stderr, f"{w!r} not in {r.stderr!r}"
    return r.stderr


def test_good_config(sluiced_config):
    path, r = sluiced_config(BASE + "normal_greet_delay = 2.5s\nsuspect_reply_delay = 500ms\n")
    assert r.returncode == 0, r.stderr
    assert f"{path}: configuration OK" in r.stdout


def test_listen_equal_to_upstream(sluiced_config):
    check_fails(sluiced_config, "listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n"
                "upstream = 127.0.0.1:2525\n",
                "FILE:3: upstream: 127.0.0.1:2525 is the listener of line 1")
    # A wildcard listener loops too when the upstream is loopback on its port.
    check_fails(sluiced_config, "listen = 0.0.0.0:2525\nupstream = 127.0.0.1:2525\n",
                "FILE:2: upstream: 127.0.0.1:2525 is the listener of line 1")


def test_missing_log_directory(sluiced_config, tmp_path):
    check_fails(sluiced_config, BASE + f"log_file = {tmp_path}/nope/sluiced.log\n",
                f'FILE:3: log_file: directory "{tmp_path}/nope" does not exist')
    path, r = sluiced_config(BASE + f"log_file = {tmp_path}/sluiced.log\n")
    assert r.returncode == 0, r.stderr


def test_unreadable_certificates(sluiced_config, tmp_path, tls_certs):
    check_fails(sluiced_config, BASE + f"tls_cert = {tmp_path}/missing.pem\n"
                f"tls_key = {tls_certs.server_key}\n",
                f'FILE:3: tls_cert: cannot read "{tmp_path}/missing.pem": No such file')
    check_fails(sluiced_config, BASE + f"tls_cert = {tls_certs.server_cert}\n"
                f"tls_key = {tmp_path}\n",
                f'FILE:4: tls_key: cannot read "{tmp_path}": not a regular file')
    check_fails(sluiced_config, BASE + f"tls_cert = {tls_certs.server_cert}\n"
                f"tls_key = {tls_certs.server_key}\nsni = a.example {tmp_path}/a.pem "
                f"{tls_certs.server_key}\n",
                f'FILE:5: sni: cannot read "{tmp_path}/a.pem"')
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    err = check_fails(sluiced_config, BASE + f"tls_cert = {garbage}\n"
                      f"tls_key = {tls_certs.server_key}\n")
    assert "garbage.pem" in err
    path, r = sluiced_config(BASE + f"tls_cert = {tls_certs.server_cert}\n"
                             f"tls_key = {tls_certs.server_key}\n")
    assert r.returncode == 0, r.stderr


def test_repeated_key(sluiced_config):
    check_fails(sluiced_config, BASE + "mode = screen\n\nmode = passthrough\n",
                "FILE:5: mode: already set at line 3")
    # The repeatable keys still repeat.
    path, r = sluiced_config(BASE + "upstream = 127.0.0.1:2527\ndnsbl = a.test 1\n"
                             "dnsbl = b.test 2\n")
    assert r.returncode == 0, r.stderr


def test_typo_suggests_nearest_key(sluiced_config):
    check_fails(sluiced_config, BASE + "max_conections_total = 10\n",
                'FILE:3: unknown key "max_conections_total" '
                '(did you mean "max_connections_total"?)')
    err = check_fails(sluiced_config, BASE + "completely_unknown_setting = 1\n",
                      'FILE:3: unknown key "completely_unknown_setting"')
    assert "did you mean" not in err


def test_bad_values_name_file_line_key(sluiced_config):
    check_fails(sluiced_config, BASE + "hostname = mx example\n",
                'FILE:3: hostname: "mx example" is not a host name')
    err = check_fails(sluiced_config, BASE + "hostname = mx example\n")
    assert "inconsistent" not in err
    check_fails(sluiced_config, BASE + "buffer_size = 8k\n",
                "FILE:3: buffer_size: 8192 must be at least")
    check_fails(sluiced_config, BASE + "normal_greet_delay = soon\n",
                'FILE:3: normal_greet_delay: "soon" is not a duration')


def test_print_config_non_default(sluiced_config):
    text = (BASE + "mode = screen\ncommand_timeout = 300s\nnormal_greet_delay = 2.5s\n"
            "dnsbl = bl.test 3 127.0.0.2\nlog_format = json\nworkers = 0\n")
    path, r = sluiced_config(text, "--print-config", "-n")
    assert r.returncode == 0, r.stderr
    # What the file changes, in key-table order; settings equal to their
    # default (command_timeout, workers) are left out.
    assert r.stdout == ("listen = 127.0.0.1:2525\n"
                        "upstream = 127.0.0.1:2526 weight=1\n"
                        "mode = screen\n"
                        "normal_greet_delay = 2500ms\n"
                        "dnsbl = bl.test 3 127.0.0.2\n"
                        "log_format = json\n")
    # The full form shows every key.
    path, r = sluiced_config(text, "--print-config")
    assert r.returncode == 0
    assert "command_timeout = 300s\n" in r.stdout and "vrfy = 252\n" in r.stdout


def test_example_uncommented_replays_as_is(tmp_path):
    """sluice-replay takes sluiced.conf.example with every key line uncommented
    (the ctest config_example_all_keys also runs it through sluiced)."""
    example = (REPO / "drivers" / "sluiced.conf.example").read_text()
    text = re.sub(r"^#([a-z0-9_]+\s*=)", r"\1", example, flags=re.M)
    conf = tmp_path / "all.conf"
    conf.write_text(text)
    assert "max_connections_total = 0" in text and "listen = 0.0.0.0:465 tls" in text
    pcap = REPO / "pcap-replay" / "generated" / "tarpit-greet-2.pcap"
    r = subprocess.run([str(project_binary("sluice-replay")), "sim", "-q", "--policy", str(conf),
                        str(pcap)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "daemon-only keys ignored by the replay" in r.stderr


def test_reload_counted_once_and_master_follows_log_format(sink, sluiced_factory):
    """With a master and two workers: a reload counts once, a refused one
    counts as failed, and after log_format changes the master's own lines
    use the new format."""
    import json
    import os
    import signal

    from lib.net import wait_for

    s = sluiced_factory([sink.address], conf={"workers": 2, "log_format": "logfmt"})
    wait_for(lambda: s.stderr().count(" ready: ") >= 2, 10, what="two workers")
    os.kill(s.pid, signal.SIGHUP)
    wait_for(lambda: s.stderr().count("configuration reloaded") >= 2, 10, what="both reload")
    assert s.metric("sluice_config_reloads_total", {"result": "ok"}) == 1
    assert s.metric("sluice_config_reloads_total", {"result": "failed"}) == 0

    good = s.conf_path.read_text()
    s.conf_path.write_text(good + "max_conections_total = 5\n")
    os.kill(s.pid, signal.SIGHUP)
    wait_for(lambda: "reload refused" in s.stderr(), 10, what="refused reload")
    assert 'did you mean \\"max_connections_total\\"' in s.stderr() or \
        'did you mean "max_connections_total"' in s.stderr()
    wait_for(lambda: s.metric("sluice_config_reloads_total", {"result": "failed"}) == 1, 5)
    assert s.metric("sluice_config_reloads_total", {"result": "ok"}) == 1

    s.conf_path.write_text(good.replace("log_format = logfmt", "log_format = json"))
    os.kill(s.pid, signal.SIGHUP)
    wait_for(lambda: s.stderr().count("configuration reloaded") >= 4, 10, what="second reload")
    assert s.metric("sluice_config_reloads_total", {"result": "ok"}) == 2
    # A line only the master writes (a refused reload), now in JSON.
    s.conf_path.write_text(good.replace("log_format = logfmt", "log_format = json") +
                           "mode = sideways\n")
    os.kill(s.pid, signal.SIGHUP)
    wait_for(lambda: s.stderr().count("reload refused") >= 2, 10, what="second refusal")
    last = [l for l in s.stderr().splitlines() if "reload refused" in l][-1]
    rec = json.loads(last)
    assert rec["pid"] == s.pid and "mode" in rec["msg"]
    assert swaks(s.address, body="after reloads").rc == 0
