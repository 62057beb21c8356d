import pytest

from tests import servers


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with servers.redis_url(tmp_path_factory.mktemp("redis")) as url:
        yield url
