import pytest

from testkit.provider_server import FakeServer


@pytest.fixture(scope="module")
def fake():
    """The contract-faithful fake of Sarvam, ElevenLabs and OpenAI on a loopback port."""
    server = FakeServer().start()
    yield server
    server.stop()
