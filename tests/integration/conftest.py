"""conftest — fixtures of the integration suite: a real upstream (NSD on 127.0.0.1) and the
vpcdns daemon in front of it, serving tests/data/integ/snapshot and corp.zone.

The daemon must stop with status 0 within 3 s of SIGTERM; a test that fails gets the stderr
of every process still running appended to its report."""

import pytest

import vdtest


@pytest.fixture(scope="session")
def nsd(tmp_path_factory):
    """(host, port) of the upstream NSD."""
    tmp = tmp_path_factory.mktemp("nsd")
    proc, port = vdtest.start_nsd(tmp)
    yield ("127.0.0.1", port)
    proc.stop()


@pytest.fixture(scope="session")
def upstream(nsd):
    """The NSD upstream as a DNS client (to compare with what vpcdns relays)."""
    return vdtest.Client(*nsd)


@pytest.fixture(scope="session")
def vpcdns(nsd, tmp_path_factory):
    """The daemon under test: .v4 / .v6 clients on one port, forwarding to NSD."""
    tmp = tmp_path_factory.mktemp("vpcdns")
    d = vdtest.start_vpcdns(tmp, "%s:%d" % nsd)
    yield d
    alive = d.proc.alive()
    status = d.stop()
    assert alive, d.proc.failure("died during the tests (status %s)" % status)
    assert status == 0, d.proc.failure("SIGTERM: expected exit status 0 within 3 s, got %s" % status)


@pytest.fixture
def dns4(vpcdns):
    return vpcdns.v4


@pytest.fixture
def start_daemon(tmp_path):
    """Starts an extra vpcdns for one test: start_daemon(upstream, argv=None, probe=...).
    Stops whatever it started at the end of the test."""
    started = []

    def start(upstream, **kw):
        d = vdtest.start_vpcdns(tmp_path, upstream, name="vpcdns-%d" % len(started), **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def run_vpcdns():
    return vdtest.run_vpcdns


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for proc in list(vdtest.Proc.live):
            rep.sections.append(("stderr of %s" % proc.name, proc.stderr_text()))
