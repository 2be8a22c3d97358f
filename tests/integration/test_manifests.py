"""test_manifests — the deployment examples cannot rot: contrib/k8s/*.yaml, the IAM policy and
contrib/Dockerfile must agree with each other and with vpcdns.

No cluster runs here. Each manifest is parsed and the fields that decide whether the example
works are checked against the config in its ConfigMap (flags in the container's arguments
override the config, as they do in vpcdns): the images, the container ports against listen
and metrics_listen, the probe paths and ports against metrics_listen, the volumes against the
snapshot and zone paths the config reads, the refresher's target directory against the
snapshot the config reads, the pod's nameserver against the listen address, lameduck_ms
against the grace period, the IAM policy against the three calls the refresher makes. The
ConfigMap configs themselves go through `vpcdns --check` (paths pointed at local copies).

Each check is a function that raises AssertionError naming the file and the field; the
drift tests at the end break one field of a correct manifest at a time and require the
checks to notice."""

import copy
import ipaddress
import json
import re
import shlex

import pytest
import yaml

import vdtest

K8S = vdtest.REPO / "contrib" / "k8s"
DOCKERFILE = vdtest.REPO / "contrib" / "Dockerfile"
SNAPSHOT_SCRIPT = vdtest.REPO / "contrib" / "vpcdns-snapshot"
IAM_POLICY = K8S / "iam-policy.json"
MANIFESTS = ("sidecar.yaml", "daemonset.yaml")
IAM_ACTIONS = {"ec2:DescribeVpcEndpoints", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}
RUNTIME_IMAGE = "vpcdns"
REFRESHER_IMAGE = "vpcdns-refresher"
ENV_PLACEHOLDER = {"status.hostIP": "198.51.100.7", "status.podIP": "198.51.100.8"}


def load(name):
    """The documents of contrib/k8s/NAME, each with its kind and name."""
    path = K8S / name
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for i, d in enumerate(docs):
        for field in ("apiVersion", "kind", "metadata"):
            assert field in d, "%s: document %d has no %s" % (name, i + 1, field)
        assert d["metadata"].get("name"), "%s: document %d has no metadata.name" % (name, i + 1)
    return docs


def project_version():
    text = (vdtest.REPO / "CMakeLists.txt").read_text()
    m = re.search(r"project\(vpcdns VERSION ([0-9.]+)", text)
    assert m, "CMakeLists.txt: no project(vpcdns VERSION ...)"
    return m.group(1)


# ------------------------------------------------------------------------- the parts of a file


class Manifest:
    """One manifest file: its documents, the workload's pod spec and its containers."""

    def __init__(self, name, docs):
        self.name = name
        self.docs = docs
        workloads = [d for d in docs if d["kind"] in ("Pod", "DaemonSet", "Deployment")]
        assert len(workloads) == 1, "%s: expected one Pod, DaemonSet or Deployment, got %d" % (
            name,
            len(workloads),
        )
        self.workload = workloads[0]
        if self.workload["kind"] == "Pod":
            self.pod = self.workload["spec"]
        else:
            self.pod = self.workload["spec"]["template"]["spec"]
        self.init = self.pod.get("initContainers") or []
        self.containers = self.pod.get("containers") or []

    def where(self, what):
        return "%s (%s %s): %s" % (self.name, self.workload["kind"], self.workload["metadata"]["name"], what)

    def of_image(self, image_name, init=None):
        pool = self.init if init else self.containers if init is False else self.init + self.containers
        return [c for c in pool if image_repo(c["image"]).rsplit("/", 1)[-1] == image_name]

    def vpcdns(self):
        found = self.of_image(RUNTIME_IMAGE, init=False)
        assert len(found) == 1, self.where("expected one vpcdns container, got %d" % len(found))
        return found[0]

    def volume(self, name):
        for v in self.pod.get("volumes") or []:
            if v["name"] == name:
                return v
        raise AssertionError(self.where("volume %r is mounted but not defined" % name))

    def configmap(self, name):
        for d in self.docs:
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name:
                return d
        raise AssertionError(self.where("ConfigMap %r is not in the file" % name))

    def env(self, container):
        """The container's environment, fieldRef values replaced by sample addresses."""
        out = {}
        for e in container.get("env") or []:
            if "value" in e:
                out[e["name"]] = e["value"]
            else:
                ref = e["valueFrom"]["fieldRef"]["fieldPath"]
                assert ref in ENV_PLACEHOLDER, self.where("env %s from %s" % (e["name"], ref))
                out[e["name"]] = ENV_PLACEHOLDER[ref]
        return out

    def args(self, container):
        """The container's arguments with $(VAR) expanded as the kubelet does."""
        env = self.env(container)
        return [
            re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in container.get("args") or []
        ]


