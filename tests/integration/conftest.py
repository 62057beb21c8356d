import pytest

from testkit.provider_server import FakeServer
from tests.servers import postgres, redis_url


@pytest.fixture(scope="module")
def fake():
    """The contract-faithful fake of Sarvam, ElevenLabs and OpenAI on a loopback port."""
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dsn(tmp_path_factory):
    """A database of its own for the module, on the machine's PostgreSQL or an embedded one."""
    with postgres(tmp_path_factory.mktemp("pg")) as d:
        yield d


@pytest.fixture(scope="module")
def rurl(tmp_path_factory):
    with redis_url(tmp_path_factory.mktemp("redis")) as u:
        yield u
