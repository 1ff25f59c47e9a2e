"""Starts rspamd on loopback with a temporary configuration (for the
capture scripts only; the test beds have their own).

Debian's /etc/rspamd rules are used as they are; what is set here: the
ports, temporary directories, all GTUBE test patterns, no DNS beyond
loopback (the machines are offline), rspamd's own headers for every
message (milter_headers), and forced actions for mail carrying
"X-Sluice-Test: soft-reject" (with a message), "rewrite-subject" or
"greylist" (multimap + force_actions).
"""
import os, socket, subprocess, time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# X-Sluice-Test header value (the action with '-' for ' ') -> forced action
FORCED = [("SOFT", "soft reject", "Try again later (sluice soft-reject test)"),
          ("REWRITE", "rewrite subject", None),
          ("GREYLIST", "greylist", None)]


class Rspamd:
    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.milter_port = free_port()
        self.controller_port = free_port()

    def __enter__(self):
        t = self.tmp
        for d in ("local.d", "db", "run", "log"):
            os.makedirs(os.path.join(t, d), exist_ok=True)
        files = {
            "rspamd.conf": f"""
.include "$CONFDIR/common.conf"
options {{
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  gtube_patterns = "all";
  filters = "chartable,regexp";
  dns {{ nameserver = ["127.0.0.1:53"]; timeout = 0.1s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }}
worker "normal" {{
  bind_socket = "127.0.0.1:{self.port}";
  .include "$CONFDIR/worker-normal.inc"
  count = 1;
}}
worker "controller" {{
  bind_socket = "127.0.0.1:{self.controller_port}";
  .include "$CONFDIR/worker-controller.inc"
  count = 1;
}}
worker "rspamd_proxy" {{
  bind_socket = "127.0.0.1:{self.milter_port}";
  milter = yes;
  timeout = 30s;
  upstream "local" {{ default = yes; hosts = "127.0.0.1:{self.port}"; }}
  count = 1;
  spam_header = "X-Spam";
  reject_message = "Spam message rejected";
}}
""",
            "local.d/milter_headers.conf": """
extended_spam_headers = true;
skip_local = false;
skip_authenticated = false;
use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id",
       "x-spam-level", "remove-spam-flag"];
""",
            "local.d/multimap.conf": "".join(
                """
SLUICE_TEST_%s {
  type = "header"; header = "X-Sluice-Test"; map = "${LOCAL_CONFDIR}/%s.map";
  regexp = false; score = 0.0;
}
""" % (sym, sym.lower()) for sym, _, _ in FORCED),
            "local.d/force_actions.conf": "rules {\n" + "".join(
                """  SLUICE_%s { action = "%s"; expression = "SLUICE_TEST_%s";%s }
""" % (sym, action, sym, ' message = "%s";' % msg if msg else "")
                for sym, action, msg in FORCED) + "}\n",
        }
        for sym, action, _ in FORCED:
            files[sym.lower() + ".map"] = action.replace(" ", "-") + "\n"
        for name, text in files.items():
            with open(os.path.join(t, name), "w") as f:
                f.write(text)
        self.proc = subprocess.Popen(
            ["rspamd", "-f", "-i", "-c", os.path.join(t, "rspamd.conf"),
             "--var=LOCAL_CONFDIR=" + t, "--var=DBDIR=" + t + "/db",
             "--var=RUNDIR=" + t + "/run", "--var=LOGDIR=" + t + "/log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in (self.port, self.milter_port):
            for _ in range(3000):  # rspamd compiles its TLD list first: minutes on a busy machine
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self.proc.poll() is not None:
                        raise RuntimeError(open(t + "/log/rspamd.log").read()[-3000:])
                    time.sleep(0.1)
            else:
                raise RuntimeError("rspamd did not listen on %d" % port)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