def image_repo(image):
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def image_tag(image):
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def flag_values(args, flag):
    """Every value given to FLAG in args ("--flag VALUE" or "--flag=VALUE")."""
    out = []
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith(flag + "="):
            out.append(a[len(flag) + 1 :])
    return out


def split_addr(text, where):
    """("host", port) of "ADDR:PORT", "[V6]:PORT" or "ADDR" (port 53)."""
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text) or re.fullmatch(r"([^:\[\]]+)(?::(\d+))?", text)
    assert m, "%s: %r is not ADDR:PORT" % (where, text)
    return m.group(1), int(m.group(2) or 53)


def mount_of(container, path):
    """The volumeMount of container under which path lies (the deepest), or None."""
    best = None
    for vm in container.get("volumeMounts") or []:
        mp = vm["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = vm
    return best


class Config:
    """What the vpcdns container of a manifest runs with: its ConfigMap config, with the
    flags of its arguments laid over it (a list flag given once replaces the whole list)."""

    def __init__(self, m):
        self.m = m
        c = m.vpcdns()
        args = m.args(c)
        paths = flag_values(args, "--config")
        assert len(paths) == 1, m.where("the vpcdns container must give --config once, got %r" % paths)
        self.path = paths[0]
        vm = mount_of(c, self.path)
        assert vm is not None, m.where("no volume is mounted where --config %s is" % self.path)
        vol = m.volume(vm["name"])
        assert "configMap" in vol, m.where("--config %s lies on volume %s, not a ConfigMap" % (self.path, vm["name"]))
        self.configmap = m.configmap(vol["configMap"]["name"])
        self.mount = vm
        key = self.path[len(vm["mountPath"].rstrip("/")) + 1 :]
        data = self.configmap.get("data") or {}
        assert key in data, m.where(
            "ConfigMap %s has no key %r for --config %s" % (self.configmap["metadata"]["name"], key, self.path)
        )
        self.text = data[key]
        self.yaml = yaml.safe_load(self.text) or {}
        for flag, k in (("--listen", "listen"), ("--snapshot", "snapshot"), ("--zone", "zone")):
            given = flag_values(args, flag)
            if given:
                self.yaml[k] = given
        for flag, k in (("--metrics-listen", "metrics_listen"),):
            given = flag_values(args, flag)
            if given:
                self.yaml[k] = given[-1]

    def listen(self):
        v = self.yaml.get("listen")
        assert v, self.m.where("the config sets no listen address (the default is loopback only)")
        return [split_addr(a, self.m.where("listen")) for a in ([v] if isinstance(v, str) else v)]

    def metrics(self):
        v = self.yaml.get("metrics_listen")
        assert v, self.m.where("no metrics_listen: the probes would have nothing to ask")
        return split_addr(v, self.m.where("metrics_listen"))

    def paths(self, key):
        v = self.yaml.get(key) or []
        v = [v] if isinstance(v, str) else v
        for p in v:
            assert p.startswith("/"), self.m.where("%s %r: give absolute paths in a container" % (key, p))
        return v


# ------------------------------------------------------------------------------------ checks


def check_images(m):
    version = project_version()
    for c in m.init + m.containers:
        repo = image_repo(c["image"]).rsplit("/", 1)[-1]
        if repo not in (RUNTIME_IMAGE, REFRESHER_IMAGE):
            continue
        assert image_tag(c["image"]) == version, m.where(
            "container %s: image %s, expected the tag %s (project version in CMakeLists.txt)"
            % (c["name"], c["image"], version)
        )
    ours = [
        c["image"]
        for c in m.init + m.containers
        if image_repo(c["image"]).rsplit("/", 1)[-1] in (RUNTIME_IMAGE, REFRESHER_IMAGE)
    ]
    registries = {image_repo(i).rsplit("/", 1)[0] for i in ours}
    assert len(registries) == 1, m.where("vpcdns images come from different registries: %s" % sorted(registries))
    assert m.of_image(REFRESHER_IMAGE, init=False), m.where("no refresher container (vpcdns-refresher image)")


def check_ports(m, cfg):
    c = m.vpcdns()
    declared = c.get("ports") or []
    if m.pod.get("hostNetwork"):
        # A declared port on the host network is a host port: the scheduler would keep the
        # rolling update's surge pod off the node its predecessor runs on.
        for x in m.init + m.containers:
            assert not x.get("ports"), m.where("container %s declares ports on the host network" % x["name"])
        return
    want = {(p, proto) for _, p in cfg.listen() for proto in ("UDP", "TCP")}
    want.add((cfg.metrics()[1], "TCP"))
    got = {(p["containerPort"], p.get("protocol", "TCP")) for p in declared}
    assert got == want, m.where(
        "vpcdns container ports %s, but listen and metrics_listen give %s" % (sorted(got), sorted(want))
    )


def probe_port(m, container, probe):
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        named = [p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port]
        assert named, m.where("probe port %r names no container port" % port)
        port = named[0]
    return port


def check_probes(m, cfg):
    c = m.vpcdns()
    host, port = cfg.metrics()
    for kind, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        probe = c.get(kind)
        assert probe and "httpGet" in probe, m.where("vpcdns has no HTTP %s" % kind)
        assert probe["httpGet"].get("path") == path, m.where(
            "%s path %r, expected %s" % (kind, probe["httpGet"].get("path"), path)
        )
        assert probe_port(m, c, probe) == port, m.where(
            "%s port %s, but metrics_listen is port %d" % (kind, probe["httpGet"]["port"], port)
        )
        assert "host" not in probe["httpGet"], m.where(
            "%s sets a host: the kubelet must ask the pod's own address" % kind
        )
    # The kubelet probes the pod's address (the node's on the host network): metrics_listen
    # must be there, not on loopback.
    if host not in ("0.0.0.0", "::"):
        expected = ENV_PLACEHOLDER["status.hostIP"] if m.pod.get("hostNetwork") else ENV_PLACEHOLDER["status.podIP"]
        assert host == expected, m.where(
            "metrics_listen host %s: the kubelet probes the %s address"
            % (host, "node's" if m.pod.get("hostNetwork") else "pod's")
        )


def check_volumes(m, cfg):
    c = m.vpcdns()
    for key in ("snapshot", "zone"):
        for p in cfg.paths(key):
            vm = mount_of(c, p)
            assert vm is not None, m.where("%s %s: no volume is mounted there in the vpcdns container" % (key, p))
            vol = m.volume(vm["name"])
            if "configMap" in vol:
                data = m.configmap(vol["configMap"]["name"]).get("data") or {}
                rel = p[len(vm["mountPath"].rstrip("/")) + 1 :]
                assert rel in data, m.where(
                    "%s %s: ConfigMap %s has no key %r" % (key, p, vol["configMap"]["name"], rel)
                )
    snapshots = cfg.paths("snapshot")
    assert snapshots, m.where("the config reads no snapshot")
    refreshers = m.of_image(REFRESHER_IMAGE)
    for snap in snapshots:
        vm = mount_of(c, snap)
        vol = m.volume(vm["name"])
        assert "emptyDir" in vol, m.where(
            "snapshot %s: on volume %s, which is not an emptyDir the refresher writes" % (snap, vm["name"])
        )
        writers = {"init": False, "interval": False}
        for r in refreshers:
            args = m.args(r)
            positional = [
                a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or not args[i - 1].startswith("--"))
            ]
            assert len(positional) == 1, m.where(
                "refresher %s: expected one target directory, got %r" % (r["name"], positional)
            )
            target = positional[0]
            rm = mount_of(r, target)
            if rm is None or rm["name"] != vm["name"]:
                continue
            # The same file in both containers: the path below the shared volume must match.
            assert target[len(rm["mountPath"].rstrip("/")) :] == snap[len(vm["mountPath"].rstrip("/")) :], m.where(
                "refresher %s writes %s, which is not where vpcdns reads %s" % (r["name"], target, snap)
            )
            # The capture is renamed into place: the target must be below the mount point.
            assert target.rstrip("/") != rm["mountPath"].rstrip("/"), m.where(
                "refresher %s writes onto the mount point itself" % r["name"]
            )
            assert not rm.get("readOnly"), m.where("refresher %s mounts %s read-only" % (r["name"], rm["name"]))
            interval = flag_values(args, "--interval")
            if r in m.init:
                assert not interval, m.where("init container %s would never end (--interval)" % r["name"])
                writers["init"] = True
            else:
                assert interval and int(interval[0]) >= 60, m.where(
                    "refresher %s: --interval of at least 60 s" % r["name"]
                )
                writers["interval"] = True
        assert writers["init"], m.where("no init container captures %s before vpcdns starts" % snap)
        assert writers["interval"], m.where("no refresher container keeps %s fresh (--interval)" % snap)


