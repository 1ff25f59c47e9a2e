"""The scale-out test bed: one Redis, several sluiced instances (separate
processes, own ports) sharing it, HAProxy in front (README "Scale-out:
HAProxy and Redis").  Reusable by other scale-out tests (greylisting across
instances): build one with the test's sluiced factory and an upstream."""
from pathlib import Path

from .haproxy import HAProxy
from .redisd import RedisServer

# What every instance runs with; a test adds its own keys.
BASE_CONF = {
    "trusted_proxy": "127.0.0.0/8",
    "state_backend": "redis",
    "redis_timeout": "50ms",
    # short leases so that the tests see a dead instance's counts expire
    "redis_lease": "3s",
    "identity": "xclient",
}


class ScaleOut:
    """redis + n sluiced (sluiced_factory from test_proxy_support) + HAProxy.

    instances: {name: Sluiced} named s1..sn; haproxy.address is where clients
    connect.  instance_conf: {name: {key: value}} for one instance only
    (e.g. {"s3": {"workers": 2}}: a master and two workers, each with its
    own Redis connection).
    """

    def __init__(self, workdir: Path, sluiced_factory, upstream, n=3, conf=None,
                 balance="roundrobin", instance_conf=None, redis_opts=None):
        self.workdir = Path(workdir)
        # redis_opts: RedisServer's keywords (AUTH, TLS: README "Redis across
        # machines: AUTH and TLS")
        self.redis = RedisServer(self.workdir / "redis", **(redis_opts or {}))
        self.instances = {}
        self.haproxy = None
        try:
            c = dict(BASE_CONF)
            c["redis"] = self.redis.address
            c.update(conf or {})
            for i in range(n):
                name = f"s{i + 1}"
                ci = dict(c, **(instance_conf or {}).get(name, {}))
                self.instances[name] = sluiced_factory([upstream], conf=ci, listen_opts="proxy")
            self.haproxy = HAProxy(self.workdir / "haproxy",
                                   [(name, s.host, s.port) for name, s in self.instances.items()],
                                   balance=balance)
        except Exception:
            self.stop()
            raise

    @property
    def address(self):
        return self.haproxy.address

    def sessions(self, client=None):
        """[(instance name, session record)] across instances."""
        out = []
        for name, s in self.instances.items():
            for rec in s.sessions():
                if client is None or rec.get("client") == client:
                    out.append((name, rec))
        return out

    def metric_sum(self, name, labels=None, skip=()):
        total = 0.0
        for n, s in self.instances.items():
            if n in skip:
                continue
            try:
                total += s.metric(name, labels)
            except KeyError:
                pass
        return total

    def stop(self):
        # sluiced instances belong to the factory, which stops them
        if self.haproxy is not None:
            self.haproxy.stop()
        self.redis.stop()