def check_lameduck(m, cfg):
    lameduck = cfg.yaml.get("lameduck_ms", 5000)
    grace = m.pod.get("terminationGracePeriodSeconds", 30)
    assert grace * 1000 >= lameduck + 5000, m.where(
        "terminationGracePeriodSeconds %d leaves no room after lameduck_ms %d" % (grace, lameduck)
    )


def check_service_account(m):
    name = m.pod.get("serviceAccountName")
    assert name, m.where("no serviceAccountName: the refresher needs the IAM role")
    sas = [d for d in m.docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == name]
    assert sas, m.where("ServiceAccount %s is not in the file" % name)
    role = (sas[0]["metadata"].get("annotations") or {}).get("eks.amazonaws.com/role-arn", "")
    assert role.startswith("arn:aws:iam::"), m.where("ServiceAccount %s has no IRSA role annotation" % name)


def check_sidecar(m, cfg):
    assert not m.pod.get("hostNetwork"), m.where("the sidecar runs in the pod's network namespace")
    assert m.pod.get("dnsPolicy") == "None", m.where("dnsPolicy %r, expected None" % m.pod.get("dnsPolicy"))
    servers = m.pod.get("dnsConfig", {}).get("nameservers")
    listen = cfg.listen()
    assert servers == [h for h, _ in listen], m.where(
        "dnsConfig.nameservers %s, but vpcdns listens on %s" % (servers, listen)
    )
    assert all(p == 53 for _, p in listen), m.where("resolv.conf has no port: listen on 53, got %s" % listen)


def check_daemonset(m, cfg):
    spec = m.workload["spec"]
    assert m.pod.get("hostNetwork") is True, m.where("the node-local DaemonSet runs on the host network")
    assert m.pod.get("dnsPolicy") == "Default", m.where(
        "dnsPolicy %r: vpcdns must not resolve through itself" % m.pod.get("dnsPolicy")
    )
    assert m.pod.get("priorityClassName") == "system-node-critical", m.where("priorityClassName")
    strategy = spec.get("updateStrategy", {})
    ru = strategy.get("rollingUpdate", {})
    assert (
        strategy.get("type") == "RollingUpdate" and ru.get("maxUnavailable") == 0 and ru.get("maxSurge", 0) >= 1
    ), m.where(
        "updateStrategy %s: the new pod must start before the old one stops (maxSurge >= 1, maxUnavailable 0)"
        % strategy
    )
    assert "--takeover" in m.args(m.vpcdns()), m.where("the surge pod must start with --takeover beside the old one")
    for host, port in cfg.listen():
        assert ipaddress.ip_address(host) in ipaddress.ip_network("169.254.0.0/16") and port == 53, m.where(
            "listen %s:%d: the pods' nameserver is a link-local address on port 53" % (host, port)
        )
        setup = [" ".join(c.get("command") or []) + " ".join(c.get("args") or []) for c in m.init]
        assert any(host + "/32" in s for s in setup), m.where("no init container puts %s on the node" % host)


def check_manifest(name, docs):
    m = Manifest(name, docs)
    cfg = Config(m)
    check_images(m)
    check_ports(m, cfg)
    check_probes(m, cfg)
    check_volumes(m, cfg)
    check_lameduck(m, cfg)
    check_service_account(m)
    if m.workload["kind"] == "Pod":
        check_sidecar(m, cfg)
    else:
        check_daemonset(m, cfg)
    return m, cfg


def check_iam_policy(policy):
    actions = set()
    for st in policy.get("Statement") or []:
        assert st.get("Effect") == "Allow", "iam-policy.json: a statement that is not Allow"
        a = st.get("Action")
        actions |= {a} if isinstance(a, str) else set(a)
    assert actions == IAM_ACTIONS, "iam-policy.json: actions %s, expected exactly %s" % (
        sorted(actions),
        sorted(IAM_ACTIONS),
    )


# ------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_consistent(name):
    check_manifest(name, load(name))


def test_every_manifest_is_checked():
    found = sorted(p.name for p in K8S.glob("*.y*ml"))
    assert found == sorted(MANIFESTS), "contrib/k8s has %s; this test checks %s" % (found, sorted(MANIFESTS))


def test_iam_policy_has_exactly_the_three_read_only_actions():
    check_iam_policy(json.loads(IAM_POLICY.read_text()))


def test_iam_policy_covers_every_call_of_the_refresher():
    if not SNAPSHOT_SCRIPT.exists():
        pytest.skip("contrib/vpcdns-snapshot is not in this tree")
    calls = set(re.findall(r"\bdescribe-[a-z-]+", SNAPSHOT_SCRIPT.read_text()))
    as_actions = {"ec2:" + "".join(w.capitalize() for w in c.split("-")) for c in calls}
    assert as_actions == IAM_ACTIONS, "contrib/vpcdns-snapshot calls %s; the policy allows %s" % (
        sorted(calls),
        sorted(IAM_ACTIONS),
    )


@pytest.mark.parametrize("name", MANIFESTS)
def test_configmap_config_passes_vpcdns_check(name, tmp_path):
    """The config as vpcdns reads it, with the snapshot and zone paths pointed at local
    copies (the example snapshot, the ConfigMap's own zone files)."""
    m, cfg = check_manifest(name, load(name))
    conf = copy.deepcopy(cfg.yaml)
    data = cfg.configmap.get("data") or {}
    snap = tmp_path / "snapshot"
    snap.mkdir()
    for f in vdtest.SNAPSHOT.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    conf["snapshot"] = [str(snap)] * len(cfg.paths("snapshot"))
    zones = []
    for z in cfg.paths("zone"):
        key = z.rsplit("/", 1)[-1]
        (tmp_path / key).write_text(data[key])
        zones.append(str(tmp_path / key))
    if zones:
        conf["zone"] = zones
    (tmp_path / "vpcdns.yaml").write_text(yaml.safe_dump(conf))
    r = vdtest.run_vpcdns(["--config", tmp_path / "vpcdns.yaml", "--check"])
    assert r.returncode == 0, "%s: the ConfigMap config fails vpcdns --check:\n%s%s" % (name, r.stdout, r.stderr)


def dockerfile_runtime():
    """The runtime stage of contrib/Dockerfile: {"USER": ..., "EXPOSE": [...], "CMD": [...],
    "ENV": {...}} from its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stage = None
    out = {"EXPOSE": [], "ENV": {}}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage = rest.split()[-1] if " AS " in rest.upper() else None
            continue
        if stage != "runtime":
            continue
        if word == "EXPOSE":
            out["EXPOSE"] += rest.split()
        elif word == "ENV":
            out["ENV"].update(dict(kv.split("=", 1) for kv in shlex.split(rest)))
        elif word in ("USER", "ENTRYPOINT", "CMD", "HEALTHCHECK"):
            out[word] = rest.strip()
    return out


def test_dockerfile_agrees_with_the_manifests():
    d = dockerfile_runtime()
    cmd = json.loads(d["CMD"])
    listen = [split_addr(a, "Dockerfile CMD") for a in flag_values(cmd, "--listen")]
    metrics = split_addr(flag_values(cmd, "--metrics-listen")[0], "Dockerfile CMD")
    want = {"%d/udp" % p for _, p in listen} | {"%d/tcp" % p for _, p in listen} | {"%d/tcp" % metrics[1]}
    assert set(d["EXPOSE"]) == want, "contrib/Dockerfile: EXPOSE %s, but CMD serves %s" % (d["EXPOSE"], sorted(want))
    assert d["ENV"].get("VPCDNS_HEALTH_PORT") == str(
        metrics[1]
    ), "contrib/Dockerfile: HEALTHCHECK port is not CMD's metrics port"
    assert "/health" in d["HEALTHCHECK"], "contrib/Dockerfile: HEALTHCHECK does not ask /health"
    uid = d["USER"].split(":")[0]
    assert uid.isdigit() and uid != "0", (
        "contrib/Dockerfile: USER %r: a number (runAsNonRoot checks it), not root" % d["USER"]
    )
    for name in MANIFESTS:
        m = Manifest(name, load(name))
        for c in m.of_image(RUNTIME_IMAGE) + m.of_image(REFRESHER_IMAGE):
            ctx = dict(m.pod.get("securityContext") or {})
            ctx.update(c.get("securityContext") or {})
            assert str(ctx.get("runAsUser")) == uid, m.where(
                "container %s runs as %s, the image's user is %s" % (c["name"], ctx.get("runAsUser"), uid)
            )


# ------------------------------------------------------------------------- the checks can fail


def _vpcdns(m):
    return [
        c
        for c in (m.get("spec", {}).get("containers") or m["spec"]["template"]["spec"]["containers"])
        if c["name"] == "vpcdns"
    ][0]


def _pod(docs):
    w = [d for d in docs if d["kind"] in ("Pod", "DaemonSet")][0]
    return w["spec"] if w["kind"] == "Pod" else w["spec"]["template"]["spec"]


def _config(docs):
    cm = [d for d in docs if d["kind"] == "ConfigMap"][0]
    return cm


def _set_config(docs, key, value):
    cm = _config(docs)
    conf = yaml.safe_load(cm["data"]["vpcdns.yaml"])
    conf[key] = value
    cm["data"]["vpcdns.yaml"] = yaml.safe_dump(conf)


def _container(docs, name, init=False):
    pod = _pod(docs)
    return [c for c in pod["initContainers" if init else "containers"] if c["name"] == name][0]


DRIFT = {
    "sidecar.yaml": {
        "image tag": lambda d: _container(d, "vpcdns").update(image="registry.example.com/vpcdns:9.9.9"),
        "refresher from another registry": lambda d: _container(d, "refresher").update(
            image="other.example.com/vpcdns-refresher:0.1.0"
        ),
        "listen port": lambda d: _set_config(d, "listen", ["127.0.0.1:5353"]),
        "metrics port": lambda d: _set_config(d, "metrics_listen", "0.0.0.0:9253"),
        "metrics on loopback": lambda d: _set_config(d, "metrics_listen", "127.0.0.1:9153"),
        "liveness path": lambda d: _container(d, "vpcdns")["livenessProbe"]["httpGet"].update(path="/healthz"),
        "readiness path": lambda d: _container(d, "vpcdns")["readinessProbe"]["httpGet"].update(path="/health"),
        "readiness port": lambda d: _container(d, "vpcdns")["readinessProbe"]["httpGet"].update(port=8080),
        "snapshot path": lambda d: _set_config(d, "snapshot", ["/var/lib/vpcdns-data/snapshot"]),
        "zone not in the ConfigMap": lambda d: _set_config(d, "zone", ["/etc/vpcdns/other.zone"]),
        "refresher target": lambda d: _container(d, "refresher")["args"].__setitem__(-1, "/var/lib/vpcdns/snap"),
        "refresher target is the mount point": lambda d: _container(d, "refresher")["args"].__setitem__(
            -1, "/var/lib/vpcdns"
        ),
        "refresher mounts elsewhere": lambda d: _container(d, "refresher")["volumeMounts"][0].update(mountPath="/data"),
        "no first capture": lambda d: _pod(d).update(initContainers=[]),
        "config mount": lambda d: _container(d, "vpcdns")["volumeMounts"][0].update(mountPath="/etc/vpcdns-config"),
        "nameserver": lambda d: _pod(d)["dnsConfig"].update(nameservers=["169.254.20.10"]),
        "grace period": lambda d: _pod(d).update(terminationGracePeriodSeconds=5),
        "container port": lambda d: _container(d, "vpcdns")["ports"][0].update(containerPort=5353),
        "no IRSA": lambda d: [x for x in d if x["kind"] == "ServiceAccount"][0]["metadata"].update(annotations={}),
    },
    "daemonset.yaml": {
        "image tag": lambda d: _container(d, "snapshot-init", init=True).update(
            image="registry.example.com/vpcdns-refresher:latest"
        ),
        "listen not link-local": lambda d: _set_config(d, "listen", ["10.0.0.10:53"]),
        "listen address the init container does not add": lambda d: _set_config(d, "listen", ["169.254.20.11:53"]),
        "metrics port flag": lambda d: _container(d, "vpcdns")["args"].__setitem__(3, "$(NODE_IP):9253"),
        "metrics on loopback": lambda d: _container(d, "vpcdns")["args"].__setitem__(3, "127.0.0.1:9153"),
        "liveness port": lambda d: _container(d, "vpcdns")["livenessProbe"]["httpGet"].update(port=8080),
        "host port declared": lambda d: _container(d, "vpcdns").update(
            ports=[{"containerPort": 53, "protocol": "UDP"}]
        ),
        "no surge": lambda d: [x for x in d if x["kind"] == "DaemonSet"][0]["spec"]["updateStrategy"][
            "rollingUpdate"
        ].update(maxSurge=0, maxUnavailable=1),
        "no takeover": lambda d: _container(d, "vpcdns")["args"].remove("--takeover"),
        "priority": lambda d: _pod(d).update(priorityClassName="system-cluster-critical"),
        "not host network": lambda d: _pod(d).update(hostNetwork=False),
        "snapshot volume": lambda d: _container(d, "vpcdns")["volumeMounts"][1].update(name="refresher-home"),
        "lameduck": lambda d: _set_config(d, "lameduck_ms", 60000),
        "refresher without interval": lambda d: _container(d, "refresher").update(
            args=["--region", "us-east-1", "/var/lib/vpcdns/snapshot"]
        ),
    },
}


@pytest.mark.parametrize(
    "name,drift",
    [(n, k) for n in MANIFESTS for k in DRIFT[n]],
)
def test_checks_notice_drift(name, drift):
    docs = load(name)
    check_manifest(name, copy.deepcopy(docs))
    broken = copy.deepcopy(docs)
    DRIFT[name][drift](broken)
    with pytest.raises(AssertionError):
        check_manifest(name, broken)


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p["Statement"][0]["Action"].append("ec2:Describe*"),
        lambda p: p["Statement"][0]["Action"].remove("ec2:DescribeSubnets"),
        lambda p: p["Statement"][0].update(
            Action=["ec2:DescribeVpcEndpoints", "ec2:DescribeNetworkInterfaces", "ec2:CreateTags"]
        ),
        lambda p: p["Statement"][0].update(Effect="Deny"),
    ],
    ids=["wildcard", "missing", "write", "deny"],
)
def test_iam_check_notices_drift(change):
    policy = json.loads(IAM_POLICY.read_text())
    change(policy)
    with pytest.raises(AssertionError):
        check_iam_policy(policy)
